//! End-to-end checks of `funnel train | eval | plot` on a slice of the shipped ECG recording:
//! exported ONNX files against candle, the reference ONNX tools, bad input, `--init`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use funnel::pipeline::{
    quantize_model, train_model, CodeRate, DeviceBudget, QuantizeRequest, TrainOutcome, TrainRequest,
};
use funnel::runtime::{load_with_tract, Runtime};
use funnel::train::load_checkpoint;
use funnel_artifacts::spec::{Arch, Variant};
use funnel_artifacts::{Graph, Method};

const COLUMN: &str = "ecg_mlii_mV";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The first `rows` rows of the ECG recording as a CSV in `dir`.
fn ecg_slice(dir: &Path, rows: usize) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("data/mitbih208_ecg.csv")).unwrap();
    let path = dir.join("ecg.csv");
    let lines: Vec<&str> = text.lines().take(rows + 1).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn args(data: &Path, out: &Path, arch: Arch, window: usize, latent: usize) -> TrainRequest {
    TrainRequest {
        data: data.to_path_buf(),
        columns: vec![COLUMN.to_string()],
        window: Some(window),
        latent: Some(latent),
        arch: Some(arch),
        variant: Variant::Plain,
        epochs: 3,
        seed: 1,
        init: None,
        train_hop: None,
        patience: 8,
        counts_per_unit: None,
        sensor_bits: 12,
        out: out.to_path_buf(),
        progress: false,
        rates: Vec::new(),
        windows_per_frame: None,
        dead_zone: None,
        budget: DeviceBudget::default(),
        max_error: None,
    }
}

fn funnel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_funnel")).args(args).output().expect("run funnel")
}

fn stderr_of(args: &[&str]) -> String {
    let out = funnel(args);
    assert!(!out.status.success(), "funnel {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bytes of stream header a long session sends per frame, a header every 64 frames: over 2^20
/// frames from sample 0, each header 16 bytes, its frame number (one varint byte below 128,
/// two below 16,384, three after), the start sample 0 (one byte) and the CRC (4).
fn long_stream_header_bytes_per_frame() -> f64 {
    let frame_bytes = |f: usize| {
        if f < 128 {
            1
        } else if f < 16_384 {
            2
        } else {
            3
        }
    };
    let headers: usize = (0..1usize << 14).map(|k| 16 + frame_bytes(64 * k) + 1 + 4).sum();
    headers as f64 / (1 << 20) as f64
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn write_f32(path: &Path, v: &[f32]) {
    let mut f = std::fs::File::create(path).unwrap();
    for x in v {
        f.write_all(&x.to_le_bytes()).unwrap();
    }
}

/// Trains a small model on 4000 ECG rows (window 64: 49 training windows, 5 of them for validation, 13 held out).
fn train_small(dir: &Path, arch: Arch) -> TrainOutcome {
    let data = ecg_slice(dir, 4000);
    let out = dir.join(format!("model_{arch}"));
    train_model(&TrainRequest { train_hop: Some(32), ..args(&data, &out, arch, 64, 8) }).unwrap()
}

/// All three ONNX files, loaded back with tract, compute what candle computes (≤ 1e-4); also
/// writes the inputs and candle's outputs for `scripts/check_onnx.py`.
fn assert_onnx_matches_candle(outcome: &TrainOutcome) {
    let dir = outcome.dir.path();
    let model = load_checkpoint(&outcome.dir, &outcome.card.spec).unwrap();
    let x = outcome.dataset.held_out_norm();
    let z = model.encode_windows(x).unwrap();
    let expected = [
        (Graph::Autoencoder, x, model.reconstruct(x).unwrap()),
        (Graph::Encoder, x, z.clone()),
        (Graph::Decoder, &z, model.decode_latents(&z).unwrap()),
    ];
    for (graph, input, want) in expected {
        let file = graph.file_name();
        let m = load_with_tract(dir.join(file)).unwrap();
        let got = m.run(&input.data, input.len()).unwrap();
        let d = max_diff(&got, &want.data);
        assert!(d <= 1e-4, "{}: tract vs candle max |diff| {d}", dir.join(file).display());
        let stem = file.trim_end_matches(".onnx");
        write_f32(&dir.join(format!("{stem}.input.f32")), &input.data);
        write_f32(&dir.join(format!("{stem}.expected.f32")), &want.data);
    }
}

/// `onnx.checker.check_model(full_check=True)` and ONNX Runtime (vs candle, ≤ 1e-4) through
/// `scripts/check_onnx.py`. Needs `pip install onnx onnxruntime`; fails with that instruction
/// when they are missing unless FUNNEL_SKIP_PYTHON_ONNX=1.
fn python_onnx_check(dirs: &[&Path]) {
    if std::env::var_os("FUNNEL_SKIP_PYTHON_ONNX").is_some_and(|v| v == "1") {
        eprintln!("FUNNEL_SKIP_PYTHON_ONNX=1: onnx.checker / onnxruntime check skipped");
        return;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(repo_root().join("scripts/check_onnx.py"))
        .args(dirs)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): the ONNX checks need python3 with `pip install onnx onnxruntime` (or FUNNEL_SKIP_PYTHON_ONNX=1)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.code() != Some(3),
        "python onnx / onnxruntime missing: `pip install onnx onnxruntime` (or FUNNEL_SKIP_PYTHON_ONNX=1)\n{text}"
    );
    assert!(out.status.success(), "scripts/check_onnx.py failed:\n{text}");
    eprintln!("{text}");
    assert_eq!(text.matches("max |diff|").count(), 3 * dirs.len(), "{text}");
}

#[test]
fn train_eval_plot_and_onnx_for_every_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for arch in [Arch::Mlp, Arch::Conv, Arch::Transform] {
        let o = train_small(tmp.path(), arch);
        for f in ["autoencoder.onnx", "encoder.onnx", "decoder.onnx", "model.safetensors", "model.json", "encoder.fq8"]
        {
            assert!(o.dir.path().join(f).is_file(), "{arch}: {f} missing");
        }
        let card = &o.card;
        assert_eq!(
            (card.window(), card.latent(), card.spec.arch, card.columns.as_slice()),
            (64, 8, arch, [COLUMN.to_string()].as_slice())
        );
        assert_eq!((card.split.train_windows, card.split.held_out_windows, card.split.validation_windows), (49, 13, 5));
        assert_eq!(card.epochs_run, card.history.len());
        assert!(card.seconds_per_epoch > 0.0 && card.train_config.train_hop == 32);
        assert!(card.files.iter().any(|f| f.name == "model.safetensors" && f.bytes > 0));
        assert!(card.held_out.contains_key(&Method::FloatAutoencoder) && card.held_out.contains_key(&Method::Pca));
        assert_onnx_matches_candle(&o);

        // eval --json: one object, a section per method.
        let model = o.dir.path().to_str().unwrap();
        let data = tmp.path().join("ecg.csv");
        let data = data.to_str().unwrap();
        let out = funnel(&["eval", "--model", model, "--data", data, "--column", COLUMN, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("eval --json prints one JSON object");
        for section in ["float_autoencoder", "pca"] {
            let m = &v["sections"][section];
            for key in [
                "prd",
                "prdn",
                "snr_db",
                "rmse",
                "max_abs_error",
                "compression_ratio",
                "bits_per_sample",
                "sensor_compression_ratio",
            ] {
                assert!(m[key].as_f64().is_some_and(f64::is_finite), "{arch} {section}.{key}: {m}");
            }
            // One channel: 16 bits over the bits per sample; the 12-bit sensor (--sensor-bits)
            // gives 3/4 of that.
            let (bps, ratio) = (m["bits_per_sample"].as_f64().unwrap(), m["compression_ratio"].as_f64().unwrap());
            assert!((16.0 / bps - ratio).abs() < 1e-9, "{m}");
            assert!((m["sensor_compression_ratio"].as_f64().unwrap() - 0.75 * ratio).abs() < 1e-9, "{m}");
            assert_eq!(m["windows"], 13);
        }
        // Same metrics as training reported; tract runs autoencoder.onnx to the same numbers.
        let prdn = v["sections"]["float_autoencoder"]["prdn"].as_f64().unwrap();
        assert!((prdn - card.held_out[&Method::FloatAutoencoder].prdn).abs() < 1e-9);
        let out =
            funnel(&["eval", "--model", model, "--data", data, "--column", COLUMN, "--json", "--backend", "tract"]);
        let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!((t["sections"]["float_autoencoder"]["prdn"].as_f64().unwrap() - prdn).abs() < 1e-3);
        assert!(!String::from_utf8_lossy(
            &funnel(&["eval", "--model", model, "--data", data, "--column", COLUMN]).stdout
        )
        .is_empty());

        // plot: a real PNG.
        let png = tmp.path().join(format!("{arch}.png"));
        let out =
            funnel(&["plot", "--model", model, "--data", data, "--column", COLUMN, "--out", png.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5_000, "{} bytes", bytes.len());
        dirs.push(o.dir.path().to_path_buf());
    }
    python_onnx_check(&dirs.iter().map(PathBuf::as_path).collect::<Vec<_>>());
}

#[test]
fn bad_input_names_file_row_or_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let out = tmp.path().join("m");
    let out = out.to_str().unwrap();
    let train = |data: &str, column: &str, window: &str, arch: &str| {
        stderr_of(&[
            "train", "--data", data, "--column", column, "--window", window, "--latent", "2", "--arch", arch, "--out",
            out,
        ])
    };
    let good: String =
        std::iter::once("t,x\n".to_string()).chain((0..40).map(|i| format!("{i},{}\n", i % 7))).collect();
    let good = write("good.csv", &good);

    let e = train(&good, "y", "8", "mlp");
    assert!(e.contains(&good) && e.contains("\"y\"") && e.contains("\"t\", \"x\""), "{e}");

    let bad = write("text.csv", "x\n1\n2\nfoo\n4\n");
    let e = train(&bad, "x", "2", "mlp");
    assert!(
        e.contains(&bad) && e.contains("line 4 (data row 3)") && e.contains("\"foo\"") && e.contains("not a number"),
        "{e}"
    );

    let nan = write("nan.csv", "x\n1\nNaN\n3\n4\n");
    let e = train(&nan, "x", "2", "mlp");
    assert!(
        e.contains(&nan) && e.contains("line 3 (data row 2)") && e.contains("NaN") && e.contains("not finite"),
        "{e}"
    );
    let empty_cell = write("empty.csv", "t,x\n0,1\n1,\n");
    let e = train(&empty_cell, "x", "1", "mlp");
    assert!(e.contains(&empty_cell) && e.contains("line 3") && e.contains("not a number"), "{e}");

    let short = write("short.csv", "x\n1\n2\n3\n4\n5\n");
    let e = train(&short, "x", "4", "mlp");
    assert!(e.contains(&short) && e.contains("5 rows") && e.contains("--window 4") && e.contains("8 rows"), "{e}");

    let e = train(&good, "x", "10", "conv");
    assert!(e.contains("--window 10") && e.contains("divisible") && e.contains("try 8 or 12"), "{e}");

    let e = train(&tmp.path().join("missing.csv").to_string_lossy(), "x", "8", "mlp");
    assert!(e.contains("missing.csv"), "{e}");

    let e = stderr_of(&[
        "train",
        "--data",
        &good,
        "--column",
        "x",
        "--window",
        "8",
        "--latent",
        "2",
        "--arch",
        "mlp",
        "--train-hop",
        "9",
        "--out",
        out,
    ]);
    assert!(e.contains("--train-hop 9"), "{e}");
    let e =
        stderr_of(&["eval", "--model", tmp.path().join("nope").to_str().unwrap(), "--data", &good, "--column", "x"]);
    assert!(e.contains("nope") && e.contains("model.json"), "{e}");
}

#[test]
fn init_transfers_weights_where_shapes_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ecg_slice(tmp.path(), 3000);
    let a = train_model(&args(&data, &tmp.path().join("a"), Arch::Mlp, 64, 8)).unwrap();
    // Same shape: every tensor is loaded, so the first epoch starts where `a` ended.
    let b = train_model(&TrainRequest {
        init: Some(a.dir.path().to_path_buf()),
        epochs: 1,
        ..args(&data, &tmp.path().join("b"), Arch::Mlp, 64, 8)
    })
    .unwrap();
    let init = b.card.init.as_ref().expect("card records --init");
    assert_eq!(init.loaded.len(), 12, "{init:?}");
    assert!(init.skipped.is_empty());
    assert!(b.card.history[0].val_loss < a.card.history[0].val_loss);
    // Another latent size: the layers around the code are skipped, the rest is transferred.
    let c = train_model(&TrainRequest {
        init: Some(a.dir.path().to_path_buf()),
        epochs: 1,
        ..args(&data, &tmp.path().join("c"), Arch::Mlp, 64, 6)
    })
    .unwrap();
    let init = c.card.init.as_ref().unwrap();
    assert!(
        init.loaded.contains(&"encoder.l0.weight".to_string())
            && init.loaded.contains(&"decoder.l2.weight".to_string())
    );
    assert!(init.skipped.iter().any(|(n, why)| n == "encoder.l2.weight" && why.contains("shape")), "{init:?}");
    // No checkpoint there: the flag is named.
    let e = train_model(&TrainRequest {
        init: Some(tmp.path().join("none")),
        ..args(&data, &tmp.path().join("d"), Arch::Mlp, 64, 8)
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("--init") && e.to_string().contains("none"), "{e}");
}

#[test]
fn multichannel_recording_and_every_variant_through_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let mut csv = String::from("time,ax,ay\n");
    for i in 0..1600 {
        let t = i as f32 * 0.05;
        csv += &format!("{t},{},{}\n", t.sin() + 0.1 * (3.0 * t).cos(), (0.5 * t).cos() * 2.0 + 1.0);
    }
    let data = tmp.path().join("imu.csv");
    std::fs::write(&data, csv).unwrap();
    for (arch, variant) in
        [(Arch::Conv, Variant::Sparse), (Arch::Mlp, Variant::Contractive), (Arch::Conv, Variant::Denoising)]
    {
        let out = tmp.path().join(format!("{arch}_{variant}"));
        let o = train_model(&TrainRequest {
            columns: vec!["ay".into(), "ax".into()],
            variant,
            epochs: 2,
            ..args(&data, &out, arch, 32, 6)
        })
        .unwrap();
        assert_eq!(o.card.columns, ["ay", "ax"]);
        assert_eq!(o.card.normalization.mean.len(), 2);
        assert!((o.card.normalization.mean[0] - 1.0).abs() < 0.5, "{:?}", o.card.normalization);
        let pen = o.card.history[0].penalty;
        match variant {
            Variant::Sparse | Variant::Contractive => {
                assert!(pen > 0.0, "{variant}: penalty {pen}")
            }
            _ => assert_eq!(pen, 0.0),
        }
        assert_eq!(o.net.float_encoder().channels, 2);
        assert_onnx_matches_candle(&o);
    }
    // Columns must match the model's.
    let out = tmp.path().join("conv_sparse");
    let e = stderr_of(&["eval", "--model", out.to_str().unwrap(), "--data", data.to_str().unwrap(), "--column", "ax"]);
    assert!(e.contains("\"ay\", \"ax\"") && e.contains("--column"), "{e}");
}

/// `funnel eval --backend ort` runs autoencoder.onnx with ONNX Runtime (`--features ort` and
/// ORT_DYLIB_PATH); without the feature the flag says how to get it.
#[test]
fn eval_backend_ort() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train_small(tmp.path(), Arch::Conv);
    let model = o.dir.path().to_str().unwrap();
    let data = tmp.path().join("ecg.csv");
    let eval =
        ["eval", "--model", model, "--data", data.to_str().unwrap(), "--column", COLUMN, "--json", "--backend", "ort"];
    if cfg!(feature = "ort") {
        assert!(std::env::var_os("ORT_DYLIB_PATH").is_some(), "the `ort` feature's tests need ORT_DYLIB_PATH");
        let out = funnel(&eval);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["backend"], "ort");
        let prdn = v["sections"]["float_autoencoder"]["prdn"].as_f64().unwrap();
        assert!((prdn - o.card.held_out[&Method::FloatAutoencoder].prdn).abs() < 1e-3, "{prdn}");
    } else {
        let e = stderr_of(&eval);
        assert!(e.contains("--features ort"), "{e}");
    }
}

/// `--counts-per-unit` (the device front end's gain) reaches the card and the device blob, and
/// the device path still rebuilds the signal.
#[test]
fn counts_per_unit_follows_the_flag_into_the_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ecg_slice(tmp.path(), 4000);
    let out = tmp.path().join("m");
    let trained =
        train_model(&TrainRequest { counts_per_unit: Some(200.0), ..args(&data, &out, Arch::Mlp, 64, 8) }).unwrap();
    assert_eq!(trained.card.counts_per_unit, 200.0);
    let q = quantize_model(&QuantizeRequest {
        model: out.clone(),
        calibration: None,
        rate: CodeRate::AsBefore,
        dead_zone: None,
        max_error: None,
    })
    .unwrap();
    let blob = std::fs::read(out.join("encoder.fq8")).unwrap();
    let encoder = funnel_shared::encoder::QuantizedEncoder::from_blob(&blob).unwrap();
    assert_eq!(encoder.spec().counts_per_unit, 200.0);
    assert!(q.card.relative_prdn_loss.abs() < 0.10, "int8 PRDN {} vs float {}", q.int8.prdn, q.card.float_prdn);
    let bad = train_model(&TrainRequest {
        counts_per_unit: Some(-1.0),
        ..args(&data, &tmp.path().join("x"), Arch::Mlp, 64, 8)
    });
    assert!(bad.err().unwrap().to_string().contains("--counts-per-unit"));
    // A bad rate is refused before anything is trained or written.
    let x = tmp.path().join("y");
    let bad = train_model(&TrainRequest {
        rates: vec![CodeRate::BitsPerSample(0.5), CodeRate::BitsPerSample(f64::NAN)],
        ..args(&data, &x, Arch::Mlp, 64, 8)
    });
    assert!(bad.err().unwrap().to_string().contains("--bits-per-sample"));
    assert!(!x.exists());
    // So is a dead zone out of range, or one for a model not trained for a rate.
    for (dead_zone, rates) in [(0.5, vec![CodeRate::BitsPerSample(1.0)]), (f64::NAN, vec![]), (0.25, vec![])] {
        let bad = train_model(&TrainRequest { dead_zone: Some(dead_zone), rates, ..args(&data, &x, Arch::Mlp, 64, 8) });
        assert!(bad.err().unwrap().to_string().contains("--dead-zone"), "{dead_zone}");
        assert!(!x.exists());
    }
}

/// Several target rates: a network trained for each (rate–distortion training), one model
/// directory per rate, each a complete model whose stream has the windows per frame it was
/// trained for.
#[test]
fn each_target_rate_trains_a_model_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ecg_slice(tmp.path(), 4000);
    let out = tmp.path().join("rates");
    let request = |rates: Vec<f64>, windows_per_frame: u8| TrainRequest {
        rates: rates.into_iter().map(CodeRate::BitsPerSample).collect(),
        windows_per_frame: Some(windows_per_frame),
        epochs: 20,
        train_hop: Some(8),
        ..args(&data, &out, Arch::Transform, 32, 16)
    };
    // Below what the framing alone costs (35 bits per frame of 64 samples), or more codes than a
    // frame carries: refused before anything is trained or written.
    let e = train_model(&request(vec![1.0, 0.3], 2)).err().unwrap().to_string();
    assert!(e.contains("framing") && e.contains("--windows-per-frame"), "{e}");
    let e = train_model(&request(vec![1.0], 33)).err().unwrap().to_string();
    assert!(e.contains("--windows-per-frame 33") && e.contains("512"), "{e}");
    assert!(!out.exists());

    let t = train_model(&request(vec![1.5, 0.8], 2)).unwrap();
    assert_eq!(t.more.len(), 1);
    let (a, b) = (&t.card, &t.more[0].card);
    assert_eq!((t.dir.path(), t.more[0].dir.path()), (out.join("bits-1.5").as_path(), out.join("bits-0.8").as_path()));
    let (ra, rb) = (a.train_config.code_rate.unwrap(), b.train_config.code_rate.unwrap());
    // Per frame of 64 samples: a length byte, the 2-byte check, half a word of the coder's
    // flush, and the share of the headers.
    let framing = (8.0 * 3.0 + 8.0 + 8.0 * long_stream_header_bytes_per_frame()) / 64.0;
    assert!((ra - (1.5 - framing)).abs() < 1e-9 && (rb - (0.8 - framing)).abs() < 1e-9, "{ra} {rb}");
    assert_eq!((a.windows_per_frame, b.windows_per_frame), (2, 2));
    assert!(a.history.iter().chain(&b.history).all(|h| h.lambda > 0.0 && h.penalty > 0.0));
    let device = |c: &funnel_artifacts::ModelCard| c.held_out[&funnel_artifacts::Method::Int8Device].clone();
    let (da, db) = (device(a), device(b));
    assert!(db.bits_per_sample < da.bits_per_sample && db.prdn > da.prdn, "{da:?} {db:?}");
    // The rate is hit on the training part; the held-out part is a little different.
    assert!((da.bits_per_sample - 1.5).abs() < 0.4 && (db.bits_per_sample - 0.8).abs() < 0.25, "{da:?} {db:?}");
    for dir in [out.join("bits-1.5"), out.join("bits-0.8")] {
        // Each directory is a model of its own: it encodes (2 windows per frame, from its card)
        // and decodes through the CLI.
        let (model, codes, recon) = (dir.to_str().unwrap(), dir.join("codes.bin"), dir.join("recon.csv"));
        let (codes_path, recon) = (codes.to_str().unwrap(), recon.to_str().unwrap());
        let d = data.to_str().unwrap();
        for run in [
            funnel(&["encode", "--model", model, "--data", d, "--column", COLUMN, "--out", codes_path]),
            funnel(&["decode", "--model", model, "--input", codes_path, "--out", recon]),
        ] {
            assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        }
        // Byte 14 of the stream header is `windows_per_frame` (docs/wire-format.md).
        let bytes = std::fs::read(&codes).unwrap();
        assert_eq!(bytes[14], 2);
        // `encode` reports the rate it sent: every one of the 4,000 samples, headers included.
        let encode = funnel(&["encode", "--model", model, "--data", d, "--column", COLUMN, "--out", codes_path]);
        let said = String::from_utf8_lossy(&encode.stderr).into_owned();
        let rate = format!("({:.3} bits/sample, headers included)", 8.0 * bytes.len() as f64 / 4000.0);
        assert!(said.contains(&rate), "{said} lacks {rate}");
    }
}

/// A held-out part far louder than the training part saturates the device's input, which the
/// float network does not clip: the quantization's warning says so, and names the remedy,
/// rather than blaming the weights.
#[test]
fn a_held_out_part_louder_than_training_is_named_as_what_the_device_path_loses_to() {
    let tmp = tempfile::tempdir().unwrap();
    let quiet = ecg_slice(tmp.path(), 4000);
    // The ECG 20 mV below zero, its last 800 rows (the held-out part: 25 of 125 windows of 32)
    // thirty times louder: at 1,024 counts/mV its R peaks (1.37 mV, now 21 mV) lie within i16
    // but more than 32,767 counts above the training mean the device's input is centred on.
    let text = std::fs::read_to_string(&quiet).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (row, line) in lines.iter_mut().enumerate().skip(1) {
        let value: f64 = line.parse().unwrap();
        let gain = if row > 3200 { 30.0 } else { 1.0 };
        *line = format!("{}", value * gain - 20.0);
    }
    let data = tmp.path().join("louder.csv");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let request = TrainRequest {
        rates: vec![CodeRate::BitsPerSample(1.5)],
        windows_per_frame: Some(2),
        epochs: 5,
        train_hop: Some(8),
        counts_per_unit: Some(1024.0),
        ..args(&data, &tmp.path().join("m"), Arch::Transform, 32, 16)
    };
    let t = train_model(&request).unwrap();
    let warning = t.quantization.warning.clone().unwrap_or_default();
    assert!(t.quantization.card.relative_prdn_loss > 0.1, "{:?}", t.quantization.card);
    assert!(
        warning.contains("held-out windows saturated the device's input") && warning.contains("louder"),
        "{warning}"
    );
    assert!(!warning.contains("--seed"), "{warning}");
}

/// Without --window, --latent and --arch, `funnel train` searches the shape within the device
/// budget on the training part and records what it tried; a budget nothing fits is an error
/// that names the flags.
#[test]
fn the_shape_is_searched_when_not_given() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ecg_slice(tmp.path(), 6000);
    let out = tmp.path().join("searched");
    let searched = |budget: DeviceBudget, out: &Path| {
        train_model(&TrainRequest {
            window: None,
            latent: None,
            arch: None,
            train_hop: None,
            epochs: 8,
            budget,
            ..args(&data, out, Arch::Transform, 0, 0)
        })
    };
    let t = searched(DeviceBudget::default(), &out).unwrap();
    let card = &t.card;
    // The default rate, one directory; the chosen candidate is the model's shape.
    assert_eq!(card.train_config.code_rate.map(|r| r > 0.0), Some(true));
    assert!(card.shape_search.len() >= 6, "{:?}", card.shape_search);
    let chosen: Vec<_> = card.shape_search.iter().filter(|c| c.chosen).collect();
    assert_eq!(chosen.len(), 1);
    let c = chosen[0];
    assert_eq!(
        (c.arch, c.window, c.latent, c.windows_per_frame),
        (Arch::Transform, card.window(), card.latent(), card.windows_per_frame)
    );
    assert!(card.shape_search.iter().all(|o| o.over_budget || o.prdn_at_target >= c.prdn_at_target));
    assert_eq!(usize::from(card.windows_per_frame) * card.window(), 1024, "frames of 1024 samples");
    // Every candidate was measured.
    assert!(card.shape_search.iter().all(|o| o.bits_per_sample > 0.0 && o.prdn > 0.0 && o.seconds > 0.0));
    let reread: funnel_artifacts::ModelCard =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    let shapes = |c: &[funnel_artifacts::card::ShapeCandidate]| -> Vec<_> {
        c.iter().map(|o| (o.window, o.latent, o.windows_per_frame, o.chosen)).collect()
    };
    assert_eq!(shapes(&reread.shape_search), shapes(&card.shape_search));
    // A budget nothing fits: an error naming the flags, nothing written.
    let none = tmp.path().join("none");
    let e = searched(DeviceBudget { max_flash: 100, ..DeviceBudget::default() }, &none).err().unwrap().to_string();
    assert!(e.contains("--max-flash 100") && e.contains("budget"), "{e}");
    let e = searched(DeviceBudget { max_macs: 10, ..DeviceBudget::default() }, &none).err().unwrap().to_string();
    assert!(e.contains("--max-macs 10"), "{e}");
    assert!(!none.exists());
    // A signal that does not vary: no PRDN to rank shapes by, and an error that says so.
    let flat = tmp.path().join("flat.csv");
    std::fs::write(
        &flat,
        std::iter::once(format!("{COLUMN}\n")).chain((0..6000).map(|_| "5\n".into())).collect::<String>(),
    )
    .unwrap();
    let request = TrainRequest {
        columns: vec![COLUMN.into()],
        window: None,
        latent: None,
        arch: None,
        epochs: 2,
        ..args(&flat, &none, Arch::Transform, 0, 0)
    };
    let e = train_model(&request.clone()).err().unwrap().to_string();
    assert!(e.contains(&format!("{COLUMN} does not vary")) && e.contains("PRDN"), "{e}");
    // A lossless model codes it all the same (its card's PRDN is NaN, `null`, and reads back).
    let lossless = tmp.path().join("lossless");
    let bounded = TrainRequest { max_error: Some(0.0), counts_per_unit: Some(1.0), out: lossless.clone(), ..request };
    train_model(&bounded).unwrap();
    encode_and_decode_within(tmp.path(), &lossless, &flat, 0.0);
}

/// `funnel bench rd`: every peer's sweep and the model's point against the best peer, as JSON,
/// a table and a plot; the model's point is its device path on the held-out part.
#[test]
fn bench_rd_places_a_model_among_the_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train_small(tmp.path(), Arch::Mlp);
    let data = tmp.path().join("ecg.csv");
    let out = tmp.path().join("rd");
    let run = funnel(&[
        "bench",
        "rd",
        "--data",
        data.to_str().unwrap(),
        "--column",
        COLUMN,
        "--model",
        o.dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(table.contains("DWT bior4.4") && table.contains("bits/sample: PRDN"), "{table}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("rd.json")).unwrap()).unwrap();
    assert_eq!(v["window"], 64);
    assert_eq!(v["held_out_samples"], 13 * 64);
    let points = v["points"].as_array().unwrap();
    for method in
        ["SZ3", "DWT bior4.4 (CDF 9/7)+zstd", "DCT/window+zstd", "PCA-K int8", "zstd of device counts (lossless)"]
    {
        assert!(points.iter().any(|p| p["method"] == method), "{method} missing");
    }
    for p in points {
        for key in ["bits_per_sample", "prdn", "prd", "max_abs_error"] {
            assert!(p[key].as_f64().is_some_and(f64::is_finite), "{p}");
        }
        // An exact reconstruction has no finite SNR; JSON says null.
        assert!(p["snr_db"].as_f64().is_some() || p["prdn"] == 0.0, "{p}");
    }
    // The model's point is what `funnel eval` reports for its device path.
    let funnel_point = &v["funnel"][0];
    let int8 = &o.card.held_out[&Method::Int8Device];
    assert!((funnel_point["point"]["prdn"].as_f64().unwrap() - int8.prdn).abs() < 1e-6, "{funnel_point}");
    assert!((funnel_point["point"]["bits_per_sample"].as_f64().unwrap() - int8.bits_per_sample).abs() < 1e-9);
    let ratio = funnel_point["ratio_to_best_peer"].as_f64().unwrap();
    let best = funnel_point["best_peer_prdn"].as_f64().unwrap();
    assert!((ratio * best - int8.prdn).abs() < 1e-6 * int8.prdn, "{funnel_point}");
    // The two goals, each against its own peers: the best peer sets the highest ratio.
    for key in ["ratio_to_best_classic", "ratio_to_pca_transform_coder"] {
        if let Some(r) = funnel_point[key].as_f64() {
            assert!(r <= ratio + 1e-9, "{key}: {funnel_point}");
        }
    }
    assert!(funnel_point["ratio_to_pca_transform_coder"].as_f64().is_some(), "{funnel_point}");
    // The 13 held-out windows went in 13 frames behind one 22-byte header; a long stream sends
    // one every 64 frames.
    let headers = &funnel_point["headers"];
    let header_bits = headers["header_bits_per_sample"].as_f64().unwrap();
    assert!((header_bits - 176.0 / (13.0 * 64.0)).abs() < 1e-12, "{headers}");
    let long = headers["long_stream_bits_per_sample"].as_f64().unwrap();
    let long_share = 8.0 * long_stream_header_bytes_per_frame() / 64.0;
    assert!((long - (int8.bits_per_sample - header_bits + long_share)).abs() < 1e-12, "{headers}");
    assert!(table.contains("of which stream headers"), "{table}");
    // The error-bounded sweep: every bound kept, from lossless (a bound of 0) up.
    let bounded = v["bounded"]["points"].as_array().unwrap();
    assert!(bounded.len() >= 3 && bounded[0]["bound_counts"] == 0, "{}", v["bounded"]);
    assert!(bounded.iter().all(|p| p["max_error_counts"].as_u64() <= p["bound_counts"].as_u64()), "{bounded:?}");
    assert!(table.contains("error-bounded coding"), "{table}");
    let png = std::fs::read(out.join("rd.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000);
    // Several windows per frame: every held-out window still sent (the last frame carries the
    // 13th), and less framing per window.
    let out3 = tmp.path().join("rd3");
    let (d, m, o3) = (data.to_str().unwrap(), o.dir.path().to_str().unwrap(), out3.to_str().unwrap());
    let run = funnel(&[
        "bench",
        "rd",
        "--data",
        d,
        "--column",
        COLUMN,
        "--model",
        m,
        "--out",
        o3,
        "--windows-per-frame",
        "3",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let v3: serde_json::Value = serde_json::from_slice(&std::fs::read(out3.join("rd.json")).unwrap()).unwrap();
    let point3 = &v3["funnel"][0]["point"];
    assert!(point3["setting"].as_str().unwrap().contains("3 windows/frame (13 of 13"), "{point3}");
    assert!(point3["bits_per_sample"].as_f64().unwrap() < int8.bits_per_sample, "{point3}");
    // A model of another column is refused by name.
    let e = stderr_of(&[
        "bench",
        "rd",
        "--data",
        data.to_str().unwrap(),
        "--column",
        "t",
        "--model",
        o.dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("\"t\""), "{e}");
    let e = stderr_of(&["bench", "rd", "--data", d, "--column", COLUMN, "--out", o3, "--counts-per-unit", "0"]);
    assert!(e.contains("--counts-per-unit must be a positive number"), "{e}");
}

/// Two decodes into the same --out at once each write a whole file and the last one wins: the
/// output is never a mix of both.
#[test]
fn concurrent_decodes_into_one_output_never_interleave() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train_small(tmp.path(), Arch::Mlp);
    let (model, data) = (o.dir.path().to_str().unwrap(), tmp.path().join("ecg.csv"));
    let codes = tmp.path().join("codes.bin");
    let out = funnel(&[
        "encode",
        "--model",
        model,
        "--data",
        data.to_str().unwrap(),
        "--column",
        COLUMN,
        "--out",
        codes.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let single = tmp.path().join("single.csv");
    let decode = |to: &Path| {
        Command::new(env!("CARGO_BIN_EXE_funnel"))
            .args(["decode", "--model", model, "--input", codes.to_str().unwrap(), "--out", to.to_str().unwrap()])
            .spawn()
            .unwrap()
    };
    assert!(decode(&single).wait().unwrap().success());
    let shared = tmp.path().join("shared.csv");
    let (mut a, mut b) = (decode(&shared), decode(&shared));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), std::fs::read_to_string(&single).unwrap());
}

/// `funnel encode` of `data` (one column, [`COLUMN`]) with the bounded model in `model`, then
/// `funnel decode` (files in `dir`): every sample comes back within `bound`, each row saying so.
fn encode_and_decode_within(dir: &Path, model: &Path, data: &Path, bound: f64) {
    let recording: Vec<f64> =
        std::fs::read_to_string(data).unwrap().lines().skip(1).map(|l| l.parse().unwrap()).collect();
    let (codes, recon) = (dir.join("codes.bin"), dir.join("recon.csv"));
    let (model_s, data_s) = (model.to_str().unwrap(), data.to_str().unwrap());
    let (codes_s, recon_s) = (codes.to_str().unwrap(), recon.to_str().unwrap());
    let enc = funnel(&["encode", "--model", model_s, "--data", data_s, "--column", COLUMN, "--out", codes_s]);
    assert!(enc.status.success(), "{}", String::from_utf8_lossy(&enc.stderr));
    let dec = funnel(&["decode", "--model", model_s, "--input", codes_s, "--out", recon_s]);
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    let text = std::fs::read_to_string(&recon).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(format!("sample_index,{COLUMN},status,max_error").as_str()));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), recording.len(), "every sample, the end of the stream included");
    for (t, (row, &x)) in rows.iter().zip(&recording).enumerate() {
        assert_eq!(row[0].parse::<usize>().unwrap(), t);
        let value: f64 = row[1].parse().unwrap();
        assert!((value - x).abs() <= bound + 1e-6, "sample {t}: {x} rebuilt as {value}, bound {bound}");
        assert_eq!((row[2], row[3].parse::<f64>().unwrap()), ("ok", bound));
    }
}

/// A conv model trained with `--max-error`: its latent codes are tried through its integer
/// decoder (upsampled convolutions) as a dense model's are, and `funnel encode` and `funnel
/// decode` rebuild every sample within the bound.
#[test]
fn a_bounded_conv_model_tries_its_codes_and_keeps_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ecg_slice(tmp.path(), 3000);
    let model = tmp.path().join("m");
    let trained = funnel(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--column",
        COLUMN,
        "--window",
        "32",
        "--latent",
        "4",
        "--arch",
        "conv",
        "--epochs",
        "2",
        "--counts-per-unit",
        "200",
        "--max-error",
        "0.02",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    let b = funnel_artifacts::ModelDir::new(&model).load_card().unwrap().bounded.expect("a bounded card");
    assert!(b.trials.iter().any(|t| t.latent_bits_per_sample.is_some()), "the codes were tried: {b:?}");
    assert!(b.max_abs_error <= 0.02 + 1e-6, "{b:?}");
    encode_and_decode_within(tmp.path(), &model, &data, 0.02);
}

/// `--max-error`: `funnel train`, then `funnel encode` and `funnel decode`, rebuild every sample
/// of the recording within the bound (in its units), each row saying so; `funnel quantize
/// --max-error 0` makes the same model lossless in device counts (the ECG is on MIT-BIH's grid
/// of 200 counts per mV); a bound the card cannot keep is refused with the reason.
#[test]
fn a_bounded_model_rebuilds_every_sample_within_its_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ecg_slice(tmp.path(), 4000);
    let model = tmp.path().join("m");
    let (data_s, model_s) = (data.to_str().unwrap(), model.to_str().unwrap());
    let trained = funnel(&[
        "train",
        "--data",
        data_s,
        "--column",
        COLUMN,
        "--window",
        "64",
        "--latent",
        "8",
        "--arch",
        "mlp",
        "--epochs",
        "2",
        "--counts-per-unit",
        "200",
        "--max-error",
        "0.02",
        "--out",
        model_s,
    ]);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    for (bound, quantize) in [(0.02f64, None), (0.0, Some("0"))] {
        if let Some(e) = quantize {
            let q = funnel(&["quantize", "--model", model_s, "--max-error", e]);
            assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
        }
        let card = funnel_artifacts::ModelDir::new(&model).load_card().unwrap();
        let b = card.bounded.clone().expect("a bounded card");
        assert_eq!((b.max_error, b.max_error_counts), (bound, (bound * 200.0).round() as u16));
        // The recording is read as f32: its values are a few 1e-8 mV off the grid.
        assert!(b.max_abs_error <= bound + 1e-6 && b.windows_per_frame == 16 && b.bits_per_sample > 0.0, "{b:?}");
        // No rate was given: the samples alone and the latent codes at lower and lower rates
        // were tried on the training part, and the stream that took the fewest bits was kept.
        let rates: Vec<f64> = b.trials.iter().filter_map(|t| t.latent_bits_per_sample).collect();
        assert!(b.trials[0].latent_bits_per_sample.is_none() && rates.len() >= 2, "{b:?}");
        assert!(rates.windows(2).all(|r| r[1] < r[0]), "{b:?}");
        let fewest = b.trials.iter().min_by(|x, y| x.training_bits_per_sample.total_cmp(&y.training_bits_per_sample));
        assert_eq!(fewest.unwrap().latent_bits_per_sample.is_some(), b.latent_codes, "{b:?}");
        encode_and_decode_within(tmp.path(), &model, &data, bound);
        // `funnel bench rd` places the model in the bounded table at its bound, its stream of the
        // held-out part measured as for the card, against SZ3 at the same bound (and zstd and
        // FLAC, lossless); it has no point on the unbounded curve, as it sends no such stream.
        let rd = tmp.path().join("rd");
        let run = funnel(&[
            "bench",
            "rd",
            "--data",
            data_s,
            "--column",
            COLUMN,
            "--model",
            model_s,
            "--out",
            rd.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert!(
            String::from_utf8_lossy(&run.stdout).contains("(bounded, "),
            "{}",
            String::from_utf8_lossy(&run.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(rd.join("rd.json")).unwrap()).unwrap();
        let placed = &v["bounded"]["models"][0];
        assert_eq!(
            (placed["bound_counts"].as_u64(), placed["latent_codes"].as_bool()),
            (Some(u64::from(b.max_error_counts)), Some(b.latent_codes))
        );
        assert!((placed["stream"]["bits_per_sample"].as_f64().unwrap() - b.bits_per_sample).abs() < 1e-9, "{placed}");
        assert!(placed["sz3_bits_per_sample"].as_f64().is_some_and(|x| x > 0.0), "{placed}");
        assert_eq!(placed["flac_bits_per_sample"].as_f64().is_some(), bound == 0.0, "{placed}");
        assert_eq!(v["funnel"].as_array().map(Vec::len), Some(0), "{}", v["funnel"]);
    }
    // A window no bounded frame holds is refused before anything is trained or written.
    let wide = tmp.path().join("wide");
    let e = stderr_of(&[
        "train",
        "--data",
        data_s,
        "--column",
        COLUMN,
        "--window",
        "2048",
        "--max-error",
        "0.02",
        "--out",
        wide.to_str().unwrap(),
    ]);
    assert!(e.contains("at most 1024 samples") && e.contains("--window"), "{e}");
    assert!(!wide.exists());
    // A negative bound is refused, naming the flag.
    let bad = funnel(&["quantize", "--model", model_s, "--max-error=-1"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--max-error"), "{}", String::from_utf8_lossy(&bad.stderr));
}
