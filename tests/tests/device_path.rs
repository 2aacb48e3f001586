//! The shipped ECG model through the device path: `encode` (the device's int8 code on the host)
//! → frame bytes → `decode`, against the model card and a committed golden vector.

use std::path::Path;

use funnel::codec::{DecodeReport, EncodedStream};
use funnel::eval::device_metrics;
use funnel::pipeline::{
    dataset_for_model, decode_stream, encode_recording, quantize_model, CodeRate, DecodeRequest, EncodeRequest,
    QuantizeRequest, Source,
};
use funnel::runtime::{load_onnx, Backend};
use funnel_artifacts::card::SeamFilter;
use funnel_artifacts::data::Normalization;
use funnel_artifacts::{Graph, Method, ModelCard, ModelDir, ModelSpec};
use funnel_e2e::{ecg_data, ecg_model, held_out_prdn, read_rows, root};
use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::{CorruptKind, CHECK_LEN, FLAG_ENTROPY_CODED, MIN_HEADER_LEN};

/// Items (the stream header and frames) of the golden vector, one hex line each.
const GOLDEN_ITEMS: usize = 8;

fn encode_ecg(out: &Path) -> EncodedStream {
    let (data, columns) = ecg_data();
    let request = EncodeRequest {
        model: ecg_model(),
        data,
        columns,
        out: out.to_path_buf(),
        stream: StreamConfig::DEFAULT.into(),
    };
    encode_recording(&request).unwrap()
}

/// The first `n` items of a stream sent with [`StreamConfig::DEFAULT`] by the shipped model: a
/// stream header before frames 0, 64, …, then one frame each (a length byte, the payload, the
/// check: the shipped model entropy codes its codes).
fn items(bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    assert_ne!(bytes[3] & FLAG_ENTROPY_CODED, 0, "the shipped model's frames are entropy coded");
    let mut rest = bytes;
    let mut out = Vec::new();
    for frame in 0.. {
        if out.len() == n || rest.is_empty() {
            break;
        }
        if frame % 64 == 0 {
            // The header's length less 16 is in its flags byte's bits 3 to 7.
            let (item, tail) = rest.split_at((16 + usize::from(rest[3] >> 3)).min(rest.len()));
            out.push(item.to_vec());
            rest = tail;
        }
        if out.len() == n || rest.is_empty() {
            break;
        }
        let (item, tail) = rest.split_at((1 + usize::from(rest[0]) + CHECK_LEN).min(rest.len()));
        out.push(item.to_vec());
        rest = tail;
    }
    out
}

fn shipped_latent() -> usize {
    ModelDir::new(ecg_model()).load_card().unwrap().latent()
}

fn decode(model: &Path, input: &Path, out: &Path) -> anyhow::Result<DecodeReport> {
    let mut outputs = decode_stream(&DecodeRequest {
        model: model.to_path_buf(),
        source: Source::File(input.to_path_buf()),
        out: out.to_path_buf(),
        backend: Backend::Tract,
        plot: None,
        stream: None,
    })?;
    assert_eq!(outputs.len(), 1, "one stream on the link");
    outputs.remove(0).report
}

fn ecg_rows(path: &Path) -> Vec<(u64, Option<f64>, String)> {
    read_rows(path, &ecg_data().1[0])
}

#[test]
fn the_shipped_model_meets_its_card_through_encode_and_decode() {
    let dir = ModelDir::new(ecg_model());
    let card = dir.load_card().unwrap();
    let recorded = &card.held_out[&Method::Int8Device];
    let q = card.quantization.as_ref().expect("the shipped model is quantized");
    assert!(q.relative_prdn_loss <= 0.10, "int8 loses {:.1} % PRDN against float", 100.0 * q.relative_prdn_loss);

    // The library path the card was computed with reproduces it.
    let (data, columns) = ecg_data();
    let ds = dataset_for_model(&dir, &card, &data, &columns).unwrap();
    let decoder = load_onnx(&dir.onnx_path(Graph::Decoder), Backend::Tract).unwrap();
    let blob = dir.load_blob().unwrap();
    let again =
        device_metrics(&blob, decoder.as_ref(), &ds, card.sensor_bits, card.windows_per_frame, card.seam_filter)
            .unwrap();
    // The shipped recording's held-out part stays within the device's input.
    assert_eq!(again.saturated_windows, 0);
    let again = again.metrics;
    assert!((again.prdn - recorded.prdn).abs() < 1e-6, "{} vs card {}", again.prdn, recorded.prdn);

    // The CLI path over the whole recording: held-out rows of the decoded CSV against the file.
    let tmp = tempfile::tempdir().unwrap();
    let (codes, csv) = (tmp.path().join("codes.bin"), tmp.path().join("recon.csv"));
    let encoded = encode_ecg(&codes);
    let report = decode(dir.path(), &codes, &csv).unwrap();
    assert_eq!((report.frames as usize, report.corrupt_runs(), report.missing_samples), (encoded.frames, 0, 0));
    let (prdn, windows) = held_out_prdn(&csv, &card, &data);
    assert_eq!(windows, recorded.windows, "one window per frame: every held-out window is decoded");
    assert!((prdn - recorded.prdn).abs() <= 1e-3 * recorded.prdn, "CLI PRDN {prdn} vs card {}", recorded.prdn);
}

#[test]
fn the_first_frames_match_the_golden_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let codes = tmp.path().join("codes.bin");
    let bytes = encode_ecg(&codes).bytes;
    let hex: String = items(&bytes, GOLDEN_ITEMS)
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    let golden = root().join("tests/golden/ecg_first_frames.hex");
    if std::env::var_os("FUNNEL_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &hex).unwrap();
    }
    let expected =
        std::fs::read_to_string(&golden).expect("golden vector (regenerate with FUNNEL_BLESS=1 after retraining)");
    assert_eq!(
        hex,
        expected,
        "frames differ from {}; if the model was retrained on purpose, rerun with FUNNEL_BLESS=1",
        golden.display()
    );
}

#[test]
fn framing_costs_three_bytes_per_frame_and_a_header_per_64_and_entropy_coding_pays_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let codes = tmp.path().join("codes.bin");
    let encoded = encode_ecg(&codes);
    let bytes = std::fs::read(&codes).unwrap();
    let all = items(&bytes, usize::MAX);
    assert_eq!(all.iter().map(Vec::len).sum::<usize>(), bytes.len());
    // A header starts with its magic byte and is as long as its flags byte says (a frame that
    // started with 0xF5 would be one of 128 bytes or more).
    let (headers, frames): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
        all.iter().partition(|i| i[0] == 0xF5 && i.len() == 16 + usize::from(i[3] >> 3));
    assert_eq!(frames.len(), encoded.frames);
    // 22 bytes up to frame 127 (its number in one varint byte, the start sample 0 in one), 23
    // from frame 128 on.
    let header_lens: Vec<usize> = (0..encoded.frames).step_by(64).map(|f| if f < 128 { 22 } else { 23 }).collect();
    assert_eq!(headers.iter().map(|h| h.len()).collect::<Vec<_>>(), header_lens);
    let payload: usize = frames.iter().map(|f| f.len() - 1 - CHECK_LEN).sum();
    let windows = encoded.windows as f64;
    // Exactly: a header before every 64th frame, a length byte and a 2-byte check per frame.
    let framing = bytes.len() - payload;
    assert_eq!(framing, header_lens.iter().sum::<usize>() + (1 + CHECK_LEN) * encoded.frames);
    assert!(framing as f64 / windows <= 3.6, "{} bytes of framing per window", framing as f64 / windows);
    // The coded codes save more than the length byte costs: fewer bytes than raw codes plus
    // the framing of raw frames (a check, and headers).
    let raw = shipped_latent() as f64 + 2.0 + MIN_HEADER_LEN as f64 / 64.0;
    assert!((bytes.len() as f64 / windows) < raw - 1.0, "{} bytes per window", bytes.len() as f64 / windows);
}

#[test]
fn a_damaged_stream_reports_exactly_the_damage_and_keeps_the_rest() {
    let dir = ecg_model();
    let window = ModelDir::new(&dir).load_card().unwrap().window() as u64;
    let tmp = tempfile::tempdir().unwrap();
    let codes = tmp.path().join("codes.bin");
    // The stream header and frames 0..40.
    let items = items(&encode_ecg(&codes).bytes, 41);
    std::fs::write(&codes, items.concat()).unwrap();
    let clean_csv = tmp.path().join("clean.csv");
    decode(&dir, &codes, &clean_csv).unwrap();
    let clean = ecg_rows(&clean_csv);

    let mut damaged = Vec::new();
    for (i, f) in items.iter().enumerate() {
        let mut f = f.clone();
        // Item i + 1 is frame i.
        match i.wrapping_sub(1) {
            5 => {
                f.drain(1..f.len().min(4)); // deleted bytes
            }
            11 => damaged.extend_from_slice(&f.clone()), // a frame sent twice
            17 => *f.last_mut().unwrap() ^= 0x08,        // a flipped bit
            39 => f.truncate(f.len() / 2),               // the stream ends mid-frame
            _ => {}
        }
        damaged.extend(f);
    }
    let bad = tmp.path().join("damaged.bin");
    std::fs::write(&bad, &damaged).unwrap();
    let csv = tmp.path().join("damaged.csv");
    let report = decode(&dir, &bad, &csv).unwrap();
    assert_eq!(report.frames, 37);
    assert_eq!(report.frames_lost, 2);
    assert_eq!(report.missing_samples, 2 * window);
    assert_eq!(report.gaps.iter().map(|g| g.first_sample).collect::<Vec<_>>(), vec![5 * window, 17 * window]);
    // Four unusable runs: the shortened frame, the repeat (told apart), the flipped frame (its
    // check failed), the cut-off end.
    assert_eq!(report.corrupt_runs(), 4, "{:?}", report.corrupt);
    assert_eq!(report.corrupt.get(&CorruptKind::Crc), Some(&1));
    assert_eq!(report.corrupt.get(&CorruptKind::Repeated), Some(&1));
    assert_eq!(report.corrupt.get(&CorruptKind::Truncated), Some(&1));

    let rows = ecg_rows(&csv);
    assert_eq!(rows.len() as u64, 39 * window);
    // The receiver's seam filter smooths only where two decoded windows meet: next to a lost
    // window, the samples it would have moved keep their unsmoothed values.
    let card = ModelDir::new(&dir).load_card().unwrap();
    let reach = card.seam_filter.map_or(0, |f| f.samples as u64);
    // Lost: windows 5 and 17, and 39 (cut off at the end).
    let near_loss = |i: u64| [5, 6, 17, 18, 39].iter().any(|&w| (w * window).abs_diff(i) <= reach);
    for (i, row) in rows.iter().enumerate() {
        let w = i as u64 / window;
        if w == 5 || w == 17 {
            assert_eq!((row.0, row.1, row.2.as_str()), (i as u64, None, "missing"));
        } else if near_loss(i as u64) {
            assert_eq!((row.0, row.2.as_str()), (clean[i].0, clean[i].2.as_str()), "row {i}");
        } else {
            assert_eq!(row, &clean[i], "row {i}");
        }
    }
}

#[test]
fn frames_are_refused_by_another_model_naming_both_ids() {
    // Another model: the shipped one re-quantized with a different calibration slice.
    let tmp = tempfile::tempdir().unwrap();
    let other = copy_of_the_shipped_model(tmp.path());
    let (data, columns) = ecg_data();
    let head = tmp.path().join("head.csv");
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&head, text.lines().take(5000).collect::<Vec<_>>().join("\n")).unwrap();
    let q = quantize_model(&QuantizeRequest {
        model: other.clone(),
        calibration: Some((head, columns)),
        rate: CodeRate::AsBefore,
        dead_zone: None,
        max_error: None,
    })
    .unwrap();
    let ours = ModelDir::new(ecg_model()).load_card().unwrap().quantization.unwrap().model_id;
    assert_ne!(q.card.model_id, ours);

    let codes = tmp.path().join("codes.bin");
    encode_ecg(&codes);
    let out = tmp.path().join("x.csv");
    std::fs::write(&out, "an earlier reconstruction\n").unwrap();
    let err = decode(&other, &codes, &out).unwrap_err().to_string();
    assert!(err.contains(&ours) && err.contains(&q.card.model_id), "{err}");
    // The failed decode left the earlier output as it was, and no temporary file.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "an earlier reconstruction\n");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 4, "other/, head.csv, codes.bin, x.csv");
    // Decoding a capture into itself is refused before anything is written.
    let before = std::fs::read(&codes).unwrap();
    let err = decode(&ecg_model(), &codes, &codes).unwrap_err().to_string();
    assert!(err.contains("--input") && err.contains("destroy"), "{err}");
    assert_eq!(std::fs::read(&codes).unwrap(), before);
}

/// `models/ecg` copied into `dir/other`, its card pointing at the same recording (cards name
/// their data relative to their directory).
#[test]
fn a_target_rate_picks_a_coarser_code_step_that_meets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_of_the_shipped_model(tmp.path());
    let shipped = ModelDir::new(ecg_model()).load_card().unwrap();
    let finest = shipped.held_out[&Method::Int8Device].clone();
    let request =
        |rate| QuantizeRequest { model: model.clone(), calibration: None, rate, dead_zone: None, max_error: None };
    let shipped_step = shipped.quantization.as_ref().unwrap().code_step;
    let coarse = quantize_model(&request(CodeRate::BitsPerSample(0.4))).unwrap();
    assert!(coarse.card.code_step > shipped_step, "step {}", coarse.card.code_step);
    // The target holds on the training part (within the search's 2 %); held out, the rate
    // falls and the error grows.
    let card = ModelDir::new(&model).load_card().unwrap();
    let (data, columns) = ecg_data();
    let dataset = dataset_for_model(&ModelDir::new(&model), &card, &data, &columns).unwrap();
    let train_rate = funnel::codec::device_rate(&coarse.blob, dataset.train(), card.windows_per_frame).unwrap();
    assert!((0.392..=0.4).contains(&train_rate), "{train_rate} bits/sample on the training part");
    assert!(coarse.int8.bits_per_sample < finest.bits_per_sample);
    assert!(coarse.int8.prdn > finest.prdn);
    // The card keeps the step: quantizing again as before gives the same blob.
    assert_eq!(card.quantization.as_ref().unwrap().code_step, coarse.card.code_step);
    let again = quantize_model(&request(CodeRate::AsBefore)).unwrap();
    assert_eq!(again.card.model_id, coarse.card.model_id);
    // A rate above the finest step's is out of reach: the finest step it is (half the step the
    // network was trained on).
    let finest_again = quantize_model(&request(CodeRate::BitsPerSample(8.0))).unwrap();
    assert_eq!(finest_again.card.code_step, funnel::quantize::MIN_TRAINED_GRID_STEP);
    assert!(finest_again.warning.as_deref().is_some_and(|w| w.contains("finest") && w.contains("more codes")));
    assert!(quantize_model(&request(CodeRate::Step(0.25))).is_err());
}

fn copy_of_the_shipped_model(dir: &Path) -> std::path::PathBuf {
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    for entry in std::fs::read_dir(ecg_model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), other.join(entry.file_name())).unwrap();
    }
    let copy = ModelDir::new(&other);
    let mut card = copy.load_card().unwrap();
    card.data_file = copy.data_file_name(&ecg_data().0);
    copy.save_card(&mut card).unwrap();
    other
}

#[test]
fn an_output_that_cannot_be_written_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let codes = tmp.path().join("codes.bin");
    encode_ecg(&codes);
    let out = tmp.path().join("a-directory");
    std::fs::create_dir(&out).unwrap();
    let e = decode(&ecg_model(), &codes, &out).unwrap_err().to_string();
    assert!(e.contains("cannot write") && e.contains("a-directory"), "{e}");
    let names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
}

#[test]
fn two_streams_on_one_link_decode_each_to_its_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, columns) = ecg_data();
    let encode = |stream: StreamConfig, name: &str| {
        let out = tmp.path().join(name);
        let request = EncodeRequest {
            model: ecg_model(),
            data: data.clone(),
            columns: columns.clone(),
            out,
            stream: stream.into(),
        };
        items(&encode_recording(&request).unwrap().bytes, 30)
    };
    let a = encode(StreamConfig::DEFAULT, "a.bin");
    let b = encode(StreamConfig { stream_id: 7, session: 3, ..StreamConfig::DEFAULT }, "b.bin");
    let link: Vec<u8> = a.iter().zip(&b).flat_map(|(x, y)| [x.clone(), y.clone()]).flatten().collect();
    let (alone_in, link_in) = (tmp.path().join("alone.bin"), tmp.path().join("link.bin"));
    std::fs::write(&alone_in, a.concat()).unwrap();
    std::fs::write(&link_in, &link).unwrap();
    let alone = tmp.path().join("alone.csv");
    decode(&ecg_model(), &alone_in, &alone).unwrap();

    let out = tmp.path().join("link.csv");
    let outputs = decode_stream(&DecodeRequest {
        model: ecg_model(),
        source: Source::File(link_in),
        out: out.clone(),
        backend: Backend::Tract,
        plot: None,
        stream: None,
    })
    .unwrap();
    let got: Vec<(Option<u8>, std::path::PathBuf, u64)> =
        outputs.into_iter().map(|o| (o.stream_id, o.out, o.report.unwrap().frames)).collect();
    let second = tmp.path().join("link.stream7.csv");
    assert_eq!(got, vec![(Some(0), out.clone(), 29), (Some(7), second.clone(), 29)]);
    // Both streams carry the same recording: each output is the stream decoded alone.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), std::fs::read_to_string(&alone).unwrap());
    assert_eq!(std::fs::read_to_string(&second).unwrap(), std::fs::read_to_string(&alone).unwrap());
}

#[test]
fn a_decoder_of_another_model_of_the_same_shape_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let other = copy_of_the_shipped_model(tmp.path());
    let codes = tmp.path().join("codes.bin");
    encode_ecg(&codes);
    // Other weights, same shape: what a decoder.onnx copied from a sibling model looks like.
    let path = other.join("decoder.onnx");
    let mut onnx = std::fs::read(&path).unwrap();
    let n = onnx.len();
    onnx[n / 2] ^= 0x01;
    std::fs::write(&path, onnx).unwrap();
    let out = tmp.path().join("x.csv");
    let e = decode(&other, &codes, &out).unwrap_err().to_string();
    assert!(e.contains("decoder.onnx") && e.contains("another model"), "{e}");
    assert!(!out.exists());
}

#[test]
fn a_card_and_a_blob_of_different_models_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let other = copy_of_the_shipped_model(tmp.path());
    let codes = tmp.path().join("codes.bin");
    encode_ecg(&codes);
    let out = tmp.path().join("x.csv");
    let dir = ModelDir::new(&other);
    let shipped = dir.load_card().unwrap();
    let write_card = |card: &ModelCard| {
        std::fs::write(dir.card_path(), serde_json::to_string_pretty(card).unwrap()).unwrap();
    };
    // A card that contradicts itself (no columns for a one-channel model; a hidden layer of
    // 2^32 − 1 units; a window of 2^31) is refused when it is read.
    let no_columns = ModelCard { columns: vec![], ..shipped.clone() };
    let huge_layer =
        ModelCard { spec: ModelSpec { hidden: vec![4_294_967_295, 60], ..shipped.spec.clone() }, ..shipped.clone() };
    let huge_window = ModelCard { spec: ModelSpec { window: 1 << 31, ..shipped.spec.clone() }, ..shipped.clone() };
    // A seam filter that would overshoot or reach past a window; frames of no window.
    let strong_filter = ModelCard { seam_filter: Some(SeamFilter { samples: 2, strength: 5.0 }), ..shipped.clone() };
    let wide_filter = ModelCard { seam_filter: Some(SeamFilter { samples: 1000, strength: 0.5 }), ..shipped.clone() };
    let no_window = ModelCard { windows_per_frame: 0, ..shipped.clone() };
    for (card, says) in [
        (no_columns, "0 column(s)"),
        (huge_layer, "4294967295"),
        (huge_window, "too large"),
        (strong_filter, "seam_filter"),
        (wide_filter, "seam_filter"),
        (no_window, "windows_per_frame"),
    ] {
        write_card(&card);
        let e = decode(&other, &codes, &out).unwrap_err().to_string();
        assert!(e.contains("contradicts itself") && e.contains(says), "{e}");
        assert!(!out.exists(), "no output for a model that cannot decode");
    }
    // A consistent two-channel card beside the one-channel blob: the two are of different models.
    let two = ModelCard {
        columns: vec!["a".into(), "b".into()],
        spec: ModelSpec::new(shipped.spec.arch, 2, shipped.window(), shipped.latent()).unwrap(),
        normalization: Normalization { mean: vec![0.0; 2], std: vec![1.0; 2] },
        ..shipped
    };
    write_card(&two);
    let e = decode(&other, &codes, &out).unwrap_err().to_string();
    assert!(e.contains("different models") && e.contains("2 column(s)") && e.contains("1 channel(s)"), "{e}");
    assert!(!out.exists(), "no output for a stream that cannot be decoded");
}
