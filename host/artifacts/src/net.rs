//! The trained network as plain `f32` arrays: the narrow type between training (candle) and
//! ONNX export / int8 quantization, so neither depends on the training framework.
//!
//! Layouts follow ONNX/PyTorch: activations are channels-first `[C][T]`, a dense layer that
//! follows a convolution sees the `[C][T]` tensor flattened channel-major (`c * T + t`).

use serde::{Deserialize, Serialize};

use crate::spec::{LayerKind, ModelSpec, CONV_KERNEL};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Identity,
    Relu,
}

impl Activation {
    pub fn from_relu(relu: bool) -> Activation {
        if relu {
            Activation::Relu
        } else {
            Activation::Identity
        }
    }

    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FloatLayer {
    /// `y[o] = act(bias[o] + Σ_i weight[o * in_features + i] · x[i])`
    Dense {
        in_features: usize,
        out_features: usize,
        /// Row-major `[out_features][in_features]`.
        weight: Vec<f32>,
        bias: Vec<f32>,
        activation: Activation,
    },
    /// `y[o][t] = act(bias[o] + Σ_c Σ_k weight[(o * in_channels + c) * kernel + k] · x[c][t·stride + k − padding])`
    /// with zeros outside `0..in_len`.
    Conv1d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        /// Input length `T` of this layer.
        in_len: usize,
        /// `[out_channels][in_channels][kernel]`.
        weight: Vec<f32>,
        bias: Vec<f32>,
        activation: Activation,
    },
}

impl FloatLayer {
    pub fn input_len(&self) -> usize {
        match self {
            FloatLayer::Dense { in_features, .. } => *in_features,
            FloatLayer::Conv1d { in_channels, in_len, .. } => in_channels * in_len,
        }
    }

    pub fn output_len(&self) -> usize {
        match self {
            FloatLayer::Dense { out_features, .. } => *out_features,
            FloatLayer::Conv1d { out_channels, .. } => out_channels * self.conv_out_len(),
        }
    }

    pub fn activation(&self) -> Activation {
        match self {
            FloatLayer::Dense { activation, .. } | FloatLayer::Conv1d { activation, .. } => *activation,
        }
    }

    /// Output length `T'` of a convolution; 0 for dense layers.
    pub fn conv_out_len(&self) -> usize {
        match self {
            FloatLayer::Dense { .. } => 0,
            FloatLayer::Conv1d { kernel, stride, padding, in_len, .. } => {
                (in_len + 2 * padding).saturating_sub(*kernel) / stride + 1
            }
        }
    }

    /// Reference forward pass of one layer.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), self.input_len(), "layer input length");
        match self {
            FloatLayer::Dense { in_features, out_features, weight, bias, activation } => (0..*out_features)
                .map(|o| {
                    let row = &weight[o * in_features..(o + 1) * in_features];
                    activation.apply(bias[o] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
                })
                .collect(),
            FloatLayer::Conv1d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                in_len,
                weight,
                bias,
                activation,
            } => {
                let out_len = self.conv_out_len();
                let mut y = Vec::with_capacity(out_channels * out_len);
                for o in 0..*out_channels {
                    for t in 0..out_len {
                        let mut acc = bias[o];
                        for c in 0..*in_channels {
                            for k in 0..*kernel {
                                let pos = (t * stride + k) as isize - *padding as isize;
                                if pos >= 0 && (pos as usize) < *in_len {
                                    acc += weight[(o * in_channels + c) * kernel + k] * x[c * in_len + pos as usize];
                                }
                            }
                        }
                        y.push(activation.apply(acc));
                    }
                }
                y
            }
        }
    }
}

/// The encoder half of a trained autoencoder: normalized window in (`[C][T]`), latent out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloatEncoder {
    pub channels: usize,
    pub window: usize,
    pub layers: Vec<FloatLayer>,
}

impl FloatEncoder {
    pub fn latent(&self) -> usize {
        self.layers.last().map_or(0, FloatLayer::output_len)
    }

    /// Runs the encoder and returns every layer's output (the last one is the latent vector).
    /// Quantization calibrates activation ranges from these.
    pub fn forward_all(&self, normalized_window: &[f32]) -> Vec<Vec<f32>> {
        let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let input = outputs.last().map_or(normalized_window, Vec::as_slice);
            outputs.push(layer.forward(input));
        }
        outputs
    }

    pub fn forward(&self, normalized_window: &[f32]) -> Vec<f32> {
        self.forward_all(normalized_window).pop().unwrap_or_default()
    }
}

/// A step of a float network: a layer with weights, or a shape change between them.
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

impl NetLayer {
    /// The layer `kind` of a spec's layout with its weights: `weight` row-major `[out][in]`
    /// (dense) or `[out][in][kernel]` (conv) and `bias` `[out]`, of the sizes
    /// [`LayerKind::parameter_counts`] gives; shape steps take none (empty vectors).
    pub fn with_weights(kind: LayerKind, weight: Vec<f32>, bias: Vec<f32>) -> NetLayer {
        match kind {
            LayerKind::Dense { i, o, relu } => NetLayer::Weighted(FloatLayer::Dense {
                in_features: i,
                out_features: o,
                weight,
                bias,
                activation: Activation::from_relu(relu),
            }),
            LayerKind::Conv { ci, co, stride, pad, in_len, relu } => NetLayer::Weighted(FloatLayer::Conv1d {
                in_channels: ci,
                out_channels: co,
                kernel: CONV_KERNEL,
                stride,
                padding: pad,
                in_len,
                weight,
                bias,
                activation: Activation::from_relu(relu),
            }),
            LayerKind::Reshape { channels, len } => NetLayer::Reshape { channels, len },
            LayerKind::Flatten => NetLayer::Flatten,
            LayerKind::Upsample2 { channels, len } => NetLayer::Upsample2 { channels, len },
        }
    }

    /// Reference forward pass of one window (flattened; reshape and flatten keep the layout).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        match self {
            NetLayer::Weighted(layer) => layer.forward(x),
            NetLayer::Reshape { .. } | NetLayer::Flatten => x.to_vec(),
            NetLayer::Upsample2 { channels, len } => {
                (0..channels * len * 2).map(|i| x[(i / (2 * len)) * len + (i % (2 * len)) / 2]).collect()
            }
        }
    }
}

/// A trained autoencoder with its weights: encoder `[N, C*T] → [N, K]`, decoder back.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatNet {
    pub spec: ModelSpec,
    pub encoder: Vec<NetLayer>,
    pub decoder: Vec<NetLayer>,
    /// How the receiver's decoder (`decoder.onnx`) rebuilds codes beyond the training part's;
    /// `None`: with the decoder network alone.
    pub beyond_range: Option<LinearInverse>,
}

/// The linear inverse of a linear encoder, for codes beyond every value the training part gave
/// them. A decoder tuned to codes at a fixed step learns to shrink what it rebuilds by the
/// training part's signal-to-noise ratio; on a signal much louder than anything in training
/// (an earthquake on a seismometer that recorded a quiet day) the shrinkage grows with the
/// signal, while the codes, on the same grid, carry the loud signal more precisely than ever.
/// A window with any code beyond its latent's training range is rebuilt by the encoder's
/// pseudo-inverse instead: the codes, linearly undone.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearInverse {
    /// Per latent: the largest magnitude its (dequantized) codes reached on the training part.
    pub code_limit: Vec<f32>,
    /// `[values][latent]`, row-major: the encoder weight's pseudo-inverse.
    pub weight: Vec<f32>,
    /// `[values]`: what the pseudo-inverse makes of the encoder's bias, negated.
    pub bias: Vec<f32>,
}

impl LinearInverse {
    /// Some code of `latent` lies beyond its limit.
    pub fn is_beyond(&self, latent: &[f32]) -> bool {
        latent.iter().zip(&self.code_limit).any(|(c, limit)| c.abs() > *limit)
    }

    /// The window the encoder maps to `latent`, as near as a linear map can tell.
    pub fn rebuild(&self, latent: &[f32]) -> Vec<f32> {
        let k = latent.len().max(1);
        self.weight
            .chunks(k)
            .zip(&self.bias)
            .map(|(row, b)| b + row.iter().zip(latent).map(|(w, c)| w * c).sum::<f32>())
            .collect()
    }
}

impl FloatNet {
    /// The encoder half as [`FloatEncoder`] (reshape/flatten steps vanish: the layouts agree).
    pub fn float_encoder(&self) -> FloatEncoder {
        let layers = self
            .encoder
            .iter()
            .filter_map(|l| match l {
                NetLayer::Weighted(layer) => Some(layer.clone()),
                NetLayer::Reshape { .. } | NetLayer::Flatten | NetLayer::Upsample2 { .. } => None,
            })
            .collect();
        FloatEncoder { channels: self.spec.channels, window: self.spec.window, layers }
    }

    /// Reference reconstruction of one normalized window (what `autoencoder.onnx` must
    /// compute: the two networks, the float codes never beyond range).
    pub fn reconstruct(&self, normalized_window: &[f32]) -> Vec<f32> {
        self.decode_network(&self.encode(normalized_window))
    }

    /// Reference encoder pass of one normalized window.
    pub fn encode(&self, normalized_window: &[f32]) -> Vec<f32> {
        self.encoder.iter().fold(normalized_window.to_vec(), |x, l| l.forward(&x))
    }

    /// Reference receiver's decoder of one latent vector (what `decoder.onnx` must compute):
    /// the decoder network, or [`LinearInverse`] for codes beyond range.
    pub fn decode(&self, latent: &[f32]) -> Vec<f32> {
        match &self.beyond_range {
            Some(inverse) if inverse.is_beyond(latent) => inverse.rebuild(latent),
            _ => self.decode_network(latent),
        }
    }

    /// The decoder network alone.
    pub fn decode_network(&self, latent: &[f32]) -> Vec<f32> {
        self.decoder.iter().fold(latent.to_vec(), |x, l| l.forward(&x))
    }
}
