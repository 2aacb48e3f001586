//! Embeds the model blob and picks the board's memory layout.
//!
//! - `FUNNEL_MODEL`: model directory holding `encoder.fq8` (default `models/ecg`, relative
//!   paths are taken from the workspace root). The blob is validated here, so a bad model fails
//!   the build with the reason, and the firmware's buffers are sized from it; the firmware
//!   validates it again at start-up. The card beside it (`model.json`) gives the windows per
//!   frame the model's rate was measured with, which the firmware sends.
//! - `FUNNEL_SAMPLE_RATE_HZ`: sampling rate of real boards (default 360, the ECG recording's).
//! - `board-*` features: copy `memory/<board>.x` to `memory.x` on the linker search path.
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use funnel_shared::encoder::QuantizedEncoder;
use funnel_shared::stream::{stream_layout, stream_scratch_len};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    println!("cargo:rerun-if-env-changed=FUNNEL_MODEL");
    println!("cargo:rerun-if-env-changed=FUNNEL_SAMPLE_RATE_HZ");
    println!("cargo:rerun-if-changed=build.rs");

    let model_dir = match env::var_os("FUNNEL_MODEL") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        _ => workspace.join("models/ecg"),
    };
    let blob_path = model_dir.join("encoder.fq8");
    println!("cargo:rerun-if-changed={}", blob_path.display());
    let blob = std::fs::read(&blob_path).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read the model blob {}: {e}.\n\
             The firmware embeds `encoder.fq8` from the model directory given by FUNNEL_MODEL \
             (default models/ecg). Quantize a model first (`funnel quantize`) or point \
             FUNNEL_MODEL at a directory that has one.",
            blob_path.display()
        ))
    });
    let encoder = QuantizedEncoder::from_blob(&blob)
        .unwrap_or_else(|e| fail(&format!("the model blob {} is not usable: {e}", blob_path.display())));
    let spec = encoder.spec();
    let card_path = model_dir.join("model.json");
    println!("cargo:rerun-if-changed={}", card_path.display());
    let windows_per_frame = windows_per_frame(&card_path);
    let sample_rate: u32 = match env::var("FUNNEL_SAMPLE_RATE_HZ") {
        Ok(v) => v.parse().unwrap_or_else(|_| fail("FUNNEL_SAMPLE_RATE_HZ must be a positive integer")),
        Err(_) => 360,
    };

    let mut code = String::new();
    writeln!(code, "/// Model directory the blob was taken from at build time.").unwrap();
    writeln!(code, "pub const MODEL_DIR: &str = {:?};", model_dir.display().to_string()).unwrap();
    writeln!(code, "/// The model blob (`encoder.fq8`), read in place from flash.").unwrap();
    writeln!(code, "pub static MODEL_BLOB: &[u8] = include_bytes!({:?});", path_str(&blob_path)).unwrap();
    writeln!(code, "/// Samples per window per channel.").unwrap();
    writeln!(code, "pub const WINDOW: usize = {};", encoder.window()).unwrap();
    writeln!(code, "pub const CHANNELS: usize = {};", encoder.channels()).unwrap();
    writeln!(code, "/// i16 samples in one window, all channels (the window buffer's capacity).").unwrap();
    writeln!(code, "pub const WINDOW_SAMPLES: usize = {};", encoder.window() * encoder.channels()).unwrap();
    writeln!(code, "/// i16 scratch the stream needs (entries; none for a bounded model's samples alone).").unwrap();
    writeln!(code, "pub const SCRATCH_LEN: usize = {};", stream_scratch_len(&encoder)).unwrap();
    writeln!(code, "pub const CODE_LEN: usize = {};", encoder.code_len()).unwrap();
    writeln!(code, "pub const MACS_PER_WINDOW: u64 = {};", spec.macs()).unwrap();
    writeln!(code, "/// Windows per data frame (the model card's: its bounded stream's, if it has one).").unwrap();
    writeln!(code, "pub const WINDOWS_PER_FRAME: u8 = {windows_per_frame};").unwrap();
    writeln!(code, "/// The model is bounded: its stream carries samples within a bound (the firmware links").unwrap();
    writeln!(code, "/// the bounded path only then).").unwrap();
    writeln!(code, "pub const BOUNDED: bool = {};", spec.residual.is_some()).unwrap();
    writeln!(code, "/// The model's stream carries codes: the firmware links the network and the codes' coder")
        .unwrap();
    writeln!(code, "/// only then (a bounded model may send its samples alone).").unwrap();
    writeln!(code, "pub const CODES: bool = {};", stream_layout(&encoder, 1).codes_per_window > 0).unwrap();
    writeln!(code, "/// Sampling rate real boards pace their sensor at (FUNNEL_SAMPLE_RATE_HZ).").unwrap();
    writeln!(code, "pub const SAMPLE_RATE_HZ: u32 = {sample_rate};").unwrap();
    std::fs::write(out.join("model.rs"), code).unwrap();

    // Memory layout of the board being built (bins only; the lib is host-testable).
    let boards =
        [("BOARD_QEMU", "mps2-an386.x"), ("BOARD_MICROBIT", "microbit.x"), ("BOARD_NUCLEO_F411RE", "nucleo-f411re.x")];
    let chosen: Vec<_> = boards.iter().filter(|(f, _)| env::var_os(format!("CARGO_FEATURE_{f}")).is_some()).collect();
    match chosen.as_slice() {
        [] => {}
        [(_, file)] => {
            let src = manifest.join("memory").join(file);
            println!("cargo:rerun-if-changed={}", src.display());
            std::fs::copy(&src, out.join("memory.x")).unwrap();
            println!("cargo:rustc-link-search={}", out.display());
            println!("cargo:rustc-link-arg-bins=--nmagic");
            println!("cargo:rustc-link-arg-bins=-Tlink.x");
        }
        _ => fail("enable exactly one board-* feature at a time (each board has its own memory layout)"),
    }
}

/// `windows_per_frame` of the model card at `path`, its bounded stream's when it has one (1 for
/// a card that predates the field; a model directory without a card is sent one window per
/// frame, with a warning).
fn windows_per_frame(path: &Path) -> u8 {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            println!("cargo:warning=no model card {} ({e}): one window per frame", path.display());
            return 1;
        }
    };
    let card: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| fail(&format!("the model card {} is not JSON: {e}", path.display())));
    // A bounded model's stream has its own frames (model.json `bounded.windows_per_frame`).
    let bounded = card.get("bounded").and_then(|b| b.get("windows_per_frame"));
    match bounded.or(card.get("windows_per_frame")) {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| fail(&format!("{}: windows_per_frame {v} is not 1 to 255", path.display()))),
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap_or_else(|| fail("the model path must be valid UTF-8")).to_owned()
}

fn fail(msg: &str) -> ! {
    // Cargo shows a failed build script's stderr in full.
    eprintln!("error: funnel-firmware: {msg}");
    std::process::exit(1);
}
