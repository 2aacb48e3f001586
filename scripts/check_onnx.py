#!/usr/bin/env python3
"""Checks Funnel's exported ONNX files with the reference tools.

    python3 scripts/check_onnx.py MODEL_DIR [MODEL_DIR ...]

For each of autoencoder.onnx, encoder.onnx, decoder.onnx in MODEL_DIR:
  1. onnx.checker.check_model(path, full_check=True)  (structure, types and shape inference);
  2. runs it with ONNX Runtime (CPU) on a batch of inputs;
  3. if MODEL_DIR/<stem>.input.f32 and <stem>.expected.f32 exist (raw little-endian float32,
     written by the Rust test with candle's forward pass), asserts max |ORT - expected| <= 1e-4;
     otherwise runs 5 random windows and checks autoencoder == decoder(encoder(x)) within 1e-4.

Exit status: 0 all good, 1 a check failed, 3 python packages missing
(pip install onnx onnxruntime).
"""
import os
import sys

TOL = 1e-4
FILES = ["autoencoder.onnx", "encoder.onnx", "decoder.onnx"]

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:  # pragma: no cover - environment problem
    print(f"check_onnx.py: missing python package ({e}); run: pip install onnx onnxruntime", file=sys.stderr)
    sys.exit(3)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def features(sess):
    (inp,) = sess.get_inputs()
    return inp.name, int(inp.shape[1])


def run(sess, x):
    name, _ = features(sess)
    return sess.run(None, {name: x.astype(np.float32)})[0]


def check_dir(d):
    failures = []
    sessions = {}
    for f in FILES:
        path = os.path.join(d, f)
        if not os.path.exists(path):
            failures.append(f"{path}: missing")
            continue
        try:
            onnx.checker.check_model(path, full_check=True)
        except Exception as e:  # onnx.checker.ValidationError, shape inference errors
            failures.append(f"{path}: onnx.checker (full_check) failed: {e}")
            continue
        model = onnx.load(path)
        sess = session(path)
        sessions[f] = sess
        stem = f[: -len(".onnx")]
        inp, exp = os.path.join(d, stem + ".input.f32"), os.path.join(d, stem + ".expected.f32")
        if os.path.exists(inp) and os.path.exists(exp):
            _, n = features(sess)
            x = np.fromfile(inp, dtype="<f4").reshape(-1, n)
            want = np.fromfile(exp, dtype="<f4").reshape(x.shape[0], -1)
            got = run(sess, x)
            diff = float(np.max(np.abs(got - want))) if got.size else 0.0
            status = "ok" if got.shape == want.shape and diff <= TOL else "FAILED"
            print(f"{path}: checker ok (opset {model.opset_import[0].version}, IR {model.ir_version}); "
                  f"onnxruntime {ort.__version__} vs candle on {x.shape[0]} windows: max |diff| {diff:.2e} {status}")
            if status != "ok":
                failures.append(f"{path}: onnxruntime output differs from candle by {diff} (shape {got.shape} vs {want.shape})")
        else:
            print(f"{path}: checker ok (opset {model.opset_import[0].version}, IR {model.ir_version})")
    if not failures and len(sessions) == 3 and not os.path.exists(os.path.join(d, "autoencoder.input.f32")):
        _, n = features(sessions["autoencoder.onnx"])
        x = np.random.default_rng(0).standard_normal((5, n)).astype(np.float32)
        ae = run(sessions["autoencoder.onnx"], x)
        composed = run(sessions["decoder.onnx"], run(sessions["encoder.onnx"], x))
        diff = float(np.max(np.abs(ae - composed)))
        print(f"{d}: onnxruntime {ort.__version__}: autoencoder vs decoder(encoder(x)) on 5 windows: max |diff| {diff:.2e}")
        if not np.all(np.isfinite(ae)) or diff > TOL:
            failures.append(f"{d}: autoencoder.onnx and decoder(encoder) disagree by {diff}")
    return failures


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    failures = []
    for d in argv[1:]:
        failures += check_dir(d)
    for f in failures:
        print("FAILED: " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
