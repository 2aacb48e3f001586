//! The shape of an autoencoder: architecture, sizes and the layer list, without weights. The
//! trainer builds its network from it and the card stores it, so a checkpoint can be rebuilt.

use serde::{Deserialize, Serialize};

/// A requested shape the device cannot take; the message names the flag to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub message: String,
}

/// `bail!` for [`SpecError`].
macro_rules! bail {
    ($($fmt:tt)+) => {
        return Err(SpecError { message: format!($($fmt)+) })
    };
}

/// `ensure!` for [`SpecError`].
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            bail!($($fmt)+);
        }
    };
}

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
/// Hidden units of the transform decoder per code: two carry the code's positive and negative
/// part (the exact inverse transform at initialization), two more learn what it is not.
pub const TRANSFORM_HIDDEN_PER_CODE: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Mlp,
    Conv,
    /// A transform coder: one linear layer on the device (initialized from the training part's
    /// principal components), a one-hidden-layer ReLU decoder on the host (initialized to the
    /// exact inverse of that transform, then trained beyond it). Up to one code per sample.
    Transform,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    #[default]
    Plain,
    /// L1 penalty on the latent activations.
    Sparse,
    /// Frobenius norm of the last encoder layer's Jacobian (see `funnel::train::contractive_penalty`).
    Contractive,
    /// Gaussian noise on the inputs, clean targets.
    Denoising,
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Mlp => "mlp",
            Arch::Conv => "conv",
            Arch::Transform => "transform",
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

impl std::str::FromStr for Arch {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Arch, SpecError> {
        match s {
            "mlp" => Ok(Arch::Mlp),
            "conv" => Ok(Arch::Conv),
            "transform" => Ok(Arch::Transform),
            _ => bail!("unknown architecture {s:?} (mlp, conv or transform)"),
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Variant, SpecError> {
        match s {
            "plain" => Ok(Variant::Plain),
            "sparse" => Ok(Variant::Sparse),
            "contractive" => Ok(Variant::Contractive),
            "denoising" => Ok(Variant::Denoising),
            _ => bail!("unknown variant {s:?} (plain, sparse, contractive or denoising)"),
        }
    }
}

/// Shape of an autoencoder: everything needed to rebuild it from a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    pub channels: usize,
    pub window: usize,
    pub latent: usize,
    /// `mlp`: the two hidden widths `[h1, h2]`; `conv`: the conv channels `[8, 16]`;
    /// `transform`: the decoder's hidden width `[h]`.
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
    pub fn new(arch: Arch, channels: usize, window: usize, latent: usize) -> Result<ModelSpec, SpecError> {
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
        // A transform coder may keep as many codes as samples: its rate comes from how coarse
        // the codes are and from entropy coding, not from dropping dimensions.
        ensure!(
            latent < d || (arch == Arch::Transform && latent == d),
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
            Arch::Transform => {
                let weights = d * latent;
                ensure!(
                    weights <= ENCODER_WEIGHT_BUDGET,
                    "--arch transform with --window {window} × {channels} channel(s) and --latent {latent} needs \
                     {weights} int8 encoder weights, more than the device budget of {ENCODER_WEIGHT_BUDGET}; use a \
                     smaller --window or --latent"
                );
                vec![TRANSFORM_HIDDEN_PER_CODE * latent]
            }
        };
        Ok(ModelSpec { arch, channels, window, latent, hidden })
    }

    /// Checks a stored shape (e.g. read from a card): the sizes within what the device takes,
    /// and the hidden sizes the ones [`ModelSpec::new`] gives this architecture — a hand-edited
    /// or corrupted card must not build a network of arbitrary size.
    pub fn check(&self) -> Result<(), SpecError> {
        let canonical = ModelSpec::new(self.arch, self.channels, self.window, self.latent)?;
        ensure!(
            canonical.hidden == self.hidden,
            "hidden sizes {:?} are not those of a {} model with {} channel(s) × {} samples → {} codes ({:?})",
            self.hidden,
            self.arch,
            self.channels,
            self.window,
            self.latent,
            canonical.hidden
        );
        Ok(())
    }

    /// Number of encoder weights (= int8 bytes on the device, biases not counted).
    pub fn encoder_weights(&self) -> usize {
        self.layout().0.iter().map(|l| l.parameter_counts().map_or(0, |(weights, _, _)| weights)).sum()
    }

    pub fn input_len(&self) -> usize {
        self.channels * self.window
    }

    /// Abstract layer list (no weights): encoder, decoder.
    pub fn layout(&self) -> (Vec<LayerKind>, Vec<LayerKind>) {
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
            Arch::Transform => {
                let d = c * t;
                (
                    vec![LayerKind::Dense { i: d, o: k, relu: false }],
                    vec![
                        LayerKind::Dense { i: k, o: self.hidden[0], relu: true },
                        LayerKind::Dense { i: self.hidden[0], o: d, relu: false },
                    ],
                )
            }
        }
    }
}

/// One layer of [`ModelSpec::layout`], without weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    Dense { i: usize, o: usize, relu: bool },
    Conv { ci: usize, co: usize, stride: usize, pad: usize, in_len: usize, relu: bool },
    Reshape { channels: usize, len: usize },
    Flatten,
    Upsample2 { channels: usize, len: usize },
}

impl LayerKind {
    /// `(weights, biases, fan_in)` of a dense or conv layer; `None` for shape steps.
    pub fn parameter_counts(&self) -> Option<(usize, usize, usize)> {
        match *self {
            LayerKind::Dense { i, o, .. } => Some((i * o, o, i)),
            LayerKind::Conv { ci, co, .. } => Some((co * ci * CONV_KERNEL, co, ci * CONV_KERNEL)),
            LayerKind::Reshape { .. } | LayerKind::Flatten | LayerKind::Upsample2 { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn transform_keeps_up_to_one_code_per_sample_within_the_budget() {
        let t = ModelSpec::new(Arch::Transform, 1, 64, 64).unwrap();
        assert_eq!(t.hidden, vec![TRANSFORM_HIDDEN_PER_CODE * 64]);
        assert_eq!(t.encoder_weights(), 64 * 64);
        let (encoder, decoder) = t.layout();
        assert_eq!(encoder, vec![LayerKind::Dense { i: 64, o: 64, relu: false }]);
        assert_eq!(decoder.len(), 2);
        assert!(t.check().is_ok());
        // Not more codes than samples, and not more weights than the device holds.
        assert!(ModelSpec::new(Arch::Transform, 1, 32, 33).unwrap_err().message.contains("--latent 33"));
        let e = ModelSpec::new(Arch::Transform, 1, 1024, 64).unwrap_err().message;
        assert!(e.contains("budget") && e.contains("--window 1024"), "{e}");
        // The other architectures still need fewer codes than samples.
        assert!(ModelSpec::new(Arch::Mlp, 1, 16, 16).is_err());
        assert_eq!("transform".parse::<Arch>().unwrap(), Arch::Transform);
    }

    #[test]
    fn a_stored_shape_is_checked() {
        let good = ModelSpec::new(Arch::Mlp, 1, 256, 16).unwrap();
        assert!(good.check().is_ok());
        let e = ModelSpec { hidden: vec![4_294_967_295, 60], ..good.clone() }.check().unwrap_err();
        assert!(e.message.contains("4294967295") && e.message.contains("[120, 60]"), "{e}");
        let e = ModelSpec { window: 1 << 31, ..good.clone() }.check().unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
        assert!(ModelSpec { hidden: vec![120], ..good }.check().is_err());
    }
}
