//! The train stage (feature `train`, the only user of candle): a [`TrainPlan`] and the
//! training windows in, a [`TrainedModel`] out; its weights leave as a plain [`FloatNet`].

mod model;
mod rate;

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use funnel_artifacts::data::TrainingWindows;
use funnel_artifacts::spec::{Arch, ModelSpec};
use funnel_artifacts::training::{EpochRecord, InitReport, TrainConfig};
use funnel_artifacts::{FloatNet, Graph, ModelDir, Windows};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

pub use candle_nn::VarMap;
pub use model::{batch_loss, contractive_penalty, Autoencoder, LossTerms};
use rate::{distortion_at_rate, CodePrior, RateController};

use crate::runtime::Runtime;

/// What to train: the network's shape, the schedule, an optional warm start.
#[derive(Clone, Debug)]
pub struct TrainPlan {
    pub spec: ModelSpec,
    pub config: TrainConfig,
    /// A model directory whose checkpoint seeds the weights where names and shapes match.
    pub init: Option<PathBuf>,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// The transform a `transform` model starts from (ignored for the other architectures and
    /// where `init` loads weights).
    pub transform: Option<TransformInit>,
}

/// A linear transform to start a `transform` model from: codes `c = analysis·(x − mean)/step`
/// and the inverse `x = mean + synthesisᵀ·c·step` (e.g. principal components of the training
/// windows, both the same orthonormal rows; or taken in a weighted metric, see
/// `funnel::pipeline`'s edge emphasis).
#[derive(Clone, Debug)]
pub struct TransformInit {
    /// `[D]`, the mean window.
    pub mean: Vec<f32>,
    /// `[K, D]`, row-major: the encoder's rows (codes are `analysis·(x − mean)/step`).
    pub analysis: Vec<f32>,
    /// `[K, D]`, row-major: what each code adds to the rebuilt window, per step (the analysis
    /// itself for orthonormal components).
    pub synthesis: Vec<f32>,
    /// The codes' grid step in the transform's units.
    pub step: f32,
}

/// A trained network and how training went.
pub struct TrainedModel {
    pub varmap: VarMap,
    pub model: Autoencoder,
    pub history: Vec<EpochRecord>,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds_per_epoch: f64,
    pub init: Option<InitReport>,
}

impl TrainedModel {
    /// The weights as plain arrays, for export and quantization.
    pub fn float_net(&self) -> Result<FloatNet> {
        self.model.float_net()
    }

    /// A copy of every parameter, for [`TrainedModel::restore`].
    pub fn weights(&self) -> Result<Vec<Tensor>> {
        snapshot(&self.varmap)
    }

    /// Puts back parameters copied by [`TrainedModel::weights`].
    pub fn restore(&self, weights: &[Tensor]) -> Result<()> {
        restore_snapshot(&self.varmap, weights)
    }

    /// One of the model's graphs, run by candle.
    pub fn runtime(&self, graph: Graph) -> CandleRuntime<&Autoencoder> {
        CandleRuntime { model: &self.model, graph }
    }
}

/// A copy of every parameter in `varmap`, for [`restore_snapshot`].
pub fn snapshot(varmap: &VarMap) -> Result<Vec<Tensor>> {
    Ok(vars_of(varmap, "")?.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?)
}

/// Puts back parameters copied by [`snapshot`].
pub fn restore_snapshot(varmap: &VarMap, weights: &[Tensor]) -> Result<()> {
    for ((_, var), t) in vars_of(varmap, "")?.iter().zip(weights) {
        var.set(t)?;
    }
    Ok(())
}

/// A graph of a candle [`Autoencoder`] (owned or borrowed) as a [`Runtime`].
pub struct CandleRuntime<M> {
    pub model: M,
    pub graph: Graph,
}

impl<M: Borrow<Autoencoder>> Runtime for CandleRuntime<M> {
    fn input_len(&self) -> usize {
        let spec = &self.model.borrow().spec;
        match self.graph {
            Graph::Decoder => spec.latent,
            Graph::Encoder | Graph::Autoencoder => spec.input_len(),
        }
    }

    fn output_len(&self) -> usize {
        let spec = &self.model.borrow().spec;
        match self.graph {
            Graph::Encoder => spec.latent,
            Graph::Decoder | Graph::Autoencoder => spec.input_len(),
        }
    }

    fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        ensure!(
            input.len() == batch * self.input_len(),
            "candle {:?}: input has {} values, expected batch {batch} × {}",
            self.graph,
            input.len(),
            self.input_len()
        );
        if batch == 0 {
            return Ok(Vec::new());
        }
        let x = Windows::new(self.input_len(), input.to_vec());
        let model = self.model.borrow();
        let y = match self.graph {
            Graph::Encoder => model.encode_windows(&x)?,
            Graph::Decoder => model.decode_latents(&x)?,
            Graph::Autoencoder => model.reconstruct(&x)?,
        };
        Ok(y.data)
    }
}

/// A candle encoder with its codes rounded to a grid of `step`, in float arithmetic, and
/// decoded by `receiver`: the reference the int8 device path of a model trained for a rate is
/// measured against (its codes are rounded on the device too; the unrounded autoencoder is not
/// what it approximates).
pub struct RoundedCodes<'a> {
    pub model: &'a Autoencoder,
    pub step: f64,
    /// Each code's dead zone on the device, in steps (see `QuantizationInput::dead_zone`);
    /// empty: none.
    pub dead_zones: Vec<f64>,
    /// What rebuilds the windows from the rounded codes: the receiver the device's codes go
    /// to (`decoder.onnx`, which rebuilds codes beyond the training range linearly), so that
    /// only the arithmetic differs.
    pub receiver: &'a dyn Runtime,
}

impl Runtime for RoundedCodes<'_> {
    fn input_len(&self) -> usize {
        self.model.spec.input_len()
    }

    fn output_len(&self) -> usize {
        self.model.spec.input_len()
    }

    fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        ensure!(input.len() == batch * self.input_len(), "rounded codes: {} values for batch {batch}", input.len());
        let codes = self.model.encode_windows(&Windows::new(self.input_len(), input.to_vec()))?;
        let step = self.step as f32;
        let zone = |i: usize| self.dead_zones.get(i % codes.dim).map_or(0.0, |&d| d as f32);
        let round = |i: usize, z: f32| (z.abs() / step + 0.5 - zone(i)).floor() * step * z.signum();
        let rounded: Vec<f32> = codes.data.iter().enumerate().map(|(i, &z)| round(i, z)).collect();
        self.receiver.run(&rounded, batch)
    }
}

/// Copies parameters from the checkpoint of the model directory `dir` into `varmap` where name
/// and shape match.
pub fn init_from(varmap: &VarMap, dir: &Path) -> Result<InitReport> {
    let path = ModelDir::new(dir).weights_path();
    ensure!(path.exists(), "--init {}: no {} there", dir.display(), ModelDir::WEIGHTS);
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("--init: cannot load {}", path.display()))?;
    let mut report = InitReport { from: path.display().to_string(), ..Default::default() };
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        match tensors.get(name) {
            Some(t) if t.dims() == var.dims() => {
                var.set(&t.to_dtype(DType::F32)?)?;
                report.loaded.push(name.clone());
            }
            Some(t) => report.skipped.push((
                name.clone(),
                format!("shape {:?} in {}, {:?} in this model", t.dims(), path.display(), var.dims()),
            )),
            None => report.skipped.push((name.clone(), "not in the init model".into())),
        }
    }
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !data.contains_key(*k)).collect();
    extra.sort();
    for name in extra {
        report.skipped.push((name.clone(), "not in this model".into()));
    }
    Ok(report)
}

/// Rebuilds the network a card describes and loads its checkpoint `model.safetensors`.
pub fn load_checkpoint(dir: &ModelDir, spec: &ModelSpec) -> Result<Autoencoder> {
    load_trainable(dir, spec).map(|(model, _)| model)
}

/// [`load_checkpoint`], with the variables to train it further.
pub fn load_trainable(dir: &ModelDir, spec: &ModelSpec) -> Result<(Autoencoder, VarMap)> {
    let mut varmap = VarMap::new();
    let model = Autoencoder::new(spec, &varmap, 0)?;
    let path = dir.weights_path();
    ensure!(path.exists(), "{} does not exist", path.display());
    varmap.load(&path).with_context(|| format!("cannot load weights from {}", path.display()))?;
    Ok((model, varmap))
}

/// The checkpoint (`model.safetensors`) of `varmap`, as bytes.
pub fn checkpoint_bytes(varmap: &VarMap) -> Result<Vec<u8>> {
    let vars = vars_of(varmap, "")?;
    let tensors: Vec<(&str, &Tensor)> = vars.iter().map(|(name, var)| (name.as_str(), var.as_tensor())).collect();
    Ok(safetensors::serialize(tensors, None)?)
}

/// Trains on `windows.fit` with early stopping on the reconstruction MSE of
/// `windows.validation`. Keeps the weights of the best validation epoch.
pub fn train(plan: &TrainPlan, windows: &TrainingWindows) -> Result<TrainedModel> {
    let (spec, cfg) = (&plan.spec, &plan.config);
    let (fit, val) = (&windows.fit, &windows.validation);
    ensure!(fit.dim == spec.input_len() && val.dim == spec.input_len(), "internal: window size mismatch");
    ensure!(!fit.is_empty(), "no training windows");
    ensure!(!val.is_empty(), "no validation windows");
    ensure!(cfg.epochs >= 1, "--epochs must be at least 1");
    ensure!(cfg.batch_size >= 1, "batch size must be at least 1");
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = Autoencoder::new(spec, &varmap, cfg.seed)?;
    let init_report = match (&plan.init, &plan.transform) {
        (Some(dir), _) => Some(init_from(&varmap, dir)?),
        (None, Some(transform)) if spec.arch == Arch::Transform => {
            set_transform(&varmap, spec, transform)?;
            None
        }
        (None, _) => None,
    };
    let val_x = Tensor::from_slice(&val.data, (val.len(), val.dim), &dev)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let fitted = match cfg.code_rate {
        None => optimize(
            &vars_of(&varmap, "")?,
            fit.len(),
            cfg,
            cfg.learning_rate,
            plan.progress.then_some("training"),
            |chunk| {
                let target = Tensor::from_vec(batch(fit, chunk), (chunk.len(), fit.dim), &dev)?;
                let terms = batch_loss(&model, cfg, &target, &mut rng)?;
                Ok(BatchTerms { loss: terms.total, penalty: f64::from(terms.penalty), lambda: 0.0 })
            },
            || Ok(candle_nn::loss::mse(&model.forward(&val_x)?, &val_x)?.to_scalar::<f32>()? as f64),
        )?,
        Some(target) => {
            let prior_vars = VarMap::new();
            let fit_x = Tensor::from_slice(&fit.data, (fit.len(), fit.dim), &dev)?;
            let prior = CodePrior::fitted(&prior_vars, &model.encode(&fit_x)?.detach())?;
            let (d0, _) = rate::rd_of_rounded(&model, &prior, &val_x)?;
            let mut controller = RateController::new(target, d0, fit.len().div_ceil(cfg.batch_size))?;
            let mut vars = vars_of(&varmap, "")?;
            vars.extend(vars_of(&prior_vars, "")?);
            optimize(
                &vars,
                fit.len(),
                cfg,
                cfg.learning_rate,
                plan.progress.then_some("training for the rate"),
                |chunk| {
                    let x = Tensor::from_vec(batch(fit, chunk), (chunk.len(), fit.dim), &dev)?;
                    let terms = rate::rd_loss(&model, &prior, &x, controller.lambda, &mut rng)?;
                    controller.update(terms.rate);
                    Ok(BatchTerms { loss: terms.total, penalty: terms.rate, lambda: controller.lambda })
                },
                || {
                    let (distortion, rate) = rate::rd_of_rounded(&model, &prior, &val_x)?;
                    Ok(distortion_at_rate(distortion, rate, target))
                },
            )?
        }
    };
    let epochs_run = fitted.history.len();
    let seconds_per_epoch = fitted.history.iter().map(|h| h.seconds).sum::<f64>() / epochs_run.max(1) as f64;
    Ok(TrainedModel {
        varmap,
        model,
        history: fitted.history,
        best_epoch: fitted.best_epoch,
        epochs_run,
        seconds_per_epoch,
        init: init_report,
    })
}

/// What fine-tuning the decoder did.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderTuning {
    pub epochs_run: usize,
    /// 0 when no epoch beat the weights it started from (which are kept then).
    pub best_epoch: usize,
    /// Validation MSE (normalized units) before and after.
    pub val_before: f64,
    pub val_after: f64,
}

/// Fine-tunes the decoder half of `model` (parameters in `varmap`; the encoder is left alone)
/// to rebuild the windows `fit.1` from the latents `fit.0` — the latents as the device's codes
/// carry them, so that the decoder learns to undo their quantization. Early-stops on the
/// `validation` pair and keeps the best weights, the starting ones included.
pub fn fine_tune_decoder(
    model: &Autoencoder,
    varmap: &VarMap,
    fit: (&Windows, &Windows),
    validation: (&Windows, &Windows),
    cfg: &TrainConfig,
    progress: bool,
) -> Result<DecoderTuning> {
    let dev = Device::Cpu;
    let ((fit_z, fit_x), (val_z, val_x)) = (fit, validation);
    ensure!(fit_z.len() == fit_x.len() && val_z.len() == val_x.len(), "internal: latents and windows differ in count");
    ensure!(!fit_z.is_empty() && !val_z.is_empty(), "no windows to fine-tune the decoder on");
    let val_z = Tensor::from_slice(&val_z.data, (val_z.len(), val_z.dim), &dev)?;
    let val_x = Tensor::from_slice(&val_x.data, (val_x.len(), val_x.dim), &dev)?;
    let val_loss = || Ok(candle_nn::loss::mse(&model.decode(&val_z)?, &val_x)?.to_scalar::<f32>()? as f64);
    let fitted = optimize(
        &vars_of(varmap, "decoder.")?,
        fit_z.len(),
        cfg,
        cfg.learning_rate * FINE_TUNE_LR_FACTOR,
        progress.then_some("tuning the decoder"),
        |chunk| {
            let z = Tensor::from_vec(batch(fit_z, chunk), (chunk.len(), fit_z.dim), &dev)?;
            let x = Tensor::from_vec(batch(fit_x, chunk), (chunk.len(), fit_x.dim), &dev)?;
            Ok(BatchTerms { loss: candle_nn::loss::mse(&model.decode(&z)?, &x)?, penalty: 0.0, lambda: 0.0 })
        },
        val_loss,
    )?;
    Ok(DecoderTuning {
        epochs_run: fitted.history.len(),
        best_epoch: fitted.best_epoch,
        val_before: fitted.start_val,
        val_after: fitted.best_val,
    })
}

/// Sets the weights of a `transform` model so that it computes `init` exactly: the encoder
/// `c = analysis·(x − mean)/step`; the decoder's hidden units `k` and `K + k` carry
/// `relu(step·c_k)` and `relu(−step·c_k)`, whose difference the output layer maps back through
/// `synthesisᵀ`; the remaining hidden units keep their random input
/// weights and start with no say in the output, so training grows them from zero.
fn set_transform(varmap: &VarMap, spec: &ModelSpec, init: &TransformInit) -> Result<()> {
    let (k, d, h) = (spec.latent, spec.input_len(), spec.hidden[0]);
    ensure!(
        init.mean.len() == d
            && init.analysis.len() == k * d
            && init.synthesis.len() == k * d
            && init.step.is_finite()
            && init.step > 0.0,
        "internal: a transform of {} × {} values for a {k} × {d} model",
        init.analysis.len() / d.max(1),
        init.mean.len()
    );
    let step = init.step;
    let dev = Device::Cpu;
    let encoder_weight: Vec<f32> = init.analysis.iter().map(|b| b / step).collect();
    let encoder_bias: Vec<f32> = init
        .analysis
        .chunks(d)
        .map(|row| -row.iter().zip(&init.mean).map(|(b, m)| b * m).sum::<f32>() / step)
        .collect();
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
    let var = |name: &str| data.get(name).with_context(|| format!("internal: no {name}"));
    var("encoder.l0.weight")?.set(&Tensor::from_vec(encoder_weight, (k, d), &dev)?)?;
    var("encoder.l0.bias")?.set(&Tensor::from_vec(encoder_bias, k, &dev)?)?;
    let mut hidden_weight = var("decoder.l0.weight")?.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    hidden_weight[..2 * k * k].fill(0.0);
    for j in 0..k {
        hidden_weight[j * k + j] = step;
        hidden_weight[(k + j) * k + j] = -step;
    }
    var("decoder.l0.weight")?.set(&Tensor::from_vec(hidden_weight, (h, k), &dev)?)?;
    let mut output_weight = vec![0f32; d * h];
    for (j, row) in init.synthesis.chunks(d).enumerate() {
        for (i, &b) in row.iter().enumerate() {
            output_weight[i * h + j] = b;
            output_weight[i * h + k + j] = -b;
        }
    }
    var("decoder.l1.weight")?.set(&Tensor::from_vec(output_weight, (d, h), &dev)?)?;
    var("decoder.l1.bias")?.set(&Tensor::from_slice(&init.mean, d, &dev)?)?;
    Ok(())
}

/// Fine-tuning starts from trained weights: a smaller step than training's.
const FINE_TUNE_LR_FACTOR: f64 = 0.25;

/// The variables of `varmap` whose names start with `prefix`, sorted by name.
fn vars_of(varmap: &VarMap, prefix: &str) -> Result<Vec<(String, Var)>> {
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
    let mut vars: Vec<(String, Var)> =
        data.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

/// Rows `chunk` of `windows`, one after another.
fn batch(windows: &Windows, chunk: &[usize]) -> Vec<f32> {
    chunk.iter().flat_map(|&i| windows.get(i).iter().copied()).collect()
}

/// One minibatch for [`optimize`]: the loss to step on, the penalty term it reports (the rate,
/// under rate–distortion training) and the rate term's weight λ (0 without one).
struct BatchTerms {
    loss: Tensor,
    penalty: f64,
    lambda: f64,
}

/// How [`optimize`] went.
struct Fitted {
    history: Vec<EpochRecord>,
    /// 0 when no epoch beat the values the variables started from (which are kept then).
    best_epoch: usize,
    best_val: f64,
    /// The validation loss of the starting values.
    start_val: f64,
}

/// AdamW over `vars` for up to `cfg.epochs` epochs of shuffled minibatches of `n` items
/// (`step` returns a minibatch's terms), early stopping after `cfg.patience` epochs without a
/// better `val_loss`; leaves the best epoch's values in `vars`, or their starting values when no
/// epoch beat them (a transform model starts as the PCA transform coder: training never makes it
/// worse on the validation slice, however it goes).
fn optimize(
    vars: &[(String, Var)],
    n: usize,
    cfg: &TrainConfig,
    learning_rate: f64,
    progress: Option<&str>,
    mut step: impl FnMut(&[usize]) -> Result<BatchTerms>,
    val_loss: impl Fn() -> Result<f64>,
) -> Result<Fitted> {
    let start = vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<Vec<_>>>()?;
    let start_val = val_loss()?;
    ensure!(start_val.is_finite(), "the starting weights give a non-finite validation loss ({start_val})");
    let mut opt = candle_nn::AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        candle_nn::ParamsAdamW { lr: learning_rate, weight_decay: cfg.weight_decay, ..Default::default() },
    )?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let pb = match progress {
        Some(prefix) => {
            let pb = indicatif::ProgressBar::new(cfg.epochs as u64);
            pb.set_style(
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg} ETA {eta}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            pb.set_prefix(prefix.to_string());
            pb
        }
        None => indicatif::ProgressBar::hidden(),
    };
    let mut history = Vec::new();
    let mut best = (start_val, 0, start);
    let mut since_best = 0;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let (mut sum, mut pen_sum, mut batches, mut lambda) = (0.0f64, 0.0f64, 0usize, 0.0);
        for chunk in order.chunks(cfg.batch_size) {
            let terms = step(chunk)?;
            pen_sum += terms.penalty;
            lambda = terms.lambda;
            opt.backward_step(&terms.loss)?;
            sum += terms.loss.to_scalar::<f32>()? as f64;
            batches += 1;
        }
        let train_loss = sum / batches.max(1) as f64;
        let val_loss = val_loss()?;
        ensure!(
            train_loss.is_finite() && val_loss.is_finite(),
            "training diverged at epoch {epoch} (train loss {train_loss}, val loss {val_loss})"
        );
        let seconds = t0.elapsed().as_secs_f64();
        let penalty = pen_sum / batches.max(1) as f64;
        history.push(EpochRecord { epoch, train_loss, penalty, lambda, val_loss, seconds });
        pb.set_message(format!("train {train_loss:.5} val {val_loss:.5} ({seconds:.2} s/epoch)"));
        pb.inc(1);
        if val_loss < best.0 {
            let snapshot = vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<Vec<_>>>()?;
            best = (val_loss, epoch, snapshot);
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience {
                break;
            }
        }
    }
    pb.finish();
    let (best_val, best_epoch, snapshot) = best;
    for ((_, var), t) in vars.iter().zip(snapshot) {
        var.set(&t)?;
    }
    Ok(Fitted { history, best_epoch, best_val, start_val })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use funnel_artifacts::spec::{Arch, Variant};
    use rand::Rng;

    /// Tiny multi-channel sine mixture, normalized-ish, `[C][T]` windows.
    pub fn sine_windows(n: usize, channels: usize, window: usize, seed: u64) -> Windows {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * channels * window);
        for _ in 0..n {
            let f1: f32 = rng.random_range(0.02..0.08);
            let ph: f32 = rng.random_range(0.0..std::f32::consts::TAU);
            let a: f32 = rng.random_range(0.5..1.5);
            for c in 0..channels {
                for t in 0..window {
                    let t = t as f32;
                    data.push(
                        a * (std::f32::consts::TAU * f1 * t + ph + c as f32).sin()
                            + 0.3 * (std::f32::consts::TAU * 0.17 * t + ph).cos(),
                    );
                }
            }
        }
        Windows::new(channels * window, data)
    }

    /// The plain-array network computes what candle computes: the encoder the quantizer reads,
    /// and both halves the ONNX export writes.
    fn assert_float_matches(arch: Arch) {
        let spec = ModelSpec::new(arch, 2, 32, 6).unwrap();
        let varmap = VarMap::new();
        let model = Autoencoder::new(&spec, &varmap, 3).unwrap();
        let w = sine_windows(5, 2, 32, 9);
        let z = model.encode_windows(&w).unwrap();
        let r = model.reconstruct(&w).unwrap();
        let net = model.float_net().unwrap();
        let fe = net.float_encoder();
        assert_eq!(fe.latent(), 6);
        let mut max = 0f32;
        for i in 0..w.len() {
            for (a, b) in fe.forward(w.get(i)).iter().zip(z.get(i)) {
                max = max.max((a - b).abs());
            }
            for (a, b) in net.reconstruct(w.get(i)).iter().zip(r.get(i)) {
                max = max.max((a - b).abs());
            }
        }
        assert!(max <= 1e-4, "{arch}: max abs diff {max}");
        // The candle runtime is the same network behind the Runtime trait.
        let trained = CandleRuntime { model: &model, graph: Graph::Decoder };
        assert_eq!(trained.run(&z.data, z.len()).unwrap(), model.decode_latents(&z).unwrap().data);
    }

    /// The float reference rounds the encoder's outputs as the device does (dead zones too) and
    /// hands them to the receiver it is given, not to the network's own decoder.
    #[test]
    fn rounded_codes_go_to_the_receiver_they_are_given() {
        let spec = ModelSpec::new(Arch::Mlp, 1, 32, 4).unwrap();
        let varmap = VarMap::new();
        let model = Autoencoder::new(&spec, &varmap, 5).unwrap();
        let w = sine_windows(6, 1, 32, 2);
        let z = model.encode_windows(&w).unwrap();
        let step = 0.05;
        let dead_zones = vec![0.0, 0.3, 0.0, 0.45];
        let receiver = crate::runtime::RepeatLatents { latent: 4, window: 32 };
        let reference = RoundedCodes { model: &model, step, dead_zones: dead_zones.clone(), receiver: &receiver };
        let rebuilt = reference.run(&w.data, w.len()).unwrap();
        for (window, codes) in rebuilt.chunks(32).zip(z.data.chunks(4)) {
            for (t, &value) in window.iter().enumerate() {
                let (z, zone) = (f64::from(codes[t % 4]), dead_zones[t % 4]);
                let rounded = (z.abs() / step + 0.5 - zone).floor() * step * z.signum();
                assert!((f64::from(value) - rounded).abs() < 1e-6, "sample {t}: {value} for {z}, want {rounded}");
            }
        }
        assert_ne!(rebuilt, model.decode_latents(&z).unwrap().data);
    }

    #[test]
    fn float_encoder_matches_candle_mlp() {
        assert_float_matches(Arch::Mlp);
    }

    #[test]
    fn float_encoder_matches_candle_conv() {
        assert_float_matches(Arch::Conv);
    }

    #[test]
    fn contractive_penalty_matches_explicit_jacobian() {
        // a: [2, 3], W: [2, 3]
        let a = Tensor::new(&[[1.0f32, -1.0, 2.0], [-0.5, 0.5, -2.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
        let p = contractive_penalty(&a, &w).unwrap().to_scalar::<f32>().unwrap();
        // sample 0 mask [1,0,1]: (1+16) + (9+36) = 62; sample 1 mask [0,1,0]: 4+25 = 29
        assert!((p - (62.0 + 29.0) / 2.0).abs() < 1e-5, "{p}");
    }

    fn plan(spec: &ModelSpec, config: TrainConfig) -> TrainPlan {
        TrainPlan { spec: spec.clone(), config, init: None, progress: false, transform: None }
    }

    fn quick_cfg(variant: Variant) -> TrainConfig {
        TrainConfig {
            variant,
            epochs: 25,
            seed: 7,
            batch_size: 8,
            learning_rate: 3e-3,
            patience: 25,
            ..Default::default()
        }
    }

    #[test]
    fn training_reduces_loss_and_is_deterministic() {
        // Enough windows to generalise: with a few dozen the validation loss stalls (overfitting)
        // even though the training loss keeps falling.
        let spec = ModelSpec::new(Arch::Mlp, 1, 32, 4).unwrap();
        let w = sine_windows(400, 1, 32, 1);
        let a = train(&plan(&spec, quick_cfg(Variant::Plain)), &TrainingWindows::split(&w)).unwrap();
        let first = a.history[0].val_loss;
        let best = a.history.iter().map(|h| h.val_loss).fold(f64::INFINITY, f64::min);
        assert!(best < 0.3 * first, "val loss {first} -> {best}");
        let b = train(&plan(&spec, quick_cfg(Variant::Plain)), &TrainingWindows::split(&w)).unwrap();
        let losses = |t: &TrainedModel| t.history.iter().map(|h| (h.train_loss, h.val_loss)).collect::<Vec<_>>();
        assert_eq!(losses(&a), losses(&b), "same seed must give the same run");
        assert!(a.seconds_per_epoch > 0.0);
    }

    #[test]
    fn every_variant_trains() {
        let w = sine_windows(48, 2, 16, 2);
        for arch in [Arch::Mlp, Arch::Conv] {
            let spec = ModelSpec::new(arch, 2, 16, 4).unwrap();
            for v in [Variant::Sparse, Variant::Contractive, Variant::Denoising] {
                let cfg = TrainConfig { epochs: 6, ..quick_cfg(v) };
                let t = train(&plan(&spec, cfg), &TrainingWindows::split(&w)).unwrap();
                let (first, last) = (t.history[0].val_loss, t.history.last().unwrap().val_loss);
                assert!(last < first, "{arch} {v}: {first} -> {last}");
            }
        }
    }

    #[test]
    fn variant_loss_terms_are_active() {
        let spec = ModelSpec::new(Arch::Mlp, 1, 32, 4).unwrap();
        let varmap = VarMap::new();
        let model = Autoencoder::new(&spec, &varmap, 5).unwrap();
        let w = sine_windows(8, 1, 32, 3);
        let x = Tensor::from_slice(&w.data, (w.len(), w.dim), &Device::Cpu).unwrap();
        let z = model.encode_windows(&w).unwrap();
        let mean_abs_z = z.data.iter().map(|v| v.abs()).sum::<f32>() / z.data.len() as f32;
        let terms = |variant, noise_std| {
            let cfg =
                TrainConfig { variant, noise_std, sparse_weight: 0.5, contractive_weight: 0.25, ..Default::default() };
            let t = batch_loss(&model, &cfg, &x, &mut StdRng::seed_from_u64(1)).unwrap();
            (t.total.to_scalar::<f32>().unwrap(), t.reconstruction, t.penalty)
        };
        let (plain, plain_rec, plain_pen) = terms(Variant::Plain, 0.1);
        assert_eq!((plain, plain_pen), (plain_rec, 0.0));
        // sparse: the penalty is mean |z|, added with its weight.
        let (total, rec, pen) = terms(Variant::Sparse, 0.1);
        assert_eq!(rec, plain_rec);
        assert!((pen - mean_abs_z).abs() < 1e-5 && pen > 0.0, "{pen} vs {mean_abs_z}");
        assert!((total - (rec + 0.5 * pen)).abs() < 1e-5);
        // contractive: ‖J‖_F² > 0 and weighted.
        let (total, rec, pen) = terms(Variant::Contractive, 0.1);
        assert_eq!(rec, plain_rec);
        assert!(pen > 0.0);
        assert!((total - (rec + 0.25 * pen)).abs() < 1e-4);
        // denoising: noisy input, clean target → a different reconstruction error, growing with
        // the noise; without noise it is the plain loss.
        let (_, rec0, pen) = terms(Variant::Denoising, 0.0);
        assert_eq!((rec0, pen), (plain_rec, 0.0));
        let (_, rec_small, _) = terms(Variant::Denoising, 0.1);
        let (_, rec_big, _) = terms(Variant::Denoising, 2.0);
        assert!(rec_small != plain_rec && rec_big > rec_small, "{plain_rec} {rec_small} {rec_big}");
        // The penalty reaches the gradient: one sparse step shrinks mean |z| more than a plain one.
        let step = |variant| {
            let vm = VarMap::new();
            let m = Autoencoder::new(&spec, &vm, 5).unwrap();
            let cfg = TrainConfig { variant, sparse_weight: 5.0, ..Default::default() };
            let mut opt = candle_nn::SGD::new(vm.all_vars(), 0.05).unwrap();
            for _ in 0..5 {
                let t = batch_loss(&m, &cfg, &x, &mut StdRng::seed_from_u64(1)).unwrap();
                opt.backward_step(&t.total).unwrap();
            }
            let z = m.encode_windows(&w).unwrap();
            z.data.iter().map(|v| v.abs()).sum::<f32>() / z.data.len() as f32
        };
        assert!(step(Variant::Sparse) < step(Variant::Plain));
    }

    #[test]
    fn decoder_tuning_learns_coarse_latents_and_leaves_the_encoder_alone() {
        let spec = ModelSpec::new(Arch::Mlp, 1, 32, 4).unwrap();
        let w = sine_windows(400, 1, 32, 1);
        let windows = TrainingWindows::split(&w);
        let t = train(&plan(&spec, quick_cfg(Variant::Plain)), &windows).unwrap();
        // Latents rounded to a coarse grid: what the device's codes would carry.
        let coarse = |x: &Windows| {
            let z = t.model.encode_windows(x).unwrap();
            Windows::new(z.dim, z.data.iter().map(|v| (v / 0.5).round() * 0.5).collect())
        };
        let (fit_z, val_z) = (coarse(&windows.fit), coarse(&windows.validation));
        let encoder_before = t.model.encode_windows(&w).unwrap();
        let cfg = TrainConfig { epochs: 15, patience: 15, ..quick_cfg(Variant::Plain) };
        let tuning =
            fine_tune_decoder(&t.model, &t.varmap, (&fit_z, &windows.fit), (&val_z, &windows.validation), &cfg, false)
                .unwrap();
        assert!(tuning.val_after < 0.97 * tuning.val_before, "{tuning:?}");
        assert!(tuning.best_epoch >= 1 && tuning.epochs_run >= tuning.best_epoch);
        let decoded = t.model.decode_latents(&val_z).unwrap();
        let mse = decoded.data.iter().zip(&windows.validation.data).map(|(a, b)| (a - b).powi(2)).sum::<f32>()
            / decoded.data.len() as f32;
        assert!((f64::from(mse) - tuning.val_after).abs() < 1e-4, "the best weights are kept: {mse}");
        assert_eq!(t.model.encode_windows(&w).unwrap(), encoder_before, "the encoder is not trained");
        // Nothing left to learn: the weights it started from are kept.
        let again = fine_tune_decoder(
            &t.model,
            &t.varmap,
            (&fit_z, &windows.fit),
            (&val_z, &windows.validation),
            &TrainConfig { epochs: 1, learning_rate: 10.0, ..cfg },
            false,
        )
        .unwrap();
        assert_eq!((again.best_epoch, again.val_after), (0, again.val_before));
        let decoded_again = t.model.decode_latents(&val_z).unwrap();
        assert_eq!(decoded_again, decoded, "a worse epoch is rolled back");
    }

    /// An orthonormal basis of `k` rows in `d` dimensions (sines and cosines over the window).
    fn basis(k: usize, d: usize) -> Vec<f32> {
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for j in 0..k {
            let f = (j / 2 + 1) as f32;
            let mut row: Vec<f32> = (0..d)
                .map(|t| {
                    let a = std::f32::consts::TAU * f * t as f32 / d as f32;
                    if j % 2 == 0 {
                        a.sin()
                    } else {
                        a.cos()
                    }
                })
                .collect();
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
            rows.push(row);
        }
        rows.concat()
    }

    #[test]
    fn a_transform_model_starts_as_exactly_its_linear_transform() {
        let (k, d) = (6, 16);
        let spec = ModelSpec::new(Arch::Transform, 1, d, k).unwrap();
        // Components in a weighted metric: the analysis and synthesis rows differ.
        let scale = |t: usize| 1.0 + 0.5 * (t % 3) as f32;
        let weighted = |f: &dyn Fn(f32, f32) -> f32| -> Vec<f32> {
            basis(k, d).iter().enumerate().map(|(i, &b)| f(b, scale(i % d))).collect()
        };
        let init = TransformInit {
            mean: (0..d).map(|t| t as f32 * 0.1).collect(),
            analysis: weighted(&|b, s| b * s),
            synthesis: weighted(&|b, s| b / s),
            step: 0.25,
        };
        let varmap = VarMap::new();
        let model = Autoencoder::new(&spec, &varmap, 1).unwrap();
        set_transform(&varmap, &spec, &init).unwrap();
        let w = sine_windows(7, 1, d, 4);
        let codes = model.encode_windows(&w).unwrap();
        let rebuilt = model.reconstruct(&w).unwrap();
        for i in 0..w.len() {
            let x = w.get(i);
            let c: Vec<f32> = init
                .analysis
                .chunks(d)
                .map(|row| row.iter().zip(x).zip(&init.mean).map(|((b, x), m)| b * (x - m)).sum::<f32>() / init.step)
                .collect();
            for (a, b) in codes.get(i).iter().zip(&c) {
                assert!((a - b).abs() < 1e-4, "code {a} vs {b}");
            }
            // The codes back in the window's units, through the synthesis rows.
            for (t, r) in rebuilt.get(i).iter().enumerate() {
                let p = init.mean[t] + (0..k).map(|j| init.synthesis[j * d + t] * c[j] * init.step).sum::<f32>();
                assert!((r - p).abs() < 1e-4, "sample {t}: {r} vs {p}");
            }
        }
        // The wrong shape is an error, not a panic.
        let bad = TransformInit { analysis: basis(k - 1, d), ..init };
        assert!(set_transform(&varmap, &spec, &bad).is_err());
    }

    #[test]
    fn rate_training_steers_the_codes_to_their_target_rate() {
        let (k, d) = (8, 16);
        let spec = ModelSpec::new(Arch::Transform, 1, d, k).unwrap();
        let windows = TrainingWindows::split(&sine_windows(400, 1, d, 6));
        let rate_of = |target: f64| {
            let config = TrainConfig { code_rate: Some(target), epochs: 12, patience: 12, ..quick_cfg(Variant::Plain) };
            let init = TransformInit { mean: vec![0.0; d], analysis: basis(k, d), synthesis: basis(k, d), step: 0.5 };
            let plan = TrainPlan { transform: Some(init), ..plan(&spec, config) };
            let t = train(&plan, &windows).unwrap();
            let last = t.history.last().unwrap();
            assert!(last.lambda > 0.0 && t.history.iter().all(|h| h.penalty > 0.0));
            last.penalty
        };
        // Both start at the same rate (about 1 bit per sample): λ drives one down, the other up.
        // (Quantization then hits the target exactly with the code step.)
        let (low, high) = (rate_of(0.4), rate_of(1.6));
        assert!(low < 0.6 && high > 1.0 && high > 2.0 * low, "{low} {high}");
    }

    #[test]
    fn init_loads_matching_weights_and_reports_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let w = sine_windows(20, 1, 32, 4);
        let spec = ModelSpec::new(Arch::Mlp, 1, 32, 4).unwrap();
        let a =
            train(&plan(&spec, TrainConfig { epochs: 2, ..quick_cfg(Variant::Plain) }), &TrainingWindows::split(&w))
                .unwrap();
        ModelDir::new(dir.path()).write(ModelDir::WEIGHTS, &checkpoint_bytes(&a.varmap).unwrap()).unwrap();
        // Same model: everything loads; reload gives identical outputs.
        let m = load_checkpoint(&ModelDir::new(dir.path()), &spec).unwrap();
        assert_eq!(m.encode_windows(&w).unwrap(), a.model.encode_windows(&w).unwrap());
        // Different latent: the last encoder layer and first decoder layer are skipped.
        let spec2 = ModelSpec::new(Arch::Mlp, 1, 32, 5).unwrap();
        let vm = VarMap::new();
        let _m2 = Autoencoder::new(&spec2, &vm, 1).unwrap();
        let r = init_from(&vm, dir.path()).unwrap();
        assert!(r.loaded.contains(&"encoder.l0.weight".to_string()));
        assert!(r.skipped.iter().any(|(n, why)| n == "encoder.l2.weight" && why.contains("shape")));
        assert!(r.skipped.iter().any(|(n, _)| n == "decoder.l0.weight"));
    }
}
