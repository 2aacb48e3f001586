//! Autoencoders in candle: model definitions (`mlp`, `conv`), training variants, early stopping,
//! checkpoints, and conversion of the encoder to [`FloatEncoder`].
//!
//! Every model takes a batch of normalized windows `[N, C*T]` (each window channels-first `[C][T]`
//! flattened channel-major) and reconstructs the same shape. The conv models reshape to
//! `[N, C, T]` internally.
//!
//! Parameter names in `model.safetensors` are `encoder.l{i}.weight|bias` and
//! `decoder.l{i}.weight|bias` where `i` is the index of the layer in [`Autoencoder::encoder_net`] /
//! [`Autoencoder::decoder_net`].

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Conv1d, Conv1dConfig, Linear, Optimizer, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::Windows;
use crate::float_model::{Activation, FloatEncoder, FloatLayer};

/// Total stride of the conv encoder (two stride-2 convolutions).
pub const CONV_TOTAL_STRIDE: usize = 4;
/// Channels of the two conv encoder stages.
pub const CONV_CHANNELS: [usize; 2] = [8, 16];
pub const CONV_KERNEL: usize = 5;
/// Most int8 weights the encoder may have (all layers together): the blob lives in flash next to
/// the firmware, and a Cortex-M0 with 64 KiB flash must still hold it. Checked by [`ModelSpec::new`].
pub const ENCODER_WEIGHT_BUDGET: usize = 40_000;
/// Widest MLP hidden layer.
pub const MLP_MAX_HIDDEN: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Mlp,
    Conv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    #[default]
    Plain,
    /// L1 penalty on the latent activations.
    Sparse,
    /// Frobenius norm of the last encoder layer's Jacobian (see [`contractive_penalty`]).
    Contractive,
    /// Gaussian noise on the inputs, clean targets.
    Denoising,
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Mlp => "mlp",
            Arch::Conv => "conv",
        })
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Plain => "plain",
            Variant::Sparse => "sparse",
            Variant::Contractive => "contractive",
            Variant::Denoising => "denoising",
        })
    }
}

/// Shape of an autoencoder: everything needed to rebuild it from a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    pub channels: usize,
    pub window: usize,
    pub latent: usize,
    /// `mlp`: the two hidden widths `[h1, h2]`; `conv`: the conv channels `[8, 16]`.
    pub hidden: Vec<usize>,
}

impl ModelSpec {
    /// Picks the layer sizes and checks that the int8 encoder fits the device.
    ///
    /// MLP: `h1` is `min(C*T/2, 256)`, or the widest multiple of 8 below it whose encoder
    /// (`C*T·h1 + h1·h2 + h2·K` weights, `h2 = max(h1/2, K)`) stays within
    /// [`ENCODER_WEIGHT_BUDGET`]; both hidden layers are at least `K` wide.
    /// Conv: two stride-2 convolutions (8 and 16 channels, kernel 5) and a dense latent layer
    /// `16·T/4 → K`.
    ///
    /// Errors name the flag to change: a latent larger than the wire's `MAX_CODES`, more channels
    /// than the blob allows, a conv window not divisible by the total stride 4, or an encoder
    /// over the weight budget.
    pub fn new(arch: Arch, channels: usize, window: usize, latent: usize) -> Result<ModelSpec> {
        use funnel_shared::{blob::MAX_CHANNELS, wire::MAX_CODES};
        ensure!(channels >= 1, "at least one channel (--column) is needed");
        ensure!(
            channels <= MAX_CHANNELS,
            "{channels} --column flags: the device encoder takes at most {MAX_CHANNELS} channels"
        );
        ensure!(window >= 1, "--window must be at least 1");
        ensure!(window <= u16::MAX as usize, "--window {window} is too large (at most {})", u16::MAX);
        ensure!(latent >= 1, "--latent must be at least 1");
        ensure!(
            latent <= MAX_CODES,
            "--latent {latent} is more codes per window than a frame carries (at most {MAX_CODES})"
        );
        let d = channels * window;
        ensure!(
            latent < d,
            "--latent {latent} must be smaller than the {d} samples of a window ({channels} channel(s) × \
             --window {window}), or nothing is compressed"
        );
        let hidden = match arch {
            Arch::Mlp => {
                let weights = |h1: usize| {
                    let h2 = (h1 / 2).max(latent);
                    d * h1 + h1 * h2 + h2 * latent
                };
                let widest = (d / 2).min(MLP_MAX_HIDDEN).max(latent);
                // Multiples of 8 suit the device kernels; the latent width itself is the fallback.
                let Some(h1) = (latent..=widest)
                    .rev()
                    .filter(|&h| h % 8 == 0 || h == widest || h == latent)
                    .find(|&h| weights(h) <= ENCODER_WEIGHT_BUDGET)
                else {
                    bail!(
                        "--arch mlp with --window {window} × {channels} channel(s) and --latent {latent} needs at \
                         least {} int8 encoder weights, more than the device budget of {ENCODER_WEIGHT_BUDGET}; \
                         use a smaller --window or --latent, or --arch conv",
                        weights(latent)
                    );
                };
                vec![h1, (h1 / 2).max(latent)]
            }
            Arch::Conv => {
                if window % CONV_TOTAL_STRIDE != 0 || window < CONV_TOTAL_STRIDE {
                    let lower = window / CONV_TOTAL_STRIDE * CONV_TOTAL_STRIDE;
                    let upper = lower + CONV_TOTAL_STRIDE;
                    let suggestion = if lower == 0 { format!("{upper}") } else { format!("{lower} or {upper}") };
                    bail!(
                        "--arch conv needs --window divisible by the encoder's total stride \
                         {CONV_TOTAL_STRIDE} (two stride-2 convolutions); got --window {window}, try {suggestion}"
                    );
                }
                let spec = ModelSpec { arch, channels, window, latent, hidden: CONV_CHANNELS.to_vec() };
                let weights = spec.encoder_weights();
                ensure!(
                    weights <= ENCODER_WEIGHT_BUDGET,
                    "--arch conv with --window {window} and --latent {latent} gives {weights} int8 encoder \
                     weights, more than the device budget of {ENCODER_WEIGHT_BUDGET}; use a smaller --window \
                     or --latent"
                );
                CONV_CHANNELS.to_vec()
            }
        };
        Ok(ModelSpec { arch, channels, window, latent, hidden })
    }

    /// Number of encoder weights (= int8 bytes on the device, biases not counted).
    pub fn encoder_weights(&self) -> usize {
        self.layout()
            .0
            .iter()
            .map(|l| match *l {
                LayerKind::Dense { i, o, .. } => i * o,
                LayerKind::Conv { ci, co, .. } => ci * co * CONV_KERNEL,
                _ => 0,
            })
            .sum()
    }

    pub fn input_len(&self) -> usize {
        self.channels * self.window
    }

    /// Abstract layer list (no weights): encoder, decoder.
    fn layout(&self) -> (Vec<LayerKind>, Vec<LayerKind>) {
        let (c, t, k) = (self.channels, self.window, self.latent);
        match self.arch {
            Arch::Mlp => {
                let (h1, h2) = (self.hidden[0], self.hidden[1]);
                let d = c * t;
                (
                    vec![
                        LayerKind::Dense { i: d, o: h1, relu: true },
                        LayerKind::Dense { i: h1, o: h2, relu: true },
                        LayerKind::Dense { i: h2, o: k, relu: false },
                    ],
                    vec![
                        LayerKind::Dense { i: k, o: h2, relu: true },
                        LayerKind::Dense { i: h2, o: h1, relu: true },
                        LayerKind::Dense { i: h1, o: d, relu: false },
                    ],
                )
            }
            Arch::Conv => {
                let (c1, c2) = (self.hidden[0], self.hidden[1]);
                let (t2, t4) = (t / 2, t / 4);
                let p = CONV_KERNEL / 2;
                (
                    vec![
                        LayerKind::Reshape { channels: c, len: t },
                        LayerKind::Conv { ci: c, co: c1, stride: 2, pad: p, in_len: t, relu: true },
                        LayerKind::Conv { ci: c1, co: c2, stride: 2, pad: p, in_len: t2, relu: true },
                        LayerKind::Flatten,
                        LayerKind::Dense { i: c2 * t4, o: k, relu: false },
                    ],
                    vec![
                        LayerKind::Dense { i: k, o: c2 * t4, relu: true },
                        LayerKind::Reshape { channels: c2, len: t4 },
                        LayerKind::Upsample2 { channels: c2, len: t4 },
                        LayerKind::Conv { ci: c2, co: c1, stride: 1, pad: p, in_len: t2, relu: true },
                        LayerKind::Upsample2 { channels: c1, len: t2 },
                        LayerKind::Conv { ci: c1, co: c, stride: 1, pad: p, in_len: t, relu: false },
                        LayerKind::Flatten,
                    ],
                )
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum LayerKind {
    Dense { i: usize, o: usize, relu: bool },
    Conv { ci: usize, co: usize, stride: usize, pad: usize, in_len: usize, relu: bool },
    Reshape { channels: usize, len: usize },
    Flatten,
    Upsample2 { channels: usize, len: usize },
}

/// A layer with its weights as plain arrays: what ONNX export and [`FloatEncoder`] need.
#[derive(Clone, Debug, PartialEq)]
pub enum NetLayer {
    /// A dense (`[N, in] → [N, out]`) or conv (`[N, ci, in_len] → [N, co, out_len]`) layer with
    /// its weights, in the same type the quantizer reads.
    Weighted(FloatLayer),
    /// `[N, channels*len] → [N, channels, len]`.
    Reshape { channels: usize, len: usize },
    /// `[N, C, L] → [N, C*L]`.
    Flatten,
    /// Nearest-neighbour ×2 upsampling `[N, C, L] → [N, C, 2L]`, `y[c][t] = x[c][t / 2]`.
    Upsample2 { channels: usize, len: usize },
}

enum Layer {
    Dense(Linear, bool),
    Conv(Conv1d, LayerKind),
    Reshape(usize, usize),
    Flatten,
    Upsample2,
}

impl Layer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layer::Dense(l, relu) => {
                let y = l.forward(x)?;
                if *relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
            Layer::Conv(c, LayerKind::Conv { relu, .. }) => {
                let y = c.forward(x)?;
                if *relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
            Layer::Conv(..) => unreachable!(),
            Layer::Reshape(c, l) => x.reshape(((), *c, *l)),
            Layer::Flatten => x.flatten_from(1),
            Layer::Upsample2 => {
                let (n, c, l) = x.dims3()?;
                let u = x.unsqueeze(3)?;
                Tensor::cat(&[&u, &u], 3)?.reshape((n, c, 2 * l))
            }
        }
    }

    fn pre_activation(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layer::Dense(l, _) => l.forward(x),
            Layer::Conv(c, _) => c.forward(x),
            _ => self.forward(x),
        }
    }

    fn is_relu(&self) -> bool {
        matches!(self, Layer::Dense(_, true) | Layer::Conv(_, LayerKind::Conv { relu: true, .. }))
    }
}

/// A candle autoencoder whose parameters live in a [`VarMap`].
pub struct Autoencoder {
    pub spec: ModelSpec,
    encoder: Vec<Layer>,
    decoder: Vec<Layer>,
}

fn uniform_tensor(rng: &mut StdRng, shape: &[usize], bound: f32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn new_param(varmap: &VarMap, name: &str, t: Tensor) -> Result<Tensor> {
    let var = Var::from_tensor(&t)?;
    let out = var.as_tensor().clone();
    let mut data = varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
    ensure!(!data.contains_key(name), "duplicate parameter {name}");
    data.insert(name.to_string(), var);
    Ok(out)
}

impl Autoencoder {
    /// Creates the parameters in `varmap` with a deterministic He-uniform initialization from `seed`
    /// (weights `U(±sqrt(6/fan_in))`, biases 0) and builds the model on them.
    pub fn new(spec: &ModelSpec, varmap: &VarMap, seed: u64) -> Result<Autoencoder> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1417_f00d);
        let (enc_l, dec_l) = spec.layout();
        let mut build = |prefix: &str, kinds: &[LayerKind]| -> Result<Vec<Layer>> {
            let mut layers = Vec::new();
            for (i, kind) in kinds.iter().enumerate() {
                let name = format!("{prefix}.l{i}");
                layers.push(match *kind {
                    LayerKind::Dense { i: fi, o, relu } => {
                        let bound = (6.0 / fi as f32).sqrt();
                        let w =
                            new_param(varmap, &format!("{name}.weight"), uniform_tensor(&mut rng, &[o, fi], bound)?)?;
                        let b =
                            new_param(varmap, &format!("{name}.bias"), Tensor::zeros(o, DType::F32, &Device::Cpu)?)?;
                        Layer::Dense(Linear::new(w, Some(b)), relu)
                    }
                    LayerKind::Conv { ci, co, stride, pad, .. } => {
                        let fan_in = ci * CONV_KERNEL;
                        let bound = (6.0 / fan_in as f32).sqrt();
                        let w = new_param(
                            varmap,
                            &format!("{name}.weight"),
                            uniform_tensor(&mut rng, &[co, ci, CONV_KERNEL], bound)?,
                        )?;
                        let b =
                            new_param(varmap, &format!("{name}.bias"), Tensor::zeros(co, DType::F32, &Device::Cpu)?)?;
                        let cfg = Conv1dConfig { padding: pad, stride, dilation: 1, groups: 1, cudnn_fwd_algo: None };
                        Layer::Conv(Conv1d::new(w, Some(b), cfg), *kind)
                    }
                    LayerKind::Reshape { channels, len } => Layer::Reshape(channels, len),
                    LayerKind::Flatten => Layer::Flatten,
                    LayerKind::Upsample2 { .. } => Layer::Upsample2,
                });
            }
            Ok(layers)
        };
        let encoder = build("encoder", &enc_l)?;
        let decoder = build("decoder", &dec_l)?;
        Ok(Autoencoder { spec: spec.clone(), encoder, decoder })
    }

    /// `[N, C*T] → [N, K]`.
    pub fn encode(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.encoder.iter().try_fold(x.clone(), |h, l| l.forward(&h))
    }

    /// `[N, K] → [N, C*T]`.
    pub fn decode(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        self.decoder.iter().try_fold(z.clone(), |h, l| l.forward(&h))
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.decode(&self.encode(x)?)
    }

    /// Encodes and also returns the pre-activation `a` of the last ReLU layer of the encoder,
    /// flattened to `[N, n]` (the input of the latent layer is `relu(a)`, flattened).
    fn encode_with_hidden(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let last_relu = self.encoder.iter().rposition(Layer::is_relu).expect("encoder has a ReLU layer");
        let mut h = x.clone();
        let mut pre = None;
        for (i, l) in self.encoder.iter().enumerate() {
            if i == last_relu {
                let a = l.pre_activation(&h)?;
                h = a.relu()?;
                pre = Some(a.flatten_from(1)?);
            } else {
                h = l.forward(&h)?;
            }
        }
        Ok((h, pre.expect("set above")))
    }

    fn latent_weight(&self) -> &Tensor {
        match self.encoder.last() {
            Some(Layer::Dense(l, _)) => l.weight(),
            _ => unreachable!("every encoder ends with a dense latent layer"),
        }
    }

    fn net(layers: &[Layer], kinds: &[LayerKind]) -> Result<Vec<NetLayer>> {
        let vec = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        layers
            .iter()
            .zip(kinds)
            .map(|(l, k)| {
                Ok(match (l, *k) {
                    (Layer::Dense(lin, relu), LayerKind::Dense { i, o, .. }) => NetLayer::Weighted(FloatLayer::Dense {
                        in_features: i,
                        out_features: o,
                        weight: vec(lin.weight())?,
                        bias: vec(lin.bias().context("dense bias")?)?,
                        activation: Activation::from_relu(*relu),
                    }),
                    (Layer::Conv(c, _), LayerKind::Conv { ci, co, stride, pad, in_len, relu }) => {
                        NetLayer::Weighted(FloatLayer::Conv1d {
                            in_channels: ci,
                            out_channels: co,
                            kernel: CONV_KERNEL,
                            stride,
                            padding: pad,
                            in_len,
                            weight: vec(c.weight())?,
                            bias: vec(c.bias().context("conv bias")?)?,
                            activation: Activation::from_relu(relu),
                        })
                    }
                    (_, LayerKind::Reshape { channels, len }) => NetLayer::Reshape { channels, len },
                    (_, LayerKind::Flatten) => NetLayer::Flatten,
                    (_, LayerKind::Upsample2 { channels, len }) => NetLayer::Upsample2 { channels, len },
                    _ => bail!("internal: layer/kind mismatch"),
                })
            })
            .collect()
    }

    /// Encoder layers with their current weights (input `[N, C*T]`, output `[N, K]`).
    pub fn encoder_net(&self) -> Result<Vec<NetLayer>> {
        Self::net(&self.encoder, &self.spec.layout().0)
    }

    /// Decoder layers with their current weights (input `[N, K]`, output `[N, C*T]`).
    pub fn decoder_net(&self) -> Result<Vec<NetLayer>> {
        Self::net(&self.decoder, &self.spec.layout().1)
    }

    /// Runs `f` over `windows` in batches and collects the `[N, out]` results.
    fn batched(&self, windows: &Windows, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Windows> {
        let mut out = Vec::new();
        let mut dim = 0;
        let n = windows.len();
        let mut start = 0;
        while start < n {
            let end = (start + 512).min(n);
            let x = Tensor::from_slice(
                &windows.data[start * windows.dim..end * windows.dim],
                (end - start, windows.dim),
                &Device::Cpu,
            )?;
            let y = f(&x)?;
            dim = y.dim(1)?;
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
            start = end;
        }
        if n == 0 {
            dim = 1;
        }
        Ok(Windows::new(dim, out))
    }

    /// Normalized windows → normalized reconstructions.
    pub fn reconstruct(&self, windows: &Windows) -> Result<Windows> {
        self.batched(windows, |x| self.forward(x))
    }

    pub fn encode_windows(&self, windows: &Windows) -> Result<Windows> {
        self.batched(windows, |x| self.encode(x))
    }

    pub fn decode_latents(&self, latents: &Windows) -> Result<Windows> {
        self.batched(latents, |z| self.decode(z))
    }
}

/// Contractive penalty, per sample, averaged over the batch.
///
/// With `a` the pre-activation of the encoder's last hidden (ReLU) layer, `h = relu(a)` (flattened)
/// and the linear latent layer `z = W h + b`, the Jacobian of the latent w.r.t. `a` is
/// `J = W · diag(m)` with the ReLU mask `m_j = 1[a_j > 0]`, so exactly
/// `‖J‖_F² = Σ_j m_j · Σ_k W_kj²` — the column norms of `W` weighted by the sample's mask.
/// (For the latent layer w.r.t. its own input `h` this reduces to `‖W‖_F²`; including the mask makes
/// the penalty sample dependent as in the contractive autoencoder.) The mask is piecewise constant,
/// so the gradient reaches `W` only, which is the exact gradient almost everywhere.
pub fn contractive_penalty(pre_activation: &Tensor, latent_weight: &Tensor) -> candle_core::Result<Tensor> {
    let mask = pre_activation.gt(0f32)?.to_dtype(DType::F32)?.detach(); // [N, n]
    let col = latent_weight.sqr()?.sum(0)?; // [n]
    mask.broadcast_mul(&col)?.sum(1)?.mean(0)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub variant: Variant,
    pub epochs: usize,
    pub seed: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Early stopping: epochs without validation improvement before stopping.
    pub patience: usize,
    /// `sparse`: weight of the mean |z| penalty.
    pub sparse_weight: f64,
    /// `contractive`: weight of the Jacobian penalty.
    pub contractive_weight: f64,
    /// `denoising`: std of the Gaussian input noise (normalized units).
    pub noise_std: f32,
    /// Training windows start every `train_hop` samples (the window length: no overlap).
    /// Informational here: the caller cuts the windows.
    #[serde(default)]
    pub train_hop: usize,
    /// Show the indicatif progress bar.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            variant: Variant::Plain,
            epochs: 60,
            seed: 1,
            batch_size: 16,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            patience: 8,
            sparse_weight: 1e-3,
            contractive_weight: 1e-3,
            noise_std: 0.1,
            train_hop: 0,
            progress: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Training objective (MSE + weighted variant penalty), mean over minibatches.
    pub train_loss: f64,
    /// The variant's penalty term before weighting (mean |z| for `sparse`, ‖J‖_F² for
    /// `contractive`), mean over minibatches; 0 for `plain` and `denoising`.
    #[serde(default)]
    pub penalty: f64,
    /// Reconstruction MSE on the validation windows (normalized units).
    pub val_loss: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InitReport {
    pub from: String,
    pub loaded: Vec<String>,
    /// `(name, reason)`.
    pub skipped: Vec<(String, String)>,
}

pub struct Trained {
    pub spec: ModelSpec,
    pub varmap: VarMap,
    pub model: Autoencoder,
    pub history: Vec<EpochRecord>,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds_per_epoch: f64,
    pub init: Option<InitReport>,
    /// Validation windows (the last 10 % of the training part).
    pub validation_windows: usize,
}

/// Copies parameters from `dir/model.safetensors` into `varmap` where name and shape match.
pub fn init_from(varmap: &VarMap, dir: &Path) -> Result<InitReport> {
    let path = dir.join("model.safetensors");
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

/// Rebuilds the model described by `spec` and loads `model.safetensors` from `dir`.
pub fn load_model(dir: &Path, spec: &ModelSpec) -> Result<(VarMap, Autoencoder)> {
    let mut varmap = VarMap::new();
    let model = Autoencoder::new(spec, &varmap, 0)?;
    let path = dir.join("model.safetensors");
    ensure!(path.exists(), "{} does not exist", path.display());
    varmap.load(&path).with_context(|| format!("cannot load weights from {}", path.display()))?;
    Ok((varmap, model))
}

fn gaussian(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    // Box–Muller.
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let th = 2.0 * std::f32::consts::PI * u2;
        out.push(r * th.cos());
        out.push(r * th.sin());
    }
    out.truncate(n);
    out
}

/// Number of validation windows out of `n` training-part windows (last 10 %, at least 1).
pub fn validation_count(n: usize) -> usize {
    if n < 2 {
        0
    } else {
        ((n as f64 * 0.1).round() as usize).clamp(1, n - 1)
    }
}

/// One minibatch objective, split into its terms.
pub struct LossTerms {
    /// What is minimized: `reconstruction + weight · penalty`.
    pub total: Tensor,
    /// MSE between the reconstruction (of the possibly noisy input) and the clean target.
    pub reconstruction: f32,
    /// The variant's penalty before weighting (0 for `plain` and `denoising`).
    pub penalty: f32,
}

/// The training objective of `cfg.variant` on the clean normalized batch `target` `[N, C*T]`:
/// * `plain`: MSE(decode(encode(x)), x);
/// * `sparse`: + `sparse_weight` · mean |z| (L1 on the latent activations);
/// * `contractive`: + `contractive_weight` · ‖∂z/∂a‖_F² (see [`contractive_penalty`]);
/// * `denoising`: the input is `x + N(0, noise_std²)` (fresh noise from `rng` every batch), the
///   target stays the clean `x`.
pub fn batch_loss(model: &Autoencoder, cfg: &TrainConfig, target: &Tensor, rng: &mut StdRng) -> Result<LossTerms> {
    let input = if cfg.variant == Variant::Denoising {
        let noise = gaussian(rng, target.elem_count(), cfg.noise_std);
        (target + Tensor::from_vec(noise, target.shape(), target.device())?)?
    } else {
        target.clone()
    };
    let (rec, penalty) = match cfg.variant {
        Variant::Plain | Variant::Denoising => (candle_nn::loss::mse(&model.forward(&input)?, target)?, None),
        Variant::Sparse => {
            let z = model.encode(&input)?;
            let rec = candle_nn::loss::mse(&model.decode(&z)?, target)?;
            (rec, Some((z.abs()?.mean_all()?, cfg.sparse_weight)))
        }
        Variant::Contractive => {
            let (z, pre) = model.encode_with_hidden(&input)?;
            let rec = candle_nn::loss::mse(&model.decode(&z)?, target)?;
            (rec, Some((contractive_penalty(&pre, model.latent_weight())?, cfg.contractive_weight)))
        }
    };
    let reconstruction = rec.to_scalar::<f32>()?;
    Ok(match penalty {
        None => LossTerms { total: rec, reconstruction, penalty: 0.0 },
        Some((p, weight)) => {
            let penalty = p.to_scalar::<f32>()?;
            LossTerms { total: (rec + (p * weight)?)?, reconstruction, penalty }
        }
    })
}

/// Trains on `train_norm` (the normalized training part, time-ordered). The last 10 % of those
/// windows are the validation set for early stopping; the held-out part is never passed here.
pub fn train(spec: &ModelSpec, cfg: &TrainConfig, train_norm: &Windows, init: Option<&Path>) -> Result<Trained> {
    ensure!(!train_norm.is_empty(), "no training windows");
    let n_all = train_norm.len();
    let n_val = validation_count(n_all);
    let n_fit = n_all - n_val;
    let fit = train_norm.slice(0..n_fit);
    // With a single training window there is nothing to hold back: validate on it.
    let val = if n_val == 0 { fit.clone() } else { train_norm.slice(n_fit..n_all) };
    let mut trained = train_on(spec, cfg, &fit, &val, init)?;
    trained.validation_windows = n_val;
    Ok(trained)
}

/// Trains on the normalized windows `fit` with early stopping on the reconstruction MSE of `val`
/// (which must not overlap `fit` in time). Keeps the weights of the best validation epoch.
pub fn train_on(
    spec: &ModelSpec,
    cfg: &TrainConfig,
    fit: &Windows,
    val: &Windows,
    init: Option<&Path>,
) -> Result<Trained> {
    ensure!(fit.dim == spec.input_len() && val.dim == spec.input_len(), "internal: window size mismatch");
    ensure!(!fit.is_empty(), "no training windows");
    ensure!(!val.is_empty(), "no validation windows");
    ensure!(cfg.epochs >= 1, "--epochs must be at least 1");
    ensure!(cfg.batch_size >= 1, "batch size must be at least 1");
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = Autoencoder::new(spec, &varmap, cfg.seed)?;
    let init_report = match init {
        Some(dir) => Some(init_from(&varmap, dir)?),
        None => None,
    };
    let n_fit = fit.len();
    let val_x = Tensor::from_slice(&val.data, (val.len(), val.dim), &dev)?;

    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = candle_nn::AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        candle_nn::ParamsAdamW { lr: cfg.learning_rate, weight_decay: cfg.weight_decay, ..Default::default() },
    )?;

    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n_fit).collect();
    let pb = if cfg.progress {
        let pb = indicatif::ProgressBar::new(cfg.epochs as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg} ETA {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb.set_prefix("training");
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };

    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Vec<Tensor>)> = None;
    let mut since_best = 0;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let (mut sum, mut pen_sum, mut batches) = (0.0f64, 0.0f64, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            let mut xb = Vec::with_capacity(chunk.len() * fit.dim);
            for &i in chunk {
                xb.extend_from_slice(fit.get(i));
            }
            let target = Tensor::from_vec(xb, (chunk.len(), fit.dim), &dev)?;
            let terms = batch_loss(&model, cfg, &target, &mut rng)?;
            let loss = terms.total;
            pen_sum += terms.penalty as f64;
            opt.backward_step(&loss)?;
            sum += loss.to_scalar::<f32>()? as f64;
            batches += 1;
        }
        let train_loss = sum / batches.max(1) as f64;
        let val_loss = candle_nn::loss::mse(&model.forward(&val_x)?, &val_x)?.to_scalar::<f32>()? as f64;
        ensure!(
            train_loss.is_finite() && val_loss.is_finite(),
            "training diverged at epoch {epoch} (train loss {train_loss}, val loss {val_loss})"
        );
        let seconds = t0.elapsed().as_secs_f64();
        let penalty = pen_sum / batches.max(1) as f64;
        history.push(EpochRecord { epoch, train_loss, penalty, val_loss, seconds });
        pb.set_message(format!("train {train_loss:.5} val {val_loss:.5} ({seconds:.2} s/epoch)"));
        pb.inc(1);
        if best.as_ref().is_none_or(|(b, _, _)| val_loss < *b) {
            let snapshot = vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<Vec<_>>>()?;
            best = Some((val_loss, epoch, snapshot));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience {
                break;
            }
        }
    }
    pb.finish();
    let (_, best_epoch, snapshot) = best.context("no epoch ran")?;
    for ((_, var), t) in vars.iter().zip(snapshot) {
        var.set(&t)?;
    }
    let epochs_run = history.len();
    let seconds_per_epoch = history.iter().map(|h| h.seconds).sum::<f64>() / epochs_run.max(1) as f64;
    Ok(Trained {
        spec: spec.clone(),
        varmap,
        model,
        history,
        best_epoch,
        epochs_run,
        seconds_per_epoch,
        init: init_report,
        validation_windows: val.len(),
    })
}

/// The trained encoder as [`FloatEncoder`] (reshape/flatten steps vanish: the layouts agree).
pub fn encoder_to_float(model: &Autoencoder) -> Result<FloatEncoder> {
    let layers = model
        .encoder_net()?
        .into_iter()
        .filter_map(|l| match l {
            NetLayer::Weighted(layer) => Some(layer),
            NetLayer::Reshape { .. } | NetLayer::Flatten | NetLayer::Upsample2 { .. } => None,
        })
        .collect();
    Ok(FloatEncoder { channels: model.spec.channels, window: model.spec.window, layers })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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

    #[test]
    fn conv_window_must_be_divisible_by_4() {
        let e = ModelSpec::new(Arch::Conv, 1, 30, 4).unwrap_err().to_string();
        assert!(e.contains("--window 30") && e.contains("divisible") && e.contains("try 28 or 32"), "{e}");
        let e = ModelSpec::new(Arch::Conv, 1, 2, 1).unwrap_err().to_string();
        assert!(e.contains("--window 2") && e.contains("try 4"), "{e}");
        assert!(ModelSpec::new(Arch::Conv, 2, 32, 4).is_ok());
    }

    #[test]
    fn mlp_sizes_fit_the_device() {
        for (c, t, k) in [(1, 128, 12), (1, 256, 16), (3, 256, 16), (1, 1024, 32), (16, 16, 64)] {
            let s = ModelSpec::new(Arch::Mlp, c, t, k).unwrap();
            let (h1, h2) = (s.hidden[0], s.hidden[1]);
            let weights = c * t * h1 + h1 * h2 + h2 * k;
            assert_eq!(weights, s.encoder_weights());
            assert!(weights <= ENCODER_WEIGHT_BUDGET, "{c}x{t}: {weights}");
            assert!(h1 >= h2 && h2 >= k, "{c}x{t}: {:?}", s.hidden);
            // The widest layer (multiple of 8) that fits is chosen.
            assert!(
                h1 == MLP_MAX_HIDDEN.min(c * t / 2) || {
                    let h = (h1 / 8 + 1) * 8;
                    c * t * h + h * (h / 2).max(k) + (h / 2).max(k) * k > ENCODER_WEIGHT_BUDGET
                }
            );
        }
        assert_eq!(ModelSpec::new(Arch::Mlp, 1, 128, 12).unwrap().hidden, vec![64, 32]);
        assert_eq!(ModelSpec::new(Arch::Mlp, 1, 256, 16).unwrap().hidden, vec![120, 60]);
        // 8 channels × 512 samples cannot reach 32 codes within the budget: a clear error.
        let e = ModelSpec::new(Arch::Mlp, 8, 512, 32).unwrap_err().to_string();
        assert!(e.contains("--window 512") && e.contains("--latent 32") && e.contains("budget"), "{e}");
        let e = ModelSpec::new(Arch::Conv, 1, 2048, 32).unwrap_err().to_string();
        assert!(e.contains("budget"), "{e}");
        let e = ModelSpec::new(Arch::Mlp, 1, 256, 65).unwrap_err().to_string();
        assert!(e.contains("--latent 65") && e.contains("64"), "{e}");
        let e = ModelSpec::new(Arch::Mlp, 1, 16, 16).unwrap_err().to_string();
        assert!(e.contains("--latent 16"), "{e}");
        let e = ModelSpec::new(Arch::Mlp, 17, 16, 4).unwrap_err().to_string();
        assert!(e.contains("17 --column"), "{e}");
        // The conv encoder of a typical ECG model stays small.
        assert!(ModelSpec::new(Arch::Conv, 1, 256, 16).unwrap().encoder_weights() < 20_000);
    }

    fn assert_float_matches(arch: Arch) {
        let spec = ModelSpec::new(arch, 2, 32, 6).unwrap();
        let varmap = VarMap::new();
        let model = Autoencoder::new(&spec, &varmap, 3).unwrap();
        let w = sine_windows(5, 2, 32, 9);
        let z = model.encode_windows(&w).unwrap();
        let fe = encoder_to_float(&model).unwrap();
        assert_eq!(fe.latent(), 6);
        let mut max = 0f32;
        for i in 0..w.len() {
            for (a, b) in fe.forward(w.get(i)).iter().zip(z.get(i)) {
                max = max.max((a - b).abs());
            }
        }
        assert!(max <= 1e-4, "{arch}: max abs diff {max}");
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
        let a = train(&spec, &quick_cfg(Variant::Plain), &w, None).unwrap();
        let first = a.history[0].val_loss;
        let best = a.history.iter().map(|h| h.val_loss).fold(f64::INFINITY, f64::min);
        assert!(best < 0.3 * first, "val loss {first} -> {best}");
        let b = train(&spec, &quick_cfg(Variant::Plain), &w, None).unwrap();
        let losses = |t: &Trained| t.history.iter().map(|h| (h.train_loss, h.val_loss)).collect::<Vec<_>>();
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
                let t = train(&spec, &cfg, &w, None).unwrap();
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
    fn init_loads_matching_weights_and_reports_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let w = sine_windows(20, 1, 32, 4);
        let spec = ModelSpec::new(Arch::Mlp, 1, 32, 4).unwrap();
        let a = train(&spec, &TrainConfig { epochs: 2, ..quick_cfg(Variant::Plain) }, &w, None).unwrap();
        a.varmap.save(dir.path().join("model.safetensors")).unwrap();
        // Same model: everything loads; reload gives identical outputs.
        let (_, m) = load_model(dir.path(), &spec).unwrap();
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
