//! Rate–distortion training, the learned-transform-coding recipe: the codes live on the integer
//! grid the device rounds to; during training, rounding is stood in for by uniform noise of one
//! step, a learned density per code ([`CodePrior`]) turns the noisy codes into a differentiable
//! rate, and the objective is `D + λ·R` with λ steered so that the rate lands on the target
//! ([`RateController`]).

use anyhow::{ensure, Result};
use candle_core::Tensor;
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::Rng;

use super::model::{new_param, Autoencoder};

/// A logistic density per code, `p(y) = σ((y + ½ − μ)/s) − σ((y − ½ − μ)/s)`: the probability
/// of the unit bin around `y`, which for a noisy code `y + u` is the density of the rounded code
/// convolved with the noise — the rate model of a factorized entropy coder. Its parameters
/// (`prior.mean`, `prior.log_scale`) train with the network; the device's tables are fitted to
/// the real codes afterwards, so the prior only has to be right enough to steer training.
pub struct CodePrior {
    mean: Tensor,
    log_scale: Tensor,
}

/// Smallest bin probability the rate term counts (about 30 bits): keeps the logarithm finite.
const MIN_PROBABILITY: f64 = 1e-9;

impl CodePrior {
    /// The prior of the codes `[N, K]` a network starts with, fitted to them (the logistic with
    /// their mean and standard deviation), its parameters in `varmap`: a prior far from the
    /// codes would first charge, and so steer, the wrong rate.
    pub fn fitted(varmap: &VarMap, codes: &Tensor) -> Result<CodePrior> {
        let mean = codes.mean(0)?;
        let std = codes.broadcast_sub(&mean)?.sqr()?.mean(0)?.sqrt()?;
        // A logistic of scale s has standard deviation s·π/√3.
        let log_scale = (std * (3f64.sqrt() / std::f64::consts::PI))?.maximum(0.1)?.log()?;
        Ok(CodePrior {
            mean: new_param(varmap, "prior.mean", mean)?,
            log_scale: new_param(varmap, "prior.log_scale", log_scale)?,
        })
    }

    /// Bits of every code of `codes` `[N, K]`, as `[N, K]`.
    pub fn bits(&self, codes: &Tensor) -> candle_core::Result<Tensor> {
        let scale = self.log_scale.exp()?;
        // The logistic is symmetric: both bin edges are taken on the side of the lower tail,
        // where σ keeps its precision (σ(a) − σ(b) of two numbers near 1 would cancel).
        let distance = codes.broadcast_sub(&self.mean)?.abs()?.broadcast_div(&scale)?.neg()?;
        let half = scale.recip()?.affine(0.5, 0.0)?;
        let upper = candle_nn::ops::sigmoid(&distance.broadcast_add(&half)?)?;
        let lower = candle_nn::ops::sigmoid(&distance.broadcast_sub(&half)?)?;
        let p = (upper - lower)?.maximum(MIN_PROBABILITY)?;
        p.log()?.affine(-1.0 / std::f64::consts::LN_2, 0.0)
    }
}

/// Uniform noise of one code step, `U(−½, ½)`, shaped like `codes`, from `rng` (so that a seed
/// gives the same run).
pub fn quantization_noise(codes: &Tensor, rng: &mut StdRng) -> candle_core::Result<Tensor> {
    let noise: Vec<f32> = (0..codes.elem_count()).map(|_| rng.random_range(-0.5f32..0.5)).collect();
    Tensor::from_vec(noise, codes.shape(), codes.device())
}

/// The terms of one minibatch under rate–distortion training.
pub struct RdTerms {
    /// `D + λ·R`, what is minimized.
    pub total: Tensor,
    /// Estimated rate of the codes, bits per sample.
    pub rate: f64,
}

/// `D + λ·R` of the clean normalized batch `x` `[N, C*T]`: the codes get one step of uniform
/// noise, `D` is the MSE of what the decoder rebuilds from them, `R` their bits under `prior`
/// per sample of the window.
pub fn rd_loss(model: &Autoencoder, prior: &CodePrior, x: &Tensor, lambda: f64, rng: &mut StdRng) -> Result<RdTerms> {
    let codes = model.encode(x)?;
    let noisy = (&codes + quantization_noise(&codes, rng)?)?;
    let distortion = candle_nn::loss::mse(&model.decode(&noisy)?, x)?;
    let rate = (prior.bits(&noisy)?.sum_all()? / x.elem_count() as f64)?;
    let total = (&distortion + (&rate * lambda)?)?;
    Ok(RdTerms { total, rate: f64::from(rate.to_scalar::<f32>()?) })
}

/// What the rounded codes of `x` cost and rebuild: `(MSE, bits per sample)` — the device's
/// view, without noise.
pub fn rd_of_rounded(model: &Autoencoder, prior: &CodePrior, x: &Tensor) -> Result<(f64, f64)> {
    let codes = model.encode(x)?.round()?;
    let distortion = candle_nn::loss::mse(&model.decode(&codes)?, x)?.to_scalar::<f32>()?;
    let rate = prior.bits(&codes)?.sum_all()?.to_scalar::<f32>()? / x.elem_count() as f32;
    Ok((f64::from(distortion), f64::from(rate)))
}

/// The distortion a model at `rate` would have at `target`, by the 6 dB-per-bit rule of high
/// rate quantization (`D ∝ 2^(−2R)`): how runs at slightly different rates are compared, for
/// early stopping while λ still moves.
pub fn distortion_at_rate(distortion: f64, rate: f64, target: f64) -> f64 {
    distortion * (2.0 * (rate - target)).exp2()
}

/// Dual ascent on λ: after each minibatch, λ grows when the rate is above the target and
/// shrinks when below, by a factor `exp(g · (R − B)/B)`, `g` the gain per epoch spread over
/// its minibatches.
#[derive(Clone, Debug)]
pub struct RateController {
    pub target: f64,
    pub lambda: f64,
    gain: f64,
}

/// How fast λ follows the rate, per epoch: a rate 10 % off moves λ by 10 % in an epoch; faster
/// and λ and the rate chase each other.
const LAMBDA_GAIN_PER_EPOCH: f64 = 1.0;
/// λ stays within these bounds (normalized MSE per bit per sample).
const LAMBDA_RANGE: (f64, f64) = (1e-7, 1e2);

impl RateController {
    /// Starts at the slope of the 6 dB-per-bit rule at distortion `d0`: `|dD/dR| = 2 ln 2 · D`;
    /// an epoch has `batches` minibatches.
    pub fn new(target: f64, d0: f64, batches: usize) -> Result<RateController> {
        ensure!(target.is_finite() && target > 0.0, "the codes' target rate must be positive (got {target})");
        let lambda = (2.0 * std::f64::consts::LN_2 * d0).clamp(LAMBDA_RANGE.0, LAMBDA_RANGE.1);
        Ok(RateController { target, lambda, gain: LAMBDA_GAIN_PER_EPOCH / batches.max(1) as f64 })
    }

    pub fn update(&mut self, rate: f64) {
        let factor = (self.gain * (rate - self.target) / self.target).clamp(-1.0, 1.0).exp();
        self.lambda = (self.lambda * factor).clamp(LAMBDA_RANGE.0, LAMBDA_RANGE.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use rand::SeedableRng;

    #[test]
    fn prior_bits_are_the_logistic_bin_probability() {
        let varmap = VarMap::new();
        // Fitted to codes of mean 0 and standard deviation π/√3: the standard logistic.
        let sd = std::f32::consts::PI / 3f32.sqrt();
        let start = Tensor::new(&[[sd, sd], [-sd, -sd]], &Device::Cpu).unwrap();
        let prior = CodePrior::fitted(&varmap, &start).unwrap();
        let codes = Tensor::new(&[[0.0f32, 3.0], [-3.0, 40.0]], &Device::Cpu).unwrap();
        let bits: Vec<Vec<f32>> = prior.bits(&codes).unwrap().to_vec2().unwrap();
        let sigma = |v: f64| 1.0 / (1.0 + (-v).exp());
        let expected = |y: f64| -(sigma(y + 0.5) - sigma(y - 0.5)).log2();
        for (got, y) in [(bits[0][0], 0.0), (bits[0][1], 3.0), (bits[1][0], -3.0)] {
            assert!((f64::from(got) - expected(y)).abs() < 1e-4, "{y}: {got} vs {}", expected(y));
        }
        // Far in the tail the probability is floored, not zero: finite bits.
        assert!((f64::from(bits[1][1]) + MIN_PROBABILITY.log2()).abs() < 1e-3, "{}", bits[1][1]);
        // Symmetric around the mean.
        assert_eq!(bits[0][1], bits[1][0]);
    }

    #[test]
    fn the_rate_term_reaches_the_codes_and_the_prior() {
        let varmap = VarMap::new();
        let prior = CodePrior::fitted(&varmap, &Tensor::new(&[[1.0f32], [-1.0]], &Device::Cpu).unwrap()).unwrap();
        let codes = candle_core::Var::new(&[[2.0f32], [-1.0]], &Device::Cpu).unwrap();
        let bits = prior.bits(codes.as_tensor()).unwrap().sum_all().unwrap();
        let grads = bits.backward().unwrap();
        let g: Vec<Vec<f32>> = grads.get(codes.as_tensor()).unwrap().to_vec2().unwrap();
        // Moving a code towards the mean makes it cheaper.
        assert!(g[0][0] > 0.0 && g[1][0] < 0.0, "{g:?}");
        let data = varmap.data().lock().unwrap();
        let scale_grad = grads.get(data["prior.log_scale"].as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!(scale_grad[0] != 0.0);
    }

    #[test]
    fn noise_is_one_step_wide_and_seeded() {
        let codes = Tensor::zeros((50, 4), DType::F32, &Device::Cpu).unwrap();
        let a = quantization_noise(&codes, &mut StdRng::seed_from_u64(3)).unwrap().flatten_all().unwrap();
        let b = quantization_noise(&codes, &mut StdRng::seed_from_u64(3)).unwrap().flatten_all().unwrap();
        let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
        assert!(a.iter().any(|v| *v > 0.4) && a.iter().any(|v| *v < -0.4));
    }

    #[test]
    fn lambda_follows_the_rate() {
        let mut c = RateController::new(1.0, 0.01, 10).unwrap();
        let start = c.lambda;
        c.update(2.0);
        assert!(c.lambda > start);
        c.update(0.5);
        c.update(0.5);
        c.update(0.5);
        assert!(c.lambda < start);
        // An epoch of minibatches 10 % over the target raises λ by about 10 %.
        let mut c = RateController::new(1.0, 0.01, 50).unwrap();
        (0..50).for_each(|_| c.update(1.1));
        assert!((c.lambda / start - 0.1f64.exp()).abs() < 1e-9, "{}", c.lambda / start);
        assert!(RateController::new(0.0, 0.01, 1).is_err());
        assert!(distortion_at_rate(1.0, 1.5, 1.0) > 1.9 && distortion_at_rate(1.0, 1.0, 1.0) == 1.0);
    }
}
