//! The autoencoders in candle (`mlp`, `conv`), built from a [`ModelSpec`] layout, and the
//! training objective of each variant.
//!
//! Every model takes a batch of normalized windows `[N, C*T]` (each window channels-first `[C][T]`
//! flattened channel-major) and reconstructs the same shape. The conv models reshape to
//! `[N, C, T]` internally.
//!
//! Parameter names in `model.safetensors` are `encoder.l{i}.weight|bias` and
//! `decoder.l{i}.weight|bias` where `i` is the index of the layer in the spec's layout.

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Conv1d, Conv1dConfig, Linear, VarMap};
use funnel_artifacts::net::NetLayer;
use funnel_artifacts::spec::{LayerKind, ModelSpec, Variant, CONV_KERNEL};
use funnel_artifacts::training::TrainConfig;
use funnel_artifacts::{FloatNet, Windows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

pub(super) fn new_param(varmap: &VarMap, name: &str, t: Tensor) -> Result<Tensor> {
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
    pub(super) fn encode_with_hidden(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let Some(last_relu) = self.encoder.iter().rposition(Layer::is_relu) else {
            candle_core::bail!("the {} encoder has no hidden layer to contract", self.spec.arch)
        };
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

    pub(super) fn latent_weight(&self) -> &Tensor {
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
                let (weight, bias) = match l {
                    Layer::Dense(lin, _) => (vec(lin.weight())?, vec(lin.bias().context("dense bias")?)?),
                    Layer::Conv(c, _) => (vec(c.weight())?, vec(c.bias().context("conv bias")?)?),
                    Layer::Reshape(..) | Layer::Flatten | Layer::Upsample2 => (Vec::new(), Vec::new()),
                };
                Ok(NetLayer::with_weights(*k, weight, bias))
            })
            .collect()
    }

    /// The network with its current weights as plain arrays (what export and quantization read).
    pub fn float_net(&self) -> Result<FloatNet> {
        let (encoder, decoder) = self.spec.layout();
        Ok(FloatNet {
            spec: self.spec.clone(),
            encoder: Self::net(&self.encoder, &encoder)?,
            decoder: Self::net(&self.decoder, &decoder)?,
            beyond_range: None,
        })
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
