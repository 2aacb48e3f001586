//! The `train`, `eval` and `plot` commands as library functions (the binary only parses flags).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::card::{ModelCard, SplitInfo, CARD_FILE};
use crate::data::{Dataset, Recording, Windows};
use crate::float_model::FloatEncoder;
use crate::metrics::{self, Metrics};
use crate::pca::Pca;
use crate::train::{self, Arch, Autoencoder, ModelSpec, TrainConfig, Trained, Variant};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const SECTION_FLOAT: &str = "float_autoencoder";
pub const SECTION_PCA: &str = "pca";

#[derive(clap::Args, Clone, Debug)]
pub struct TrainArgs {
    /// CSV file with a header row.
    #[arg(long)]
    pub data: PathBuf,
    /// Column to use as a channel; repeat for several channels.
    #[arg(long = "column", required = true)]
    pub columns: Vec<String>,
    /// Samples per window (per channel).
    #[arg(long)]
    pub window: usize,
    /// Latent size K (codes per window).
    #[arg(long)]
    pub latent: usize,
    #[arg(long, value_enum)]
    pub arch: Arch,
    #[arg(long, value_enum, default_value_t = Variant::Plain)]
    pub variant: Variant,
    /// Maximum epochs (early stopping may end sooner).
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start from the weights of another model directory where names and shapes match.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Training windows start every N samples inside the fitted part (default: --window, no
    /// overlap). A smaller hop augments the training data with overlapping windows; validation
    /// and held-out windows always use hop = window and never overlap the fitted part.
    #[arg(long)]
    pub train_hop: Option<usize>,
    /// Early stopping: epochs without a better validation loss before training stops.
    #[arg(long, default_value_t = 8)]
    pub patience: usize,
    /// Device ADC counts per unit of the recording (e.g. 200 for a front end giving 200 counts
    /// per mV). Default: the largest power of two that keeps the training data within half of
    /// the i16 range.
    #[arg(long)]
    pub counts_per_unit: Option<f32>,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args, Clone, Debug)]
pub struct EvalArgs {
    /// Trained model directory.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long = "column", required = true)]
    pub columns: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// What runs the float autoencoder: candle (the checkpoint), or `autoencoder.onnx` with tract
    /// or ONNX Runtime (`ort`: build with `--features ort`, set ORT_DYLIB_PATH).
    #[arg(long, value_enum, default_value_t = EvalBackend::Candle)]
    pub backend: EvalBackend,
}

/// Runtime for the float autoencoder in `funnel eval`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalBackend {
    #[default]
    Candle,
    Tract,
    Ort,
}

impl EvalBackend {
    /// Normalized windows → normalized reconstructions with this runtime.
    pub fn reconstruct(self, model_dir: &Path, model: &Autoencoder, windows: &Windows) -> Result<Windows> {
        let onnx = model_dir.join(crate::onnx::AUTOENCODER_FILE);
        match self {
            EvalBackend::Candle => model.reconstruct(windows),
            EvalBackend::Tract => {
                let m = crate::onnx::load_with_tract(&onnx)?;
                Ok(Windows { dim: windows.dim, data: m.run(&windows.data, windows.len())? })
            }
            #[cfg(feature = "ort")]
            EvalBackend::Ort => {
                let m = crate::onnx::OrtModel::load(&onnx)?;
                Ok(Windows { dim: windows.dim, data: m.run(&windows.data, windows.len())? })
            }
            #[cfg(not(feature = "ort"))]
            EvalBackend::Ort => {
                bail!("--backend ort: this funnel was built without ONNX Runtime; rebuild with `--features ort`")
            }
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct PlotArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long = "column", required = true)]
    pub columns: Vec<String>,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

/// Held-out metrics per method.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    pub model_dir: String,
    pub data_file: String,
    pub columns: Vec<String>,
    pub window: usize,
    pub latent: usize,
    pub held_out_windows: usize,
    /// What ran the float autoencoder.
    pub backend: EvalBackend,
    /// `float_autoencoder`, `pca` (and later `int8_device`).
    pub sections: BTreeMap<String, Metrics>,
}

impl EvalReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "held-out metrics: {} windows of {} × {} samples ({}), latent {}\n",
            self.held_out_windows,
            self.columns.len(),
            self.window,
            self.data_file,
            self.latent
        );
        s += &format!(
            "{:<18} {:>9} {:>9} {:>9} {:>11} {:>11} {:>8}\n",
            "method", "PRD %", "PRDN %", "SNR dB", "RMSE", "max |err|", "CR"
        );
        for (name, m) in &self.sections {
            s += &format!(
                "{:<18} {:>9.3} {:>9.3} {:>9.2} {:>11.5} {:>11.5} {:>8.2}\n",
                name, m.prd, m.prdn, m.snr_db, m.rmse, m.max_abs_error, m.compression_ratio
            );
        }
        s
    }
}

/// Everything `train` produced, for follow-up steps (quantization).
pub struct TrainOutcome {
    pub out_dir: PathBuf,
    pub card: ModelCard,
    pub dataset: Dataset,
    pub trained: Trained,
    pub encoder: FloatEncoder,
    pub eval: EvalReport,
}

fn denormalize(ds_norm: &crate::data::Normalization, w: &Windows) -> Windows {
    ds_norm.denormalize(w)
}

/// Float autoencoder and PCA (fitted on the training part, K = latent) on the held-out part.
/// `dataset` must be normalized with the model's normalization (see [`dataset_for_model`]).
pub fn evaluate(model_dir: &Path, card: &ModelCard, model: &Autoencoder, dataset: &Dataset) -> Result<EvalReport> {
    evaluate_with(model_dir, card, model, dataset, EvalBackend::Candle)
}

/// [`evaluate`] with the float autoencoder run by `backend`.
pub fn evaluate_with(
    model_dir: &Path,
    card: &ModelCard,
    model: &Autoencoder,
    dataset: &Dataset,
    backend: EvalBackend,
) -> Result<EvalReport> {
    let norm = &dataset.normalization;
    let recon = denormalize(norm, &backend.reconstruct(model_dir, model, &dataset.held_out_norm)?);
    let mut sections = BTreeMap::new();
    sections
        .insert(SECTION_FLOAT.to_string(), metrics::compute(&dataset.held_out, &recon, dataset.channels, card.latent));
    let pca = Pca::fit(&dataset.train_norm, card.latent).context("PCA baseline")?;
    let pca_recon = denormalize(norm, &pca.reconstruct(&dataset.held_out_norm));
    sections.insert(
        SECTION_PCA.to_string(),
        metrics::compute(&dataset.held_out, &pca_recon, dataset.channels, card.latent),
    );
    Ok(EvalReport {
        model_dir: model_dir.display().to_string(),
        data_file: dataset.path.display().to_string(),
        columns: dataset.columns.clone(),
        window: dataset.window,
        latent: card.latent,
        held_out_windows: dataset.held_out.len(),
        backend,
        sections,
    })
}

/// Loads `data` for an existing model: checks the columns against the card, windows with the
/// card's window and normalizes with the card's (training) normalization.
pub fn dataset_for_model(card: &ModelCard, model_dir: &Path, data: &Path, columns: &[String]) -> Result<Dataset> {
    card.check_columns(model_dir, columns)?;
    let rec = Recording::from_csv(data, columns)?;
    let mut ds = Dataset::prepare(&rec, card.window)?;
    ds.normalization = card.normalization.clone();
    ds.train_norm = ds.normalization.normalize(&ds.train);
    ds.held_out_norm = ds.normalization.normalize(&ds.held_out);
    ds.counts_per_unit = card.counts_per_unit;
    Ok(ds)
}

/// Loads the card and the candle model of a model directory.
pub fn load_model_dir(dir: &Path) -> Result<(ModelCard, Autoencoder)> {
    let card = ModelCard::load(dir)?;
    let (_, model) = train::load_model(dir, &card.spec)?;
    Ok((card, model))
}

/// `funnel train`: trains, exports ONNX + safetensors, evaluates and writes `model.json`.
pub fn train_command(args: &TrainArgs) -> Result<TrainOutcome> {
    ensure!(args.epochs >= 1, "--epochs must be at least 1 (got {})", args.epochs);
    let rec = Recording::from_csv(&args.data, &args.columns)?;
    let spec = ModelSpec::new(args.arch, rec.channels(), args.window, args.latent)?;
    let mut dataset = Dataset::prepare(&rec, args.window)?;
    if let Some(cpu) = args.counts_per_unit {
        ensure!(cpu.is_finite() && cpu > 0.0, "--counts-per-unit must be a positive number (got {cpu})");
        dataset.counts_per_unit = cpu;
    }
    if let Some(init) = &args.init {
        ensure!(init.join(WEIGHTS_FILE).exists(), "--init {}: no {WEIGHTS_FILE} there", init.display());
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create --out {}", args.out.display()))?;
    let hop = args.train_hop.unwrap_or(args.window);
    ensure!((1..=args.window).contains(&hop), "--train-hop {hop} must be between 1 and --window {}", args.window);
    ensure!(args.patience >= 1, "--patience must be at least 1");
    let cfg = TrainConfig {
        variant: args.variant,
        epochs: args.epochs,
        seed: args.seed,
        patience: args.patience,
        train_hop: hop,
        progress: true,
        ..TrainConfig::default()
    };
    // Fitted windows: the training part minus its last 10 % (validation), cut every `hop`
    // samples; validation windows are the ordinary non-overlapping ones after them.
    let n_train = dataset.train.len();
    let n_val = train::validation_count(n_train);
    let n_fit = n_train - n_val;
    let fit = dataset.normalization.normalize(&rec.windows_with_hop(args.window, hop, 0..n_fit * args.window));
    let val = if n_val == 0 { fit.clone() } else { dataset.train_norm.slice(n_fit..n_train) };
    eprintln!(
        "training {} {} autoencoder: {} ch × {} samples → {} codes; hidden {:?}; {} fitted windows (hop {hop}), {} validation, {} held out",
        args.arch,
        args.variant,
        spec.channels,
        spec.window,
        spec.latent,
        spec.hidden,
        fit.len(),
        n_val,
        dataset.held_out.len()
    );
    let mut trained = train::train_on(&spec, &cfg, &fit, &val, args.init.as_deref())?;
    trained.validation_windows = n_val;
    if let Some(r) = &trained.init {
        eprintln!("--init {}: loaded {} tensors {:?}", r.from, r.loaded.len(), r.loaded);
        for (name, why) in &r.skipped {
            eprintln!("--init: skipped {name}: {why}");
        }
    }
    eprintln!(
        "trained {} epochs (best {}), {:.3} s/epoch, {:.1} s total",
        trained.epochs_run,
        trained.best_epoch,
        trained.seconds_per_epoch,
        trained.history.iter().map(|h| h.seconds).sum::<f64>()
    );

    let weights = args.out.join(WEIGHTS_FILE);
    trained.varmap.save(&weights).with_context(|| format!("cannot write {}", weights.display()))?;
    crate::onnx::export_all(&trained.model, &args.out)?;
    // The exported graph must compute what was trained.
    let ae = crate::onnx::load_with_tract(args.out.join(crate::onnx::AUTOENCODER_FILE))?;
    let check = dataset.held_out_norm.slice(0..dataset.held_out.len().min(16));
    let via_onnx = ae.run(&check.data, check.len())?;
    let via_candle = trained.model.reconstruct(&check)?;
    let diff = via_onnx.iter().zip(&via_candle.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    ensure!(diff <= 1e-3, "internal: autoencoder.onnx differs from the trained model by {diff}");

    let encoder = train::encoder_to_float(&trained.model)?;
    let n_val = trained.validation_windows;
    let mut card = ModelCard {
        funnel_version: env!("CARGO_PKG_VERSION").to_string(),
        data_file: args.data.display().to_string(),
        columns: args.columns.clone(),
        window: args.window,
        latent: args.latent,
        arch: args.arch,
        variant: args.variant,
        seed: args.seed,
        spec: spec.clone(),
        train_config: cfg.clone(),
        epochs_max: args.epochs,
        epochs_run: trained.epochs_run,
        best_epoch: trained.best_epoch,
        seconds_per_epoch: trained.seconds_per_epoch,
        history: trained.history.clone(),
        init: trained.init.clone(),
        split: SplitInfo {
            rows: dataset.rows,
            windows: dataset.train.len() + dataset.held_out.len(),
            train_windows: dataset.train.len(),
            validation_windows: n_val,
            held_out_windows: dataset.held_out.len(),
        },
        normalization: dataset.normalization.clone(),
        counts_per_unit: dataset.counts_per_unit,
        held_out: BTreeMap::new(),
        files: Vec::new(),
        quantization: None,
        firmware: Vec::new(),
    };
    let eval = evaluate(&args.out, &card, &trained.model, &dataset)?;
    card.held_out = eval.sections.clone();
    card.save(&args.out)?;
    Ok(TrainOutcome { out_dir: args.out.clone(), card, dataset, trained, encoder, eval })
}

/// `funnel eval`.
pub fn eval_command(args: &EvalArgs) -> Result<EvalReport> {
    let (card, model) = load_model_dir(&args.model)?;
    let ds = dataset_for_model(&card, &args.model, &args.data, &args.columns)?;
    let mut report = evaluate_with(&args.model, &card, &model, &ds, args.backend)?;
    // The int8 device path, once `funnel quantize` has written the blob.
    if let Some(int8) = crate::quantize::int8_metrics(&args.model, &card, &ds)? {
        report.sections.insert(crate::quantize::SECTION_INT8.to_string(), int8);
    }
    Ok(report)
}

/// `funnel plot`: original vs. reconstruction over the first (up to) 4 held-out windows, and the
/// error, as a PNG.
pub fn plot_command(args: &PlotArgs) -> Result<()> {
    let (card, model) = load_model_dir(&args.model)?;
    let ds = dataset_for_model(&card, &args.model, &args.data, &args.columns)?;
    let n = ds.held_out.len().min(4);
    let orig = ds.held_out.slice(0..n);
    let recon = ds.normalization.denormalize(&model.reconstruct(&ds.held_out_norm.slice(0..n))?);
    // Per channel: contiguous series over the n windows.
    let t = ds.window;
    let series =
        |w: &Windows, c: usize| -> Vec<f32> { (0..n).flat_map(|i| w.get(i)[c * t..(c + 1) * t].to_vec()).collect() };
    let chans: Vec<(Vec<f32>, Vec<f32>)> = (0..ds.channels).map(|c| (series(&orig, c), series(&recon, c))).collect();
    draw_with_text_fallback(|text| draw(&args.out, &chans, &ds.columns, t, text))?;
    Ok(())
}

/// Runs `draw` with labels (`true`); if drawing text fails (no usable font on the machine), says
/// so and draws again without labels, so a plot is still written.
pub fn draw_with_text_fallback(draw: impl Fn(bool) -> Result<()>) -> Result<()> {
    draw(true).or_else(|e| {
        eprintln!("plot: drawing text failed ({e}); writing the plot without labels");
        draw(false)
    })
}

fn draw(out: &Path, chans: &[(Vec<f32>, Vec<f32>)], columns: &[String], window: usize, text: bool) -> Result<()> {
    use plotters::prelude::*;
    let plot_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    let root = BitMapBackend::new(out, (1400, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let (top, bottom) = root.split_vertically(500);
    let len = chans.first().map_or(0, |c| c.0.len());
    let bounds = |vals: &mut dyn Iterator<Item = f32>| {
        let (lo, hi) = vals.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((hi - lo) * 0.05).max(1e-6);
        (lo - pad, hi + pad)
    };
    let (lo, hi) = bounds(&mut chans.iter().flat_map(|(o, r)| o.iter().chain(r).copied()));
    let errs: Vec<Vec<f32>> = chans.iter().map(|(o, r)| o.iter().zip(r).map(|(a, b)| a - b).collect()).collect();
    let (elo, ehi) = bounds(&mut errs.iter().flatten().copied());
    let palette = [RGBColor(30, 30, 30), RGBColor(0, 90, 200), RGBColor(0, 140, 60), RGBColor(150, 0, 150)];

    let mut cb = ChartBuilder::on(&top);
    cb.margin(12).x_label_area_size(if text { 30 } else { 0 }).y_label_area_size(if text { 60 } else { 0 });
    if text {
        cb.caption("held-out: original (dark) vs reconstruction (red)", ("sans-serif", 22));
    }
    let mut chart = cb.build_cartesian_2d(0..len, lo..hi).map_err(|e| plot_err(&e))?;
    let mut mesh = chart.configure_mesh();
    if !text {
        mesh.disable_x_mesh().disable_y_mesh();
    }
    if text {
        mesh.y_desc("value").draw().map_err(|e| plot_err(&e))?;
    }
    for (c, (o, r)) in chans.iter().enumerate() {
        let oc = palette[c % palette.len()];
        let s = chart
            .draw_series(LineSeries::new(o.iter().enumerate().map(|(i, v)| (i, *v)), oc.stroke_width(2)))
            .map_err(|e| plot_err(&e))?;
        if text {
            s.label(format!("{} original", columns.get(c).map_or("", String::as_str)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], oc));
        }
        let s = chart
            .draw_series(LineSeries::new(r.iter().enumerate().map(|(i, v)| (i, *v)), RED.stroke_width(1)))
            .map_err(|e| plot_err(&e))?;
        if text && c == 0 {
            s.label("reconstruction").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        }
    }
    // Window boundaries.
    for b in (window..len).step_by(window.max(1)) {
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(b, lo), (b, hi)], BLACK.mix(0.25))))
            .map_err(|e| plot_err(&e))?;
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&e))?;
    }

    let mut cb = ChartBuilder::on(&bottom);
    cb.margin(12).x_label_area_size(if text { 30 } else { 0 }).y_label_area_size(if text { 60 } else { 0 });
    if text {
        cb.caption("error (original − reconstruction)", ("sans-serif", 18));
    }
    let mut chart = cb.build_cartesian_2d(0..len, elo..ehi).map_err(|e| plot_err(&e))?;
    if text {
        chart.configure_mesh().x_desc("sample").draw().map_err(|e| plot_err(&e))?;
    }
    for (c, e) in errs.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(e.iter().enumerate().map(|(i, v)| (i, *v)), palette[c % palette.len()]))
            .map_err(|e| plot_err(&e))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0, 0.0), (len, 0.0)], BLACK.mix(0.4))))
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}

/// `model.json` path of a model directory.
pub fn card_path(dir: &Path) -> PathBuf {
    dir.join(CARD_FILE)
}
