"""The Python package against the `funnel` command line: the same bytes out of `encode`, the same
samples out of `decode`, status masks where frames are lost, the numcodecs codec through a
round trip, and clear errors for bad input.

`cargo xtask test` runs these with the package installed in `target/python-env` and
`FUNNEL_BIN` naming the `funnel` binary of the same build."""

import csv
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import funnel

ROOT = Path(__file__).resolve().parents[2]
ECG = ROOT / "data" / "mitbih208_ecg.csv"
COLUMN = "ecg_mlii_mV"


def funnel_bin() -> str:
    path = os.environ.get("FUNNEL_BIN")
    assert path, "set FUNNEL_BIN to the funnel binary (cargo xtask test does)"
    return path


def ecg(rows: int) -> np.ndarray:
    return np.genfromtxt(ECG, delimiter=",", names=True, max_rows=rows)[COLUMN]


def cli(*args):
    subprocess.run([funnel_bin(), *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def model():
    return funnel.Model(ROOT / "models" / "ecg")


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """The first 5,000 samples of the ECG: the CSV, and the bytes `funnel encode` writes."""
    tmp = tmp_path_factory.mktemp("stream")
    with open(ECG) as f, open(tmp / "part.csv", "w") as out:
        for i, line in enumerate(f):
            if i > 5000:
                break
            out.write(line)
    cli("encode", "--model", ROOT / "models" / "ecg", "--data", tmp / "part.csv", "--column", COLUMN, "--out", tmp / "part.bin")
    return tmp, (tmp / "part.bin").read_bytes()


def test_encode_sends_what_funnel_encode_writes(model, stream):
    _, frames = stream
    assert model.encode(ecg(5000)) == frames
    assert model.encode(ecg(5000)[:, None]) == frames


def test_decode_gives_the_rows_of_funnel_decode(model, stream):
    tmp, frames = stream
    cli("decode", "--model", model.path, "--input", tmp / "part.bin", "--out", tmp / "part.recon.csv")
    with open(tmp / "part.recon.csv") as f:
        rows = list(csv.DictReader(f))
    decoded = model.decode(frames)
    assert decoded.first_sample == 0
    assert decoded.values.shape == (len(rows), 1) and decoded.values.dtype == np.float32
    assert np.array_equal(decoded.values[:, 0], np.array([float(r[COLUMN]) for r in rows], dtype=np.float32))
    assert [funnel.STATUS[s] for s in decoded.status] == [r["status"] for r in rows]
    assert decoded.ok.all() and decoded.report["frames_lost"] == 0
    # The lossy model rebuilds the recording closely (its card: about 3 % PRDN).
    x = ecg(len(rows))
    assert np.sqrt(np.mean((decoded.values[:, 0] - x) ** 2)) < 0.1 * np.std(x)


def test_a_damaged_frame_is_masked_not_invented(model, stream):
    _, frames = stream
    damaged = bytearray(frames)
    damaged[len(frames) // 2] ^= 0x5A
    decoded = model.decode(bytes(damaged))
    report = decoded.report
    assert report["frames_lost"] == 1, report["summary"]
    span = model.card["windows_per_frame"] * model.window
    assert decoded.missing.sum() == span
    assert np.isnan(decoded.values[decoded.missing]).all()
    assert not np.isnan(decoded.values[decoded.ok]).any()
    (first, samples), = report["gaps"]
    assert samples == span and decoded.missing[first : first + samples].all()


def test_a_link_splits_into_the_messages_funnel_gateway_publishes(model, stream):
    _, frames = stream
    items, report = funnel.split_link(frames)
    assert b"".join(i.data for i in items) == frames  # nothing left out, nothing changed
    assert [i.header for i in items] == [True] + [False] * (len(items) - 1)
    assert {i.stream_id for i in items} == {0} and report == {"frames_lost": 0, "dropped_bytes": 0}
    damaged = bytearray(frames)
    damaged[len(frames) // 2] ^= 0x5A
    kept, report = funnel.split_link(bytes(damaged))
    assert len(kept) == len(items) - 1 and report["frames_lost"] == 1 and report["dropped_bytes"] > 0
    assert all(i.data in frames for i in kept)


def test_cards_are_read(model):
    card = funnel.read_card(ROOT / "models" / "ecg")
    assert card["columns"] == [COLUMN] == model.columns
    assert model.model_id == card["quantization"]["model_id"]
    assert model.max_error is None


def test_bad_input_says_what_is_wrong(model, tmp_path):
    with pytest.raises(ValueError, match="model.json"):
        funnel.Model(tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        model.encode(np.array([0.1, np.nan, 0.2]))
    with pytest.raises(ValueError, match=r"\[T, 1\]"):
        model.encode(np.zeros((10, 2)))
    nothing = model.decode(b"not a Funnel stream at all")
    assert nothing.values.shape == (0, 1)
    assert "no stream header" in nothing.report["summary"]


@pytest.mark.parametrize("name, bound", [("ecg-lossless", 0.0), ("ecg-bounded", 0.07)])
def test_the_numcodecs_codec_keeps_the_model_s_bound(name, bound):
    numcodecs = pytest.importorskip("numcodecs", reason="pip install numcodecs (cargo xtask test installs it)")
    import funnel.codec  # noqa: F401  (registers the codec)

    path = str(ROOT / "models" / name)
    codec = numcodecs.get_codec({"id": "funnel", "model": path})
    assert codec.get_config() == {"id": "funnel", "model": path}
    x = ecg(3000).astype(np.float32)
    encoded = codec.encode(x)
    assert len(encoded) < x.nbytes / 2
    back = codec.decode(encoded)
    assert back.shape == x.shape
    # MIT-BIH's samples are whole counts of 1/200 mV.
    assert np.max(np.abs(back - x)) <= bound + 1e-5
    out = np.empty_like(x)
    codec.decode(encoded, out=out)
    assert np.array_equal(out, back)
