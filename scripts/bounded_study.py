#!/usr/bin/env python3
"""Design study for the error-bounded and lossless modes (issue 12), on the held-out part.

What it measures, for a recording on an integer grid of device counts and a Funnel model's
reconstruction of it (`funnel pipeline` / `funnel decode` writes reconstruction.csv):

- the bits a bounded coder would spend: the model's latent frames (their measured rate, given)
  plus the residual `x - round(reconstruction)` quantized in bins of 2E+1 counts (so that no
  sample is off by more than E counts), with or without a closed-loop linear prediction of the
  residual from the residuals already rebuilt, coded with a static table fitted on the training
  part (ideal code length: what an rANS coder with that table approaches, as in
  `shared/src/entropy.rs`), or with Rice codes whose parameter is chosen per block of 32;
- the same without a network: closed-loop linear prediction of the samples themselves;
- the peers: SZ3 (pysz) at the same absolute bound, and lossless zstd-19 and FLAC (libsndfile,
  through the `soundfile` package) of the held-out counts.

    python3 scripts/bounded_study.py --data data/mitbih208_ecg.csv --column ecg_mlii_mV \\
        --counts-per-unit 200 --reconstruction out/ecg/reconstruction.csv --latent-bits 0.906

Needs numpy, zstandard, pysz, soundfile. The split is Funnel's: the last 20 % of whole windows
(`--window`, default 32) are held out. Prediction coefficients and tables come from the
training part only. With `--peers-only` (no reconstruction needed) it prints only the peers,
SZ3 at each bound and the lossless ones, on `funnel bench rd`'s split for the same `--window`:

    python3 scripts/bounded_study.py --data data/ximu_gyro_acc_mag.csv --column acc_x_g \
        --counts-per-unit 2048 --window 128 --bounds 0,2,11,45,341 --peers-only
"""
import argparse
import csv
import io
import sys

import numpy as np


def read_column(path, column):
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        return np.array([float(r[column]) for r in rows])


def static_bits(train, held):
    """Ideal code length (bits) of `held` with a table fitted to `train` (counts + 1/2)."""
    lo, hi = min(train.min(), held.min()), max(train.max(), held.max())
    counts = np.full(hi - lo + 1, 0.5)
    np.add.at(counts, train - lo, 1)
    p = counts / counts.sum()
    return float(-np.log2(p[held - lo]).sum())


def rice_bits(q, block=32):
    """Rice codes of the zigzagged values, the best parameter per block (4 bits to say which)."""
    u = np.where(q >= 0, 2 * q, -2 * q - 1)
    return sum(4 + min(int(((u[i:i + block] >> k) + 1 + k).sum()) for k in range(16))
               for i in range(0, len(u), block))


def closed_loop(target, base, bound, coef):
    """Bins of 2E+1 counts of `target - base - prediction`, the prediction a linear combination
    (`coef`) of the residuals already rebuilt (as a device that knows what the host rebuilds
    would compute it). Checks the bound on every sample."""
    width = 2 * bound + 1
    history = [0] * len(coef)
    q = np.empty(len(target), np.int64)
    for t in range(len(target)):
        p = int(round(float(np.dot(coef, history)))) if len(coef) else 0
        d = int(target[t] - base[t]) - p
        q[t] = (1 if d > 0 else -1) * ((abs(d) + bound) // width)
        rebuilt = p + int(q[t]) * width
        assert abs(int(target[t] - base[t]) - rebuilt) <= bound
        if len(coef):
            history = [rebuilt] + history[:-1]
    return q


def fit_prediction(v, order):
    if order == 0:
        return np.zeros(0)
    x = np.stack([v[order - 1 - i:len(v) - 1 - i] for i in range(order)], 1).astype(float)
    return np.linalg.lstsq(x, v[order:].astype(float), rcond=None)[0]


def sz3_bits(values, bound):
    from pysz import sz, szConfig, szErrorBoundMode
    cfg = szConfig()
    cfg.errorBoundMode = szErrorBoundMode.ABS
    cfg.absErrorBound = bound
    comp, _ = sz.compress(values.astype(np.float32), cfg)
    back, _ = sz.decompress(comp, np.float32, values.shape)
    assert np.abs(back - values).max() <= bound * (1 + 1e-6) + 1e-6
    return 8 * len(comp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--column", required=True)
    ap.add_argument("--counts-per-unit", type=float, required=True)
    ap.add_argument("--reconstruction", help="funnel decode's CSV of the whole recording")
    ap.add_argument("--latent-bits", type=float, help="bits/sample of the model's frames, held out")
    ap.add_argument("--peers-only", action="store_true", help="only SZ3 at each bound, zstd and FLAC")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--bounds", default="0,1,2,4,8,16,32", help="E in counts")
    ap.add_argument("--train-samples", type=int, default=20000, help="training samples the tables see")
    a = ap.parse_args()

    if not a.peers_only and (a.reconstruction is None or a.latent_bits is None):
        sys.exit("--reconstruction and --latent-bits are needed unless --peers-only")
    x = read_column(a.data, a.column)
    counts = np.round(x * a.counts_per_unit).astype(np.int64)
    off_grid = np.abs(counts / a.counts_per_unit - x).max()
    if off_grid > 1e-6 * max(1.0, np.abs(x).max()):
        sys.exit(f"{a.column} is not on a grid of 1/{a.counts_per_unit} (off by {off_grid})")
    windows = len(x) // a.window
    start = min(max(1, int(windows * 0.8)), windows - 1) * a.window
    end = windows * a.window
    bounds = [int(b) for b in a.bounds.split(",")]
    if a.peers_only:
        held = counts[start:end]
        peers = [f"{b}: {sz3_bits(x[start:end], max(b, 0.5) / a.counts_per_unit) / len(held):.3f}" for b in bounds]
        print(f"{a.column}: {len(held)} held-out samples; SZ3 (pysz) at E counts: " + " · ".join(peers))
        lossless_peers(held)
        return
    rec = read_column(a.reconstruction, a.column)
    rebuilt = np.round(rec * a.counts_per_unit).astype(np.int64)
    xt, xh = counts[max(0, start - a.train_samples):start], counts[start:end]
    rt, rh = rebuilt[max(0, start - a.train_samples):start], rebuilt[start:end]
    n = len(xh)
    zero_t, zero_h = np.zeros_like(xt), np.zeros_like(xh)
    print(f"{a.column}: {n} held-out samples; |x - reconstruction| mean {np.abs(xh - rh).mean():.2f}, "
          f"max {np.abs(xh - rh).max()} counts; latent frames {a.latent_bits} bits/sample")
    ways = [("latent + residual, Rice", None), ("latent + residual", 0), ("latent + residual, prediction 2", 2),
            ("latent + residual, prediction 4", 4), ("prediction 2, no network", -2), ("prediction 8, no network", -8)]
    print("E counts | " + " | ".join(w for w, _ in ways) + " | SZ3 (pysz)")
    for bound in bounds:
        row = []
        for _, order in ways:
            if order is None:
                q = closed_loop(xh, rh, bound, np.zeros(0))
                row.append(a.latent_bits + rice_bits(q) / n)
                continue
            network = order >= 0
            (bt, bh) = (rt, rh) if network else (zero_t, zero_h)
            coef = fit_prediction(xt - bt, abs(order))
            qt, qh = closed_loop(xt, bt, bound, coef), closed_loop(xh, bh, bound, coef)
            row.append((a.latent_bits if network else 0.0) + static_bits(qt, qh) / n)
        peer = sz3_bits(x[start:end], max(bound, 0.5) / a.counts_per_unit) / n
        print(f"{bound:>8} | " + " | ".join(f"{v:.3f}" for v in row) + f" | {peer:.3f}")
    lossless_peers(xh)


def lossless_peers(held):
    """zstd-19 and FLAC (libsndfile) of the held-out counts as i16."""
    import zstandard
    import soundfile
    n = len(held)
    zstd = 8 * len(zstandard.ZstdCompressor(level=19).compress(held.astype("<i2").tobytes())) / n
    flac = io.BytesIO()
    soundfile.write(flac, held.astype(np.int16), 8000, format="FLAC", subtype="PCM_16")
    print(f"lossless peers: zstd-19 {zstd:.3f} bits/sample, FLAC {8 * len(flac.getvalue()) / n:.3f}")


if __name__ == "__main__":
    main()
