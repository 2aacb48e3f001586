//! The device simulator: a recording replayed as device counts through the `shared` crate's
//! int8 encoder and frame format — the same code the firmware runs, so the bytes are the bytes
//! the device would send.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use funnel_shared::encoder::QuantizedEncoder;
use funnel_shared::stream::{to_counts, StreamEncoder};
use funnel_shared::wire::{encode_frame, FLAG_INPUT_SATURATED, MAX_ENCODED_LEN};

use crate::card::ModelCard;
use crate::data::Recording;

/// The int8 encoder's file in a model directory.
pub const BLOB_FILE: &str = "encoder.fq8";

/// Reads and validates `encoder.fq8` of a model directory.
pub fn load_blob(model_dir: &Path) -> Result<Vec<u8>> {
    let path = model_dir.join(BLOB_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!("cannot read {} (run `funnel quantize --model {}` first)", path.display(), model_dir.display())
    })?;
    QuantizedEncoder::from_blob(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(bytes)
}

/// The recording as device counts, `[T][C]` interleaved as a sensor delivers them, converted with
/// the blob's `counts_per_unit`.
pub fn recording_counts(model_dir: &Path, data: &Path, columns: &[String]) -> Result<Vec<i16>> {
    counts_for_blob(model_dir, &load_blob(model_dir)?, data, columns)
}

/// [`recording_counts`] with the model directory's blob already read.
fn counts_for_blob(model_dir: &Path, blob: &[u8], data: &Path, columns: &[String]) -> Result<Vec<i16>> {
    ModelCard::load(model_dir)?.check_columns(model_dir, columns)?;
    let encoder = QuantizedEncoder::from_blob(blob).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rec = Recording::from_csv(data, columns)?;
    Ok(interleave_counts(&rec, encoder.spec().counts_per_unit))
}

fn interleave_counts(rec: &Recording, counts_per_unit: f32) -> Vec<i16> {
    (0..rec.rows()).flat_map(|t| rec.samples.iter().map(move |ch| to_counts(ch[t], counts_per_unit))).collect()
}

/// Frames for a stream of counts, and what happened while encoding it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedStream {
    /// The exact byte stream on the link (COBS frames, each ending in 0x00).
    pub bytes: Vec<u8>,
    pub frames: usize,
    /// Windows in which some sample was outside the calibrated input range (clamped).
    pub saturated_windows: usize,
    /// Samples (per channel) after the last full window, not sent.
    pub dropped_samples: usize,
}

/// Encodes `counts` (`[T][C]`) window by window as the firmware does, on stream 0.
pub fn encode_counts(blob: &[u8], counts: &[i16]) -> Result<EncodedStream> {
    let encoder = QuantizedEncoder::from_blob(blob).map_err(|e| anyhow::anyhow!("{e}"))?;
    let step = encoder.window() * encoder.channels();
    let mut scratch = vec![0i8; encoder.scratch_len()];
    let mut stream = StreamEncoder::new(encoder, 0);
    let mut out = EncodedStream::default();
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut windows = counts.chunks_exact(step);
    for window in &mut windows {
        let frame = stream.encode_window(window, &mut scratch).map_err(|e| anyhow::anyhow!("{e}"))?;
        out.saturated_windows += usize::from(frame.flags & FLAG_INPUT_SATURATED != 0);
        out.bytes.extend_from_slice(encode_frame(&frame, &mut buf).map_err(|e| anyhow::anyhow!("{e:?}"))?);
        out.frames += 1;
    }
    out.dropped_samples = windows.remainder().len() / stream.encoder().channels();
    Ok(out)
}

#[derive(clap::Args, Clone, Debug)]
pub struct EncodeArgs {
    /// Model directory with `encoder.fq8` and `model.json`.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long = "column", required = true)]
    pub columns: Vec<String>,
    /// Where to write the frame byte stream.
    #[arg(long)]
    pub out: PathBuf,
}

/// `funnel encode`: writes what the device would send for the recording.
pub fn encode_command(args: &EncodeArgs) -> Result<EncodedStream> {
    let blob = load_blob(&args.model)?;
    let counts = counts_for_blob(&args.model, &blob, &args.data, &args.columns)?;
    let encoded = encode_counts(&blob, &counts)?;
    std::fs::write(&args.out, &encoded.bytes).with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_interleaved_by_time_step() {
        let rec = Recording::from_channels(
            "mem",
            vec!["a".into(), "b".into()],
            vec![vec![0.5, 1.0, 1.5], vec![-0.5, -1.0, -1.5]],
        );
        assert_eq!(interleave_counts(&rec, 4.0), vec![2, -2, 4, -4, 6, -6]);
    }
}
