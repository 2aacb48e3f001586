//! The error-bounded mode of a quantized model (`--max-error`): its blob gains a residual coder
//! fitted to the training part, and its card the bounded stream's held-out rate and error,
//! measured by sending the held-out part through the device simulator and the receiver.

use anyhow::{bail, ensure, Context, Result};
use funnel_artifacts::card::{BoundedCard, BoundedTrial};
use funnel_artifacts::{Blob, Dataset, ModelCard, ModelDir};
use funnel_shared::residual::MAX_BOUND;
use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::MAX_BOUNDED_SAMPLES;

use crate::codec::simulate;
use crate::eval::bounded_metrics;
use crate::quantize::{bounded_blob, with_decoder};
use funnel_artifacts::net::NetLayer;
use funnel_shared::wire::MAX_FRAME_CODES;

/// The bound in device counts that keeps every sample of `samples` (the recording, in its
/// units) within `max_error` units once converted to counts at `counts_per_unit`: a recording on
/// the counts' grid loses nothing to the conversion; another may lose up to half a count.
pub fn bound_in_counts(max_error: f64, counts_per_unit: f32, samples: &[f32]) -> Result<u16> {
    ensure!(max_error.is_finite() && max_error >= 0.0, "--max-error must be 0 or more (got {max_error})");
    let cpu = f64::from(counts_per_unit);
    let on_grid = samples.iter().all(|&x| {
        let scaled = f64::from(x) * cpu;
        (scaled - scaled.round()).abs() < 1e-3
    });
    let rounding = if on_grid { 0.0 } else { 0.5 };
    let counts = (max_error * cpu - rounding + 1e-6).floor();
    if counts < 0.0 {
        bail!(
            "--max-error {max_error} is below the device's own rounding: the recording is not on the grid of \
             {counts_per_unit} counts per unit, so converting it to counts alone moves samples by up to half a count \
             ({}); give a bound of at least that, or --counts-per-unit to the recording's own scale",
            0.5 / cpu
        );
    }
    ensure!(
        counts <= f64::from(MAX_BOUND),
        "--max-error {max_error} is {counts} counts at {counts_per_unit} counts per unit; the device bounds at most \
         {MAX_BOUND} counts"
    );
    Ok(counts as u16)
}

/// Windows per frame of a bounded stream of `card`'s model: as many as fill
/// [`MAX_BOUNDED_SAMPLES`] samples over all channels. A frame's first samples are coded without a
/// history, and every frame pays its length and check: the longest frames cost the fewest bits
/// (a frame of 1,024 samples is 2.8 s of the ECG; `funnel encode --windows-per-frame` sends
/// shorter ones).
fn bounded_windows_per_frame(card: &ModelCard) -> Result<u8> {
    check_bounded_window(card.window(), card.columns.len())?;
    Ok((MAX_BOUNDED_SAMPLES / (card.window() * card.columns.len())).min(usize::from(u8::MAX)) as u8)
}

/// Errs unless a window of `window` samples of `channels` channels fits a bounded frame
/// (`funnel train --max-error` checks it before training).
pub fn check_bounded_window(window: usize, channels: usize) -> Result<()> {
    let per_window = window * channels;
    ensure!(
        per_window <= MAX_BOUNDED_SAMPLES,
        "a bounded stream's frame holds at most {MAX_BOUNDED_SAMPLES} samples over all channels, and one window of \
         {window} samples of {channels} channel(s) has {per_window}: train with a shorter --window"
    );
    Ok(())
}

/// What a bounded model is fitted to: the bound, in the recording's units and in counts, and
/// the recording as device counts with its training part.
pub struct BoundTarget {
    max_error: f64,
    max_error_counts: u16,
    windows_per_frame: u8,
    channels: usize,
    /// `[T][C]`, the whole recording.
    counts: Vec<i16>,
    /// Rows of the training part.
    train_rows: usize,
}

/// One way to send a bounded stream, fitted to the training part: the blob, how its frames are
/// cut, and the bytes of the training part's stream.
pub struct BoundedCandidate {
    pub blob: Blob,
    pub config: StreamConfig,
    pub training_bytes: usize,
}

impl BoundTarget {
    /// The bound `max_error` (recording units) of a model (its card `card`, its blob's
    /// `counts_per_unit`) on `dataset`.
    pub fn new(card: &ModelCard, dataset: &Dataset, counts_per_unit: f32, max_error: f64) -> Result<BoundTarget> {
        let recording = dataset.recording();
        let all: Vec<f32> = (0..recording.channels()).flat_map(|c| recording.samples[c].iter().copied()).collect();
        Ok(BoundTarget {
            max_error,
            max_error_counts: bound_in_counts(max_error, counts_per_unit, &all)?,
            windows_per_frame: bounded_windows_per_frame(card)?,
            channels: recording.channels(),
            counts: recording.device_counts(counts_per_unit),
            train_rows: dataset.held_out_rows().start,
        })
    }

    fn train_counts(&self) -> &[i16] {
        &self.counts[..self.train_rows * self.channels]
    }

    /// The bits per sample (per channel) of `candidate`'s stream of the training part.
    pub fn training_rate(&self, candidate: &BoundedCandidate) -> f64 {
        8.0 * candidate.training_bytes as f64 / self.train_rows as f64
    }

    fn candidate(&self, blob: Blob, config: StreamConfig) -> Result<BoundedCandidate> {
        let training_bytes = simulate(&blob, self.train_counts(), config)?.bytes.len();
        Ok(BoundedCandidate { blob, config, training_bytes })
    }

    /// `blob` made bounded with a residual coder predicting the samples alone.
    pub fn alone(&self, blob: &Blob) -> Result<BoundedCandidate> {
        let config = StreamConfig { windows_per_frame: self.windows_per_frame, ..StreamConfig::DEFAULT };
        self.candidate(bounded_blob(blob, self.train_counts(), self.max_error_counts, self.windows_per_frame)?, config)
    }

    /// `blob` made bounded with the latent codes in its frames, the residuals taken against the
    /// integer rebuild of `decoder` (the float decoder tuned to the blob's codes).
    pub fn with_codes(&self, blob: &Blob, decoder: &[NetLayer], dataset: &Dataset) -> Result<BoundedCandidate> {
        let decoding = with_decoder(blob, decoder, dataset.normalization(), dataset.train_norm())?;
        let windows = self.windows_per_frame.min((MAX_FRAME_CODES / blob.latent().max(1)) as u8);
        let bounded = bounded_blob(&decoding, self.train_counts(), self.max_error_counts, windows)?;
        let config = StreamConfig { windows_per_frame: windows, ..StreamConfig::DEFAULT };
        self.candidate(bounded, config)
    }
}

/// Makes the quantized model in `dir` (its card `card`, its data `dataset`) bounded with
/// `chosen`, fitted for `target` (see [`BoundTarget`]: the samples alone, or the latent codes
/// and residuals from their rebuild): measures its stream of the held-out part, writes the blob
/// and the card with its [`BoundedCard`] (`trials`: the candidates compared). The blob's model
/// id changes, so the card's firmware measurements go.
pub fn commit_bounded(
    dir: &ModelDir,
    card: &mut ModelCard,
    dataset: &Dataset,
    target: &BoundTarget,
    chosen: BoundedCandidate,
    trials: Vec<BoundedTrial>,
) -> Result<(Blob, BoundedCard)> {
    let BoundedCandidate { blob: bounded, config, .. } = chosen;
    let measured = bounded_metrics(&bounded, dataset, config)?;
    let spec = bounded.residual().context("a bounded blob has a residual coder")?;
    let bounded_card = BoundedCard {
        max_error: target.max_error,
        max_error_counts: target.max_error_counts,
        windows_per_frame: config.windows_per_frame,
        prediction_order: spec.prediction.len(),
        adaptive_order: spec.adaptive.order,
        adaptive_shift: spec.adaptive.shift,
        block: spec.block,
        classes: spec.classes(),
        latent_codes: bounded.encoder().decoder().is_some(),
        bits_per_sample: measured.bits_per_sample,
        max_abs_error: measured.max_abs_error,
        max_abs_error_counts: measured.max_abs_error_counts,
        trials,
    };
    if let Some(q) = card.quantization.as_mut() {
        q.model_id = bounded.model_id().to_string();
        q.blob_bytes = bounded.len();
    }
    card.firmware.clear();
    card.bounded = Some(bounded_card.clone());
    dir.save_with_card(&[(ModelDir::BLOB, bounded.bytes())], card)?;
    Ok((bounded, bounded_card))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_in_counts_keeps_the_recording_within_the_bound() {
        // On the grid (MIT-BIH's 200 counts/mV): 0.02 mV is 4 counts.
        assert_eq!(bound_in_counts(0.02, 200.0, &[0.005, -1.25]).unwrap(), 4);
        assert_eq!(bound_in_counts(0.0, 200.0, &[0.005]).unwrap(), 0);
        // Off the grid, the conversion's half count comes off the bound.
        assert_eq!(bound_in_counts(0.02, 200.0, &[0.0033]).unwrap(), 3);
        let too_tight = bound_in_counts(0.0, 200.0, &[0.0033]).unwrap_err().to_string();
        assert!(too_tight.contains("below the device's own rounding"), "{too_tight}");
        assert!(bound_in_counts(-1.0, 200.0, &[]).is_err());
        assert!(bound_in_counts(f64::NAN, 200.0, &[]).is_err());
        assert!(bound_in_counts(1e6, 200.0, &[]).unwrap_err().to_string().contains("at most 32767"));
    }
}
