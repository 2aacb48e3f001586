//! The default shape search (`funnel train` without `--window`, `--latent` or `--arch`): a few
//! candidate shapes within the device budget, each trained for the target rate on the first
//! part of the recording's training part and measured through the device path (int8 encoder,
//! entropy-coded frames, tuned decoder) on the rest of it; the one with the lowest PRDN at the
//! target rate is then trained on the whole training part. The held-out part is never seen.

use anyhow::{bail, ensure, Context, Result};
use funnel_artifacts::card::ShapeCandidate;
use funnel_artifacts::data::train_window_count;
use funnel_artifacts::spec::Arch;
use funnel_artifacts::{Dataset, ModelDir, ModelSpec, Recording};
use funnel_shared::stream::MAX_WINDOW_OUTPUT;
use funnel_shared::wire::{MAX_CODES, MAX_FRAME_CODES};
use std::time::Instant;

use super::bounded::check_bounded_window;
use super::training::{capped_hop, train_point, CodeRate, Shape, TrainRequest};

/// What a searched shape may cost the device (`--max-flash`, `--max-ram`, `--max-macs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceBudget {
    /// Bytes of the model blob in flash (weights, quantization parameters, code tables).
    pub max_flash: usize,
    /// Bytes of the encoder's buffers in RAM (see [`ShapeCandidate::ram_bytes`]).
    pub max_ram: usize,
    /// Multiply–accumulates of the int8 encoder per window.
    pub max_macs: u64,
}

impl Default for DeviceBudget {
    /// Half of a 64 KiB part's flash for the model (the firmware's code takes about 30 KB),
    /// 8 KiB of RAM, and 64 Ki MACs per window (about 0.1 s of a 64 MHz Cortex-M4 per window).
    fn default() -> DeviceBudget {
        DeviceBudget { max_flash: 32 * 1024, max_ram: 8 * 1024, max_macs: 64 * 1024 }
    }
}

/// Most samples (per channel) a searched shape's frames carry by default: more windows per
/// frame share the framing, and delay the first sample of a frame by this many samples.
pub const MAX_FRAME_SAMPLES: usize = 1024;
/// Samples per window the search tries.
pub const SEARCH_WINDOWS: [usize; 3] = [32, 64, 128];
/// Codes per window the search tries, as fractions of the window's values.
const CODES_PER_VALUE: [(usize, usize); 3] = [(1, 4), (1, 2), (1, 1)];
/// Fitted windows start every window / this many samples (training on shifted copies).
const HOPS_PER_WINDOW: usize = 8;

/// Windows per frame of a searched shape: as many as fill [`MAX_FRAME_SAMPLES`] and fit a frame.
pub fn default_windows_per_frame(window: usize, latent: usize) -> u8 {
    let most = (MAX_FRAME_SAMPLES / window).min(MAX_FRAME_CODES / latent.max(1)).clamp(1, usize::from(u8::MAX));
    most as u8
}

/// The shapes to try for `rate`: the flags given fix their part of the shape, the rest is
/// enumerated. Errors name why no shape is possible.
pub(super) fn candidates(request: &TrainRequest, channels: usize, rate: CodeRate) -> Result<Vec<Shape>> {
    let arch = request.arch.unwrap_or(Arch::Transform);
    let windows = request.window.map_or(SEARCH_WINDOWS.to_vec(), |w| vec![w]);
    let mut shapes = Vec::new();
    let mut refused = Vec::new();
    for window in windows {
        if request.max_error.is_some() {
            if let Err(e) = check_bounded_window(window, channels) {
                refused.push(format!("window {window}: {e:#}"));
                continue;
            }
        }
        let values = channels * window;
        let mut latents: Vec<usize> = match request.latent {
            Some(latent) => vec![latent],
            None => {
                CODES_PER_VALUE.iter().map(|&(a, b)| values * a / b).filter(|&k| (1..=MAX_CODES).contains(&k)).collect()
            }
        };
        latents.dedup();
        for latent in latents {
            let shape = ModelSpec::new(arch, channels, window, latent)
                .map_err(anyhow::Error::from)
                .and_then(|spec| {
                    let per_frame = request.windows_per_frame.unwrap_or(default_windows_per_frame(window, latent));
                    let hop = request.train_hop.unwrap_or((window / HOPS_PER_WINDOW).max(1));
                    Shape::checked(spec, per_frame, Some(hop))
                })
                .and_then(|shape| shape.for_rate(rate));
            match shape {
                Ok(shape) if (shape.spec.encoder_weights() as u64) <= request.budget.max_macs => shapes.push(shape),
                Ok(shape) => refused.push(format!(
                    "window {window}, {latent} codes: {} MACs per window, over --max-macs {}",
                    shape.spec.encoder_weights(),
                    request.budget.max_macs
                )),
                Err(e) => refused.push(format!("window {window}, {latent} codes: {e:#}")),
            }
        }
    }
    if shapes.is_empty() {
        bail!("no {arch} shape to search fits: {}", refused.join("; "));
    }
    Ok(shapes)
}

/// Trains and measures every candidate on `recording`'s training part (its first part fitted,
/// the rest measured) and returns the best within the budget, with what every candidate did.
pub(super) fn search(
    request: &TrainRequest,
    recording: &Recording,
    rate: CodeRate,
    candidates: Vec<Shape>,
) -> Result<(Shape, Vec<ShapeCandidate>)> {
    let CodeRate::BitsPerSample(target) = rate else {
        bail!("internal: a shape is searched for a target rate");
    };
    // Rows every candidate's split puts in the training part.
    let rows = candidates
        .iter()
        .map(|s| train_window_count(recording.rows() / s.spec.window) * s.spec.window)
        .min()
        .context("no candidate shape")?;
    let training_part = recording.head(rows);
    let quiet = TrainRequest { progress: false, ..request.clone() };
    let bar = match request.progress {
        true => indicatif::ProgressBar::new(candidates.len() as u64),
        false => indicatif::ProgressBar::hidden(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("searching shapes [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let mut tried = Vec::with_capacity(candidates.len());
    for shape in &candidates {
        let spec = &shape.spec;
        bar.set_message(format!("window {}, {} codes", spec.window, spec.latent));
        let started = Instant::now();
        let dataset = Dataset::new(training_part.clone(), spec.window, None)
            .with_context(|| format!("the training part is too short for a window of {}", spec.window))?;
        let name = ModelDir::new(request.out.join(format!("search-{}-{}", spec.window, spec.latent)));
        // A long recording is fitted at a longer hop during the search (the chosen shape is
        // trained at its own hop afterwards), which keeps the search of a million samples
        // within a few minutes.
        let hop = capped_hop(&dataset, spec.window, shape.hop);
        let point = train_point(&quiet, &Shape { hop, ..shape.clone() }, &dataset, rate, &name, false)?;
        let (blob, int8) = (&point.quantization.blob, &point.quantization.int8);
        // A window of i16 samples, the kernels' scratch, a frame of i16 codes and the output of
        // one window (the frame's payload is written there).
        let ram_bytes = 2 * spec.input_len()
            + blob.scratch_bytes()
            + 2 * usize::from(shape.windows_per_frame) * spec.latent
            + MAX_WINDOW_OUTPUT;
        let budget = request.budget;
        let candidate = ShapeCandidate {
            arch: spec.arch,
            window: spec.window,
            latent: spec.latent,
            windows_per_frame: shape.windows_per_frame,
            bits_per_sample: int8.bits_per_sample,
            prdn: int8.prdn,
            prdn_at_target: int8.prdn * (int8.bits_per_sample - target).exp2(),
            blob_bytes: blob.len(),
            macs_per_window: blob.macs_per_window(),
            ram_bytes,
            over_budget: blob.len() > budget.max_flash
                || ram_bytes > budget.max_ram
                || blob.macs_per_window() > budget.max_macs,
            chosen: false,
            seconds: started.elapsed().as_secs_f64(),
        };
        let line = format!(
            "  window {:>4}, {:>2} codes, {:>2} windows/frame: {:.3} bits/sample, PRDN {:.2} % ({:.2} % at {target}){}",
            candidate.window,
            candidate.latent,
            candidate.windows_per_frame,
            candidate.bits_per_sample,
            candidate.prdn,
            candidate.prdn_at_target,
            if candidate.over_budget { ", over the budget" } else { "" }
        );
        if request.progress {
            bar.suspend(|| eprintln!("{line}"));
        }
        bar.inc(1);
        tried.push(candidate);
    }
    bar.finish_and_clear();
    let best = tried
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.over_budget && c.prdn_at_target.is_finite())
        .min_by(|(_, a), (_, b)| a.prdn_at_target.total_cmp(&b.prdn_at_target))
        .map(|(i, _)| i)
        .or_else(|| {
            // A bounded model's residual coder carries what the model misses, so on a slice that
            // does not vary (PRDN undefined) any shape codes it: the one that sends the fewest bits.
            request.max_error.and(
                tried
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.over_budget && c.bits_per_sample.is_finite())
                    .min_by(|(_, a), (_, b)| a.bits_per_sample.total_cmp(&b.bits_per_sample))
                    .map(|(i, _)| i),
            )
        });
    let Some(best) = best else {
        // PRDN is the error relative to the signal's variation: undefined where it has none.
        ensure!(
            tried.iter().all(|c| c.over_budget),
            "the searched shapes' PRDN is not a number: {} does not vary in the part of the training part the \
             search measures shapes on (its last fifth), so there is nothing there for a lossy model to learn or \
             be measured on",
            recording.columns.join(", ")
        );
        bail!(
            "every searched shape is over the device budget (--max-flash {}, --max-ram {}, --max-macs {}): {}",
            request.budget.max_flash,
            request.budget.max_ram,
            request.budget.max_macs,
            tried
                .iter()
                .map(|c| format!(
                    "window {} × {} codes: {} B flash, {} B RAM, {} MACs",
                    c.window, c.latent, c.blob_bytes, c.ram_bytes, c.macs_per_window
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    };
    tried[best].chosen = true;
    Ok((candidates[best].clone(), tried))
}
