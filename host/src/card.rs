//! `model.json`: everything needed to reproduce, evaluate and deploy a trained model.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::metrics::Metrics;
use crate::train::{Arch, EpochRecord, InitReport, ModelSpec, TrainConfig, Variant};

pub const CARD_FILE: &str = "model.json";
/// The same card for people, rewritten with every save so the two never disagree.
pub const CARD_MARKDOWN_FILE: &str = "CARD.md";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
}

/// How the recording was cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub rows: usize,
    pub windows: usize,
    /// First 80 % of the windows, including the validation windows.
    pub train_windows: usize,
    /// Last 10 % of the training windows, used for early stopping only.
    pub validation_windows: usize,
    /// Last 20 % of the windows, never trained on; all metrics are on these.
    pub held_out_windows: usize,
}

/// Filled in by the quantization step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizationCard {
    pub blob_bytes: usize,
    pub macs_per_window: u64,
    pub scratch_bytes: usize,
    pub model_id: String,
    pub float_prdn: f64,
    pub int8_prdn: f64,
    pub relative_prdn_loss: f64,
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
    /// The command that measured this row.
    pub command: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub funnel_version: String,
    pub data_file: String,
    pub columns: Vec<String>,
    pub window: usize,
    pub latent: usize,
    pub arch: Arch,
    pub variant: Variant,
    pub seed: u64,
    /// Layer sizes; rebuilds the candle model from `model.safetensors`.
    pub spec: ModelSpec,
    pub train_config: TrainConfig,
    pub epochs_max: usize,
    pub epochs_run: usize,
    /// 1-based epoch whose weights were kept (lowest validation loss).
    pub best_epoch: usize,
    pub seconds_per_epoch: f64,
    pub history: Vec<EpochRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitReport>,
    pub split: SplitInfo,
    pub normalization: Normalization,
    /// Device samples are `i16 round(x * counts_per_unit)`, `x` in the data file's units.
    pub counts_per_unit: f32,
    /// Held-out metrics in original units, one section per method (`float_autoencoder`, `pca`).
    pub held_out: BTreeMap<String, Metrics>,
    /// Files of the model directory (except `model.json`) with sizes.
    pub files: Vec<FileEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantizationCard>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firmware: Vec<FirmwareBenchmark>,
}

impl ModelCard {
    pub fn load(dir: &Path) -> Result<ModelCard> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read model card {} (is --model a trained model directory?)", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid Funnel model card", path.display()))
    }

    /// Refuses data columns other than the ones the model (in `model_dir`) was trained on.
    pub fn check_columns(&self, model_dir: &Path, columns: &[String]) -> Result<()> {
        anyhow::ensure!(
            self.columns == columns,
            "model {} was trained on columns {:?} ({} channel(s)) but --column gives {:?} ({} channel(s))",
            model_dir.display(),
            self.columns,
            self.columns.len(),
            columns,
            columns.len()
        );
        Ok(())
    }

    /// Re-lists the directory's files (call after adding files), then writes `model.json` and
    /// `CARD.md`.
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        self.refresh_files(dir)?;
        let path = dir.join(CARD_FILE);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        let path = dir.join(CARD_MARKDOWN_FILE);
        std::fs::write(&path, self.to_markdown()).with_context(|| format!("cannot write {}", path.display()))
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
            self.arch,
            self.variant,
            self.columns.len(),
            self.window,
            self.latent,
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
            self.seed,
            self.epochs_run,
            self.epochs_max,
            self.best_epoch,
            self.seconds_per_epoch,
            self.train_config.batch_size,
            self.train_config.learning_rate,
            self.train_config.train_hop
        );
        let _ = writeln!(s, "- **Device scale**: {} counts per unit of the recording\n", self.counts_per_unit);
        let _ = writeln!(s, "## Held-out metrics\n");
        let _ = writeln!(s, "| method | PRD % | PRDN % | SNR dB | RMSE | max abs error | compression ratio |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for (name, m) in &self.held_out {
            let _ = writeln!(
                s,
                "| {name} | {:.2} | {:.2} | {:.2} | {:.4} | {:.3} | {:.2} |",
                m.prd, m.prdn, m.snr_db, m.rmse, m.max_abs_error, m.compression_ratio
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
        if !self.firmware.is_empty() {
            let _ = writeln!(s, "\n## Firmware\n");
            let _ = writeln!(
                s,
                "| image | core | kernels | flash B | static RAM B | peak stack B | encode instructions/window |"
            );
            let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|");
            let opt = |v: Option<String>| v.unwrap_or_else(|| "–".to_string());
            for f in &self.firmware {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    f.image,
                    f.core,
                    f.kernels,
                    f.flash_bytes,
                    f.static_ram_bytes,
                    opt(f.peak_stack_bytes.map(|v| v.to_string())),
                    opt(f.encode_instructions_per_window.map(|v| format!("{v:.0}")))
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

    pub fn refresh_files(&mut self, dir: &Path) -> Result<()> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == CARD_FILE || name == CARD_MARKDOWN_FILE || !entry.file_type()?.is_file() {
                continue;
            }
            files.push(FileEntry { name, bytes: entry.metadata()?.len() });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        self.files = files;
        Ok(())
    }
}
