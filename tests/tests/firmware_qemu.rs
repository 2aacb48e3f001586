//! The firmware under QEMU, through the same code as `cargo xtask qemu`: built with the shipped
//! model, run on the shipped recording, its UART bytes must be `funnel encode`'s byte for byte,
//! and `funnel decode` of those bytes must meet the model card.
//!
//! Needs `qemu-system-arm` (7.2+) and the `thumbv7em-none-eabihf` / `thumbv6m-none-eabi` targets
//! (`.ci/run` installs them); without them these tests fail with instructions, they do not skip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use funnel::codec::DecodeReport;
use funnel::pipeline::{decode_stream, encode_recording, DecodeRequest, EncodeRequest, Source, StreamRequest};
use funnel::runtime::Backend;
use funnel_artifacts::{Method, ModelDir, Recording};
use funnel_e2e::{ecg_bounded_model, ecg_data, ecg_lossless_model, ecg_model, held_out_prdn};
use funnel_shared::stream::StreamConfig;
use xtask::{Board, QemuOptions};

fn options() -> QemuOptions {
    QemuOptions { count_instructions: false, profile: false, timeout: Some(Duration::from_secs(300)) }
}

/// Where two frame streams first differ, for a readable failure.
fn assert_same_bytes(device: &[u8], host: &[u8], what: &str) {
    if device == host {
        return;
    }
    let at = device.iter().zip(host).position(|(a, b)| a != b).unwrap_or(device.len().min(host.len()));
    panic!(
        "{what}: the firmware sent {} bytes, `funnel encode` wrote {}; first difference at byte {at}",
        device.len(),
        host.len()
    );
}

/// Runs `board` with `model` on the whole ECG recording and checks its frames against
/// `funnel encode`.
fn device_frames_match_funnel_encode(board: Board, model: &Path, tmp: &Path) -> Vec<u8> {
    xtask::require_qemu().unwrap();
    let model = model.canonicalize().expect("a shipped model");
    let (data, columns) = ecg_data();
    let host_codes = tmp.join("host.bin");
    let encoded = encode_recording(&EncodeRequest {
        model: model.clone(),
        data: data.clone(),
        columns: columns.clone(),
        out: host_codes,
        // The model's own windows per frame, which the firmware embeds from its card.
        stream: StreamRequest { windows_per_frame: None, config: StreamConfig::DEFAULT },
    })
    .unwrap();
    let counts = xtask::recording_counts(&model, &data, &columns).unwrap();
    let run = xtask::simulate(board, &model, &counts, false, &options()).unwrap();
    assert_same_bytes(&run.frames, &encoded.bytes, board.name());
    assert!(run.console.contains(&format!("frames={}", encoded.frames)), "{}", run.console);
    run.frames
}

/// `funnel decode` of the device's bytes with `model` into a CSV in `tmp`: every frame intact.
fn decode_device_frames(model: &Path, frames: &[u8], tmp: &Path) -> (PathBuf, DecodeReport) {
    let (codes, csv) = (tmp.join("device.bin"), tmp.join("recon.csv"));
    std::fs::write(&codes, frames).unwrap();
    let report = decode_stream(&DecodeRequest {
        model: model.to_path_buf(),
        source: Source::File(codes),
        out: csv.clone(),
        backend: Backend::Tract,
        plot: None,
        stream: None,
    })
    .unwrap()
    .remove(0)
    .report
    .unwrap();
    assert_eq!((report.corrupt_runs(), report.missing_samples), (0, 0), "{}", report.summary());
    (csv, report)
}

#[test]
fn cortex_m4_firmware_sends_exactly_what_funnel_encode_writes_and_decodes_to_the_card() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = device_frames_match_funnel_encode(Board::Qemu, &ecg_model(), tmp.path());

    // `funnel decode` of the device's bytes: every frame intact, held-out PRDN as on the card.
    let dir = ecg_model();
    let card = ModelDir::new(&dir).load_card().unwrap();
    let recorded = &card.held_out[&Method::Int8Device];
    let (csv, report) = decode_device_frames(&dir, &frames, tmp.path());

    // Every sample of the recording comes back: its end travels in the stream's last frame.
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count() - 1;
    let recording = Recording::from_csv(&ecg_data().0, &card.columns).unwrap();
    assert_eq!(rows, recording.samples[0].len(), "{}", report.summary());
    // The card's figure covers the held-out part sent alone; over the same windows, sent as
    // part of the whole recording, the device path agrees with it.
    let (prdn, windows) = held_out_prdn(&csv, &card, &ecg_data().0);
    assert_eq!(windows, recorded.windows);
    assert!((prdn - recorded.prdn).abs() <= 1e-3 * recorded.prdn, "device PRDN {prdn} vs card {}", recorded.prdn);
}

#[test]
fn cortex_m0_firmware_sends_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    device_frames_match_funnel_encode(Board::QemuM0, &ecg_model(), tmp.path());
}

/// The lossless model (bounded, `--max-error 0`) on both QEMU images: the bytes are `funnel
/// encode`'s, and `funnel decode` of them gives back every count of the recording exactly,
/// each row marked with its bound.
#[test]
fn bounded_firmware_sends_what_funnel_encode_writes_and_every_count_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let model = ecg_lossless_model();
    let frames = device_frames_match_funnel_encode(Board::Qemu, &model, tmp.path());
    assert_eq!(device_frames_match_funnel_encode(Board::QemuM0, &model, tmp.path()), frames);
    for (line, x) in bounded_rows(&model, &frames, tmp.path()) {
        let fields: Vec<&str> = line.split(',').collect();
        // MIT-BIH's samples are whole counts of 1/200 mV: lossless means equal.
        assert_eq!((fields[1].parse::<f32>().unwrap(), fields[3]), (x, "0"), "{line}");
    }
}

/// `funnel decode` of a bounded model's device bytes: each row of its CSV (after the header,
/// which names the bound's columns) with the recording's sample it rebuilds, one row for
/// every sample.
fn bounded_rows(model: &Path, frames: &[u8], tmp: &Path) -> Vec<(String, f32)> {
    let (csv, _) = decode_device_frames(model, frames, tmp);
    let (data, columns) = ecg_data();
    let recording = Recording::from_csv(&data, &columns).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("sample_index,ecg_mlii_mV,status,max_error"));
    let rows: Vec<(String, f32)> = lines.map(str::to_owned).zip(recording.samples[0].iter().copied()).collect();
    assert_eq!(rows.len(), recording.samples[0].len());
    rows
}

/// The error-bounded model with latent codes (`--max-error 0.07` mV, 14 counts) on both QEMU
/// images (the Cortex-M0's 16 KiB of RAM hold this path's stack): the device runs the encoder,
/// codes the latent codes, runs the integer decoder on them and sends the residuals; the bytes
/// are `funnel encode`'s, and `funnel decode` of them rebuilds every sample of the recording
/// within the bound, each row marked with it.
#[test]
fn latent_bounded_firmware_sends_what_funnel_encode_writes_and_every_sample_is_within_its_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let model = ecg_bounded_model();
    let card = ModelDir::new(&model).load_card().unwrap();
    let bounded = card.bounded.expect("a bounded model");
    assert!(bounded.latent_codes && bounded.max_error_counts == 14, "{bounded:?}");
    let frames = device_frames_match_funnel_encode(Board::Qemu, &model, tmp.path());
    assert_eq!(device_frames_match_funnel_encode(Board::QemuM0, &model, tmp.path()), frames);
    for (line, x) in bounded_rows(&model, &frames, tmp.path()) {
        let fields: Vec<&str> = line.split(',').collect();
        let value: f32 = fields[1].parse().unwrap();
        // MIT-BIH's samples are whole counts of 1/200 mV: 14 counts are 0.07 mV.
        assert!(((value - x) * 200.0).abs().round() <= 14.0, "{line}: the recording has {x}");
        assert_eq!((fields[2], fields[3]), ("ok", "0.07"), "{line}");
    }
}

#[test]
fn nucleo_f411re_image_builds_and_fits_the_chip() {
    let model = ecg_model().canonicalize().expect("the shipped model models/ecg");
    let elf =
        xtask::build_firmware(&xtask::BuildOptions { board: Board::NucleoF411re, model, portable_kernels: false })
            .unwrap();
    let sizes = xtask::elf_sizes(&elf).unwrap();
    // STM32F411RE: 512 KiB flash, 128 KiB RAM (the stack gets what the statics leave).
    assert!(sizes.flash() <= 512 * 1024, "{sizes:?}");
    assert!(sizes.static_ram() <= 64 * 1024, "{sizes:?}");
}
