//! `model.json`: everything needed to reproduce, evaluate and deploy a trained model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::{Normalization, SplitInfo};
use crate::metrics::{null_as_nan, Method, Metrics};
use crate::spec::{Arch, ModelSpec};
use crate::training::{kept_epoch, EpochRecord, InitReport, TrainConfig};

/// A file of the model directory as the card was saved with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// SHA-256 of the file, hex: ties the file to this card (and so to its model id). Cards
    /// written before it was recorded have none, and their files are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The data's columns are not the model's channels.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the model was trained on columns {model:?} ({} channel(s)) but --column gives {given:?} ({} channel(s))",
    model.len(),
    given.len()
)]
pub struct ColumnMismatch {
    pub model: Vec<String>,
    pub given: Vec<String>,
}

/// Filled in by the quantization step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizationCard {
    pub blob_bytes: usize,
    pub macs_per_window: u64,
    pub scratch_bytes: usize,
    pub model_id: String,
    /// Held-out PRDN of the float network the int8 path is measured against: the autoencoder,
    /// or for a network trained for a rate the autoencoder with its codes rounded as the
    /// device rounds them. NaN (`null`) for a signal that does not vary, as all three are.
    #[serde(deserialize_with = "null_as_nan")]
    pub float_prdn: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub int8_prdn: f64,
    /// `(int8_prdn − float_prdn) / float_prdn`.
    #[serde(deserialize_with = "null_as_nan")]
    pub relative_prdn_loss: f64,
    /// The codes' quantization step over the finest (the rate knob; 1 for older cards).
    #[serde(default = "finest_code_step")]
    pub code_step: f64,
    /// The codes' dead zone, in steps (0 for older cards): see `funnel::quantize`.
    #[serde(default)]
    pub dead_zone: f64,
    /// What a code's bit is worth in squared steps, which gave each code a dead zone of its own
    /// in the blob (0: none, and for older cards): see `funnel::quantize`.
    #[serde(default)]
    pub rate_weight: f64,
    /// How many windows back in its frame each latent is predicted from: empty when none is
    /// (and for older cards), else one lag per latent, 0 for a latent coded alone (see
    /// `funnel_shared::entropy`).
    #[serde(default)]
    pub prediction_lags: Vec<u8>,
    /// How many window classes the code tables come in (1 for older cards: see
    /// `funnel_shared::entropy`).
    #[serde(default = "one_class")]
    pub window_classes: usize,
}

fn one_class() -> usize {
    1
}

/// The error-bounded mode (`funnel train`/`quantize --max-error`): the blob's streams carry the
/// samples, each within the bound, instead of latent codes; measured on the held-out part with
/// the stream as the device sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundedCard {
    /// The bound asked for, in the recording's units.
    pub max_error: f64,
    /// The blob's bound in device counts: the largest whole number of counts that, with the
    /// conversion of the recording to counts, keeps every sample within `max_error`.
    pub max_error_counts: u16,
    /// Windows per data frame of the bounded stream (at most 1024 samples over all channels).
    pub windows_per_frame: u8,
    /// The residual coder fitted to the training part: prediction order, adaptive stage
    /// (order and step shift; order 0: none), samples per block and block classes.
    pub prediction_order: usize,
    pub adaptive_order: u8,
    pub adaptive_shift: u8,
    /// Cards before blob version 11 have none: their blocks held 32.
    #[serde(default = "block_before_version_11")]
    pub block: u8,
    pub classes: usize,
    /// The frames carry the latent codes, and the residuals are taken against the integer
    /// decoder's rebuild of them (else against the prediction from the samples alone).
    #[serde(default)]
    pub latent_codes: bool,
    /// Held out: bits per sample (per channel) of the stream, headers, lengths and checks
    /// included, and the largest error measured against the recording (its units) and against
    /// the device's counts.
    pub bits_per_sample: f64,
    pub max_abs_error: f64,
    pub max_abs_error_counts: u16,
    /// The ways of sending the bounded stream that were fitted to the training part and
    /// compared by the bits of its stream; the fewest was kept.
    #[serde(default)]
    pub trials: Vec<BoundedTrial>,
}

/// One way of sending a bounded stream, fitted to the training part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundedTrial {
    /// The latent codes' own rate on the training part (bits per sample, framing included) when
    /// the frames carry them; `None`: the samples alone.
    pub latent_bits_per_sample: Option<f64>,
    /// Bits per sample of the training part's bounded stream, framing included.
    pub training_bits_per_sample: f64,
}

fn block_before_version_11() -> u8 {
    32
}

fn finest_code_step() -> f64 {
    1.0
}

/// The firmware image with this model, measured (`cargo xtask bench --record`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirmwareBenchmark {
    /// Board image, e.g. `qemu` (mps2-an386), `qemu-m0` (micro:bit), `nucleo-f411re`.
    pub image: String,
    pub core: String,
    pub kernels: String,
    /// text + rodata + data of the ELF (the model blob included).
    pub flash_bytes: u64,
    /// data + bss.
    pub static_ram_bytes: u64,
    /// Deepest stack use seen by stack painting, when the image ran under QEMU.
    pub peak_stack_bytes: Option<u64>,
    /// Guest instructions per `encode` of one window under QEMU (mean), when it ran there.
    pub encode_instructions_per_window: Option<f64>,
    /// The signal's sample rate given to the benchmark, and the encoding instructions one
    /// second of it costs at that rate.
    #[serde(default)]
    pub sample_rate_hz: Option<f64>,
    #[serde(default)]
    pub encode_instructions_per_second: Option<f64>,
    /// The command that measured this row.
    pub command: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub funnel_version: String,
    /// The recording trained on, relative to the model directory (see
    /// [`crate::ModelDir::data_path`]).
    pub data_file: String,
    pub columns: Vec<String>,
    /// Architecture, window, latent size and layer sizes; rebuilds the network from
    /// `model.safetensors`.
    pub spec: ModelSpec,
    /// Variant, seed, epoch limit and the rest of the schedule.
    pub train_config: TrainConfig,
    pub epochs_run: usize,
    /// 1-based epoch whose weights were kept (lowest validation loss); 0 when no epoch beat the
    /// starting weights.
    pub best_epoch: usize,
    pub seconds_per_epoch: f64,
    pub history: Vec<EpochRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitReport>,
    pub split: SplitInfo,
    pub normalization: Normalization,
    /// Device samples are `i16 round(x * counts_per_unit)`, `x` in the data file's units.
    pub counts_per_unit: f32,
    /// The sensor's resolution in bits: `sensor_compression_ratio` of the metrics is against it.
    #[serde(default = "sixteen_bits")]
    pub sensor_bits: u32,
    /// How the model's stream is sent: windows per data frame (`funnel encode`'s default). The
    /// held-out rates are measured with it, and a target rate was trained for it.
    #[serde(default = "one_window")]
    pub windows_per_frame: u8,
    /// Held-out metrics in original units, one section per method.
    pub held_out: BTreeMap<Method, Metrics>,
    /// Files of the model directory (except `model.json`) with sizes.
    pub files: Vec<FileEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantizationCard>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firmware: Vec<FirmwareBenchmark>,
    /// How the receiver smooths the steps at window boundaries (chosen at quantization on the
    /// validation slice; `None`: not at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seam_filter: Option<SeamFilter>,
    /// The shapes `funnel train` tried when none was given, the chosen one marked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape_search: Vec<ShapeCandidate>,
    /// The error-bounded mode, when the blob has it (its streams then carry samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded: Option<BoundedCard>,
}

/// The receiver's seam filter: at the boundary between two decoded windows that follow each
/// other, the step in excess of the local slope (the mean of the differences on each side) is
/// taken out, `strength` of it, spread over `samples` samples on each side with weights falling
/// linearly away from the boundary (half on each side). Costs no bits: the host does it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeamFilter {
    pub samples: usize,
    pub strength: f32,
}

impl SeamFilter {
    /// Samples on each side of a boundary the slope estimate reads.
    pub const SLOPE_SAMPLES: usize = 2;

    /// Samples at the end of each window the receiver holds back for the next boundary.
    pub fn tail(&self) -> usize {
        self.samples.max(Self::SLOPE_SAMPLES)
    }

    /// Whether the filter can work on windows of `window` samples: at least one sample moved,
    /// at most its full step taken out, and the held tail and the next window's head apart.
    pub fn fits(&self, window: usize) -> bool {
        self.samples >= 1 && window > 2 * self.tail() && self.strength > 0.0 && self.strength <= 1.0
    }
}

/// One shape the default search tried: trained for the target rate on the first part of the
/// recording's training part and measured through the device path on the rest of it (the
/// held-out part is never seen).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeCandidate {
    pub arch: Arch,
    pub window: usize,
    pub latent: usize,
    pub windows_per_frame: u8,
    /// The device path on the validation slice.
    pub bits_per_sample: f64,
    /// NaN (`null`) on a slice that does not vary, as is `prdn_at_target`.
    #[serde(deserialize_with = "null_as_nan")]
    pub prdn: f64,
    /// PRDN brought to the target rate (PRDN ∝ 2^−R, the 6 dB-per-bit rule): what the search
    /// ranks by.
    #[serde(deserialize_with = "null_as_nan")]
    pub prdn_at_target: f64,
    pub blob_bytes: usize,
    pub macs_per_window: u64,
    /// The encoder's buffers on the device: a window of samples, the kernels' scratch, a frame
    /// of codes, its payload and the output of one window.
    pub ram_bytes: usize,
    /// Over the device budget: not eligible.
    pub over_budget: bool,
    pub chosen: bool,
    pub seconds: f64,
}

fn sixteen_bits() -> u32 {
    16
}

fn one_window() -> u8 {
    1
}

impl ModelCard {
    /// Windows per data frame of the model's stream: the bounded stream's when the model is
    /// bounded, else the latent codes' (`windows_per_frame`).
    pub fn stream_windows_per_frame(&self) -> u8 {
        self.bounded.as_ref().map_or(self.windows_per_frame, |b| b.windows_per_frame)
    }

    /// Samples per channel in a window.
    pub fn window(&self) -> usize {
        self.spec.window
    }

    /// Codes per window.
    pub fn latent(&self) -> usize {
        self.spec.latent
    }

    /// The card agrees with itself: a valid shape ([`ModelSpec::check`]), one column and one
    /// normalization entry per channel, positive finite scales. Returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        self.spec.check().map_err(|e| format!("the model's shape is invalid: {e}"))?;
        let channels = self.spec.channels;
        let n = &self.normalization;
        if self.columns.len() != channels || n.mean.len() != channels || n.std.len() != channels {
            return Err(format!(
                "{} column(s) and {} / {} normalization entries for a model of {channels} channel(s)",
                self.columns.len(),
                n.mean.len(),
                n.std.len()
            ));
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !n.std.iter().all(|&s| positive(s)) || !n.mean.iter().all(|m| m.is_finite()) {
            return Err(format!("normalization {n:?} has a non-finite mean or a std that is not positive"));
        }
        if !positive(self.counts_per_unit) {
            return Err(format!("counts_per_unit {} is not a positive number", self.counts_per_unit));
        }
        if self.windows_per_frame == 0 {
            return Err("windows_per_frame is 0 (a frame carries at least one window)".into());
        }
        if let Some(f) = self.seam_filter {
            if !f.fits(self.spec.window) {
                return Err(format!(
                    "seam_filter {f:?}: samples must be at least 1 and fewer than half the window ({}), strength in \
                     (0, 1]",
                    self.spec.window
                ));
            }
        }
        Ok(())
    }

    /// Refuses data columns other than the ones the model was trained on.
    pub fn check_columns(&self, columns: &[String]) -> Result<(), ColumnMismatch> {
        if self.columns == columns {
            return Ok(());
        }
        Err(ColumnMismatch { model: self.columns.clone(), given: columns.to_vec() })
    }

    /// The card as Markdown: what the model is, how it was trained, how good it is, what it costs
    /// on the device.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let id = self.quantization.as_ref().map_or("not quantized yet".to_string(), |q| format!("`{}`", q.model_id));
        let _ = writeln!(s, "# Funnel model card\n");
        let _ = writeln!(s, "Written by `funnel` {} from `model.json`; do not edit by hand.\n", self.funnel_version);
        let _ = writeln!(
            s,
            "- **Model**: {} autoencoder ({} variant), {} channel(s) × {} samples → {} codes; hidden {:?}; model id {id}",
            self.spec.arch,
            self.train_config.variant,
            self.columns.len(),
            self.spec.window,
            self.spec.latent,
            self.spec.hidden
        );
        let _ = writeln!(
            s,
            "- **Data**: `{}`, column(s) {}; {} rows → {} windows: {} for training ({} of them for validation), the last {} held out",
            self.data_file,
            self.columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
            self.split.rows,
            self.split.windows,
            self.split.train_windows,
            self.split.validation_windows,
            self.split.held_out_windows
        );
        let _ = writeln!(
            s,
            "- **Training**: seed {}, {} of at most {} epochs (best {}), {:.3} s/epoch; batch {}, learning rate {}, training hop {}",
            self.train_config.seed,
            self.epochs_run,
            self.train_config.epochs,
            kept_epoch(self.best_epoch),
            self.seconds_per_epoch,
            self.train_config.batch_size,
            self.train_config.learning_rate,
            self.train_config.train_hop
        );
        if let Some(rate) = self.train_config.code_rate {
            let _ = writeln!(
                s,
                "- **Rate**: trained for {rate:.3} bits/sample of codes (rate–distortion training; the framing \
                 of {} window(s) per frame comes on top), code step {}",
                self.windows_per_frame,
                self.quantization.as_ref().map_or("–".to_string(), |q| match q.rate_weight {
                    0.0 => format!("{:.3}, dead zone {:.2} of a step", q.code_step, q.dead_zone),
                    weight => format!(
                        "{:.3}, each code's own dead zone from what its bits cost (a bit worth {weight} squared \
                         steps; `encoder.fq8` holds them)",
                        q.code_step
                    ),
                })
            );
        }
        let _ = writeln!(s, "- **Stream**: {} window(s) per data frame", self.windows_per_frame);
        if let Some(b) = &self.bounded {
            let _ = writeln!(
                s,
                "- **Bounded** (`--max-error {}`): the device sends the samples, none more than {} count(s) off, \
                 {}, {} window(s) per frame; residual coder of prediction order {}, adaptive \
                 stage of order {} (step 2^-{}), blocks of {} samples in {} class(es). Held out: {:.3} bits/sample, framing \
                 included; largest error {} ({} count(s))",
                b.max_error,
                b.max_error_counts,
                match b.latent_codes {
                    true => "as residuals from the integer decoder's rebuild of the latent codes sent with them",
                    false => "predicted from the samples alone (no latent codes)",
                },
                b.windows_per_frame,
                b.prediction_order,
                b.adaptive_order,
                b.adaptive_shift,
                b.block,
                b.classes,
                b.bits_per_sample,
                b.max_abs_error,
                b.max_abs_error_counts
            );
            if !b.trials.is_empty() {
                let trials: Vec<String> = b
                    .trials
                    .iter()
                    .map(|t| match t.latent_bits_per_sample {
                        None => format!("the samples alone {:.3}", t.training_bits_per_sample),
                        Some(codes) => format!("codes at {codes:.3} → {:.3}", t.training_bits_per_sample),
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "- **Bounded stream, tried on the training part** (bits/sample, the fewest kept): {}",
                    trials.join("; ")
                );
            }
        }
        if let Some(q) = self.quantization.as_ref().filter(|q| !q.prediction_lags.is_empty()) {
            let lags = q.prediction_lags.iter().enumerate().filter(|(_, &lag)| lag != 0);
            let lags: Vec<String> = lags.map(|(latent, lag)| format!("{latent} (lag {lag})")).collect();
            let _ = writeln!(
                s,
                "- **Predicted latents**: {}; each coded as its difference from the same latent `lag` windows \
                 before in its frame",
                lags.join(", ")
            );
        }
        if let Some(q) = self.quantization.as_ref().filter(|q| q.window_classes > 1) {
            let _ = writeln!(
                s,
                "- **Window classes**: {}; each window is sent with the class whose tables code it in the fewest bits",
                q.window_classes
            );
        }
        if let Some(f) = self.seam_filter {
            let _ = writeln!(
                s,
                "- **Receiver**: seam filter over {} sample(s) on each side of a window boundary, strength {}",
                f.samples, f.strength
            );
        }
        let _ = writeln!(
            s,
            "- **Device scale**: {} counts per unit of the recording; sensor resolution {} bits\n",
            self.counts_per_unit, self.sensor_bits
        );
        let _ = writeln!(s, "## Held-out metrics\n");
        let _ = writeln!(
            s,
            "| method | PRD % | PRDN % | SNR dB | RMSE | max abs error | bits/sample | ratio vs 16 bit | ratio vs {}-bit sensor |",
            self.sensor_bits
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, m) in &self.held_out {
            let _ = writeln!(
                s,
                "| {name} | {:.2} | {:.2} | {:.2} | {:.4} | {:.3} | {:.3} | {:.2} | {:.2} |",
                m.prd,
                m.prdn,
                m.snr_db,
                m.rmse,
                m.max_abs_error,
                m.bits_per_sample,
                m.compression_ratio,
                m.sensor_compression_ratio
            );
        }
        if let Some(q) = &self.quantization {
            let _ = writeln!(s, "\n## int8 encoder (`encoder.fq8`)\n");
            let _ = writeln!(
                s,
                "{} bytes, {} MACs per window, {} bytes of scratch RAM; held-out PRDN {:.2} % float → {:.2} % int8 ({:+.1} % relative).",
                q.blob_bytes,
                q.macs_per_window,
                q.scratch_bytes,
                q.float_prdn,
                q.int8_prdn,
                100.0 * q.relative_prdn_loss
            );
        }
        if !self.shape_search.is_empty() {
            let _ = writeln!(s, "\n## Shape search\n");
            let _ = writeln!(
                s,
                "Candidates trained on the first part of the training part and measured through the device path on \
                 the rest of it (the held-out part unseen); ranked by PRDN at the target rate.\n"
            );
            let _ = writeln!(
                s,
                "| window | codes | windows/frame | bits/sample | PRDN % | PRDN % at target | blob B | MACs | RAM B | |"
            );
            let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
            for c in &self.shape_search {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.3} | {:.2} | {:.2} | {} | {} | {} | {} |",
                    c.window,
                    c.latent,
                    c.windows_per_frame,
                    c.bits_per_sample,
                    c.prdn,
                    c.prdn_at_target,
                    c.blob_bytes,
                    c.macs_per_window,
                    c.ram_bytes,
                    if c.chosen {
                        "**chosen**"
                    } else if c.over_budget {
                        "over budget"
                    } else {
                        ""
                    }
                );
            }
        }
        if !self.firmware.is_empty() {
            let _ = writeln!(s, "\n## Firmware\n");
            let _ = writeln!(
                s,
                "| image | core | kernels | flash B | static RAM B | peak stack B | encode instructions/window | encode instructions/s |"
            );
            let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|");
            let opt = |v: Option<String>| v.unwrap_or_else(|| "–".to_string());
            for f in &self.firmware {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    f.image,
                    f.core,
                    f.kernels,
                    f.flash_bytes,
                    f.static_ram_bytes,
                    opt(f.peak_stack_bytes.map(|v| v.to_string())),
                    opt(f.encode_instructions_per_window.map(|v| format!("{v:.0}"))),
                    opt(f
                        .encode_instructions_per_second
                        .zip(f.sample_rate_hz)
                        .map(|(v, hz)| format!("{v:.0} (at {hz} Hz)")))
                );
            }
            let mut commands: Vec<&str> = self.firmware.iter().map(|f| f.command.as_str()).collect();
            commands.dedup();
            let _ = writeln!(s, "\nMeasured with `{}`.", commands.join("`, `"));
        }
        let _ = writeln!(s, "\n## Files\n");
        let _ = writeln!(s, "| file | bytes |\n|---|---:|");
        for f in &self.files {
            let _ = writeln!(s, "| `{}` | {} |", f.name, f.bytes);
        }
        s
    }
}
