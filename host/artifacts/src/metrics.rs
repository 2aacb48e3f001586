//! Reconstruction quality in original units (denormalized) and compression ratio.
//!
//! Definitions, summed over every sample of every evaluated window and channel:
//! * `PRD  = 100 · sqrt(Σ(x − x̂)² / Σ x²)`
//! * `PRDN = 100 · sqrt(Σ(x − x̂)² / Σ(x − x̄_c)²)` where `x̄_c` is the mean of channel `c` over the
//!   evaluated windows (independent of the signal's DC offset, unlike PRD).
//! * `SNR  = −20 · log10(PRDN / 100) = 10 · log10(Σ(x − x̄_c)² / Σ(x − x̂)²)` dB.
//! * `RMSE = sqrt(Σ(x − x̂)² / n)`, `max_abs_error = max |x − x̂|`.
//! * `compression_ratio = 16 · n / bits_sent`: 16-bit raw samples vs. the bits the device sends
//!   (data frames and stream headers, as the simulator measured them; [`bits_sent`] for raw
//!   codes); `sensor_compression_ratio` the same with the sensor's bits.
//! * `bits_per_sample = bits_sent / samples per channel`: the rate axis of every
//!   rate–distortion comparison.
//! * `seam_ratio`: the mean |Δe| of the error `e = x − x̂` between consecutive samples across a
//!   window boundary (last sample of a window, first of the next; the windows are consecutive
//!   in time) over its mean inside windows. Coding window by window leaves steps at the
//!   boundaries: 1 means none, above 1.5 a reader sees them.

use serde::{Deserialize, Serialize};

use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::{stream_len, CHECK_LEN, MAX_CODES};

use crate::data::Windows;

/// What made a reconstruction: the sections of evaluation reports and of the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The trained float autoencoder (candle, or its ONNX file).
    FloatAutoencoder,
    /// The device path: int8 encoder → frames → `decoder.onnx`.
    Int8Device,
    /// PCA fitted on the training part with as many components as the model has codes.
    Pca,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::FloatAutoencoder => "float_autoencoder",
            Method::Int8Device => "int8_device",
            Method::Pca => "pca",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// NaN where the signal has no energy (PRD) or no variation (PRDN): written as `null`.
    #[serde(deserialize_with = "null_as_nan")]
    pub prd: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub prdn: f64,
    /// +∞ for a perfect reconstruction: JSON has no infinity, so it is written as `null`.
    #[serde(deserialize_with = "null_as_infinity")]
    pub snr_db: f64,
    pub rmse: f64,
    pub max_abs_error: f64,
    pub compression_ratio: f64,
    /// Bits the device sends per sample of each channel (frames and framing included).
    #[serde(default)]
    pub bits_per_sample: f64,
    /// The raw size at the sensor's resolution (the card's `sensor_bits`) over the bits sent.
    #[serde(default)]
    pub sensor_compression_ratio: f64,
    pub windows: usize,
    pub samples: usize,
    /// `None` with fewer than two windows or an error constant inside windows.
    #[serde(default)]
    pub seam_ratio: Option<f64>,
}

impl Metrics {
    /// These quality figures at `other`'s rate: the float autoencoder and PCA are charged the
    /// bits the device sent for the same windows.
    pub fn at_rate_of(self, other: &Metrics) -> Metrics {
        Metrics {
            compression_ratio: other.compression_ratio,
            bits_per_sample: other.bits_per_sample,
            sensor_compression_ratio: other.sensor_compression_ratio,
            ..self
        }
    }
}

/// Reconstruction quality alone, in original units (see the module docs for definitions).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// NaN as in [`Metrics::prd`] and [`Metrics::prdn`].
    #[serde(deserialize_with = "null_as_nan")]
    pub prd: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub prdn: f64,
    /// +∞ for a perfect reconstruction, written as `null` (see [`Metrics::snr_db`]).
    #[serde(deserialize_with = "null_as_infinity")]
    pub snr_db: f64,
    pub rmse: f64,
    pub max_abs_error: f64,
    pub seam_ratio: Option<f64>,
}

/// serde_json writes a non-finite number as `null`; an SNR is only ever +∞ (no error at all).
fn null_as_infinity<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
}

/// serde_json writes a non-finite number as `null`; a ratio to a signal that does not vary is
/// NaN (0/0), the only non-finite value such a figure takes.
pub(crate) fn null_as_nan<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

impl Quality {
    /// Quality of `reconstruction` against `original` (windows `[C][T]` of `channels` channels).
    pub fn of(original: &Windows, reconstruction: &Windows, channels: usize) -> Quality {
        assert_eq!(original.dim, reconstruction.dim, "metrics: window size");
        assert_eq!(original.data.len(), reconstruction.data.len(), "metrics: window count");
        let channels = channels.max(1);
        let t_len = original.dim / channels;
        let mut mean = vec![0.0f64; channels];
        let mut count = vec![0usize; channels];
        for w in original.iter() {
            for c in 0..channels {
                for &v in &w[c * t_len..(c + 1) * t_len] {
                    mean[c] += v as f64;
                    count[c] += 1;
                }
            }
        }
        for c in 0..channels {
            mean[c] /= count[c].max(1) as f64;
        }
        let (mut err2, mut sig2, mut dev2, mut max_abs) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (w, r) in original.iter().zip(reconstruction.iter()) {
            for c in 0..channels {
                for t in 0..t_len {
                    let x = w[c * t_len + t] as f64;
                    let e = x - r[c * t_len + t] as f64;
                    err2 += e * e;
                    sig2 += x * x;
                    dev2 += (x - mean[c]) * (x - mean[c]);
                    max_abs = max_abs.max(e.abs());
                }
            }
        }
        let prdn = 100.0 * (err2 / dev2).sqrt();
        Quality {
            prd: 100.0 * (err2 / sig2).sqrt(),
            prdn,
            snr_db: -20.0 * (prdn / 100.0).log10(),
            rmse: (err2 / original.data.len().max(1) as f64).sqrt(),
            max_abs_error: max_abs,
            seam_ratio: seam_ratio(original, reconstruction, channels, t_len),
        }
    }
}

/// See the module docs; windows `[C][T]` of `t_len` samples, consecutive in time.
fn seam_ratio(original: &Windows, reconstruction: &Windows, channels: usize, t_len: usize) -> Option<f64> {
    let error = |w: usize, c: usize, t: usize| {
        f64::from(original.get(w)[c * t_len + t]) - f64::from(reconstruction.get(w)[c * t_len + t])
    };
    let (mut inside, mut inside_n, mut across, mut across_n) = (0.0f64, 0usize, 0.0f64, 0usize);
    for w in 0..original.len() {
        for c in 0..channels {
            for t in 1..t_len {
                inside += (error(w, c, t) - error(w, c, t - 1)).abs();
                inside_n += 1;
            }
            if w + 1 < original.len() && t_len > 0 {
                across += (error(w + 1, c, 0) - error(w, c, t_len - 1)).abs();
                across_n += 1;
            }
        }
    }
    let inside = inside / inside_n.max(1) as f64;
    (across_n > 0 && inside > 0.0).then(|| across / across_n as f64 / inside)
}

/// Quality of `reconstruction` against `original` (both in original units, windows `[C][T]`),
/// with the rate of `bits` sent for them, against 16-bit raw samples and against a
/// `sensor_bits` sensor.
pub fn compute(original: &Windows, reconstruction: &Windows, channels: usize, bits: u64, sensor_bits: u32) -> Metrics {
    let q = Quality::of(original, reconstruction, channels);
    let n = original.data.len();
    let windows = original.len();
    let samples_per_channel = n / channels.max(1);
    let ratio = |raw_bits: u32| if bits == 0 { 0.0 } else { f64::from(raw_bits) * n as f64 / bits as f64 };
    Metrics {
        prd: q.prd,
        prdn: q.prdn,
        snr_db: q.snr_db,
        rmse: q.rmse,
        max_abs_error: q.max_abs_error,
        compression_ratio: ratio(16),
        bits_per_sample: bits as f64 / samples_per_channel.max(1) as f64,
        sensor_compression_ratio: ratio(sensor_bits),
        windows,
        samples: n,
        seam_ratio: q.seam_ratio,
    }
}

/// Bits a device sends for `n_windows` consecutive windows of `latent` raw (not entropy coded)
/// codes each from the start of a stream at sample 0, with [`StreamConfig::DEFAULT`] (one
/// window per frame, a 2-byte check each, a stream header every 64 frames: 22 bytes up to frame
/// 127). Raw frame sizes do not depend on the code values, so this is exact for any codes.
pub fn bits_sent(n_windows: usize, latent: usize) -> u64 {
    assert!(latent <= MAX_CODES, "a window has at most {MAX_CODES} codes");
    let config = StreamConfig::DEFAULT;
    let per_frame = usize::from(config.windows_per_frame);
    let frames = (n_windows / per_frame) as u64;
    8 * stream_len(frames, per_frame * latent + CHECK_LEN, config.header_interval, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // One channel, one window: x = [1, 3], x̂ = [1, 2] → err² = 1, Σx² = 10, mean 2, Σ(x−x̄)² = 2
        let x = Windows::new(2, vec![1.0, 3.0]);
        let r = Windows::new(2, vec![1.0, 2.0]);
        let m = compute(&x, &r, 1, bits_sent(1, 4), 12);
        assert!((m.prd - 100.0 * (0.1f64).sqrt()).abs() < 1e-9);
        assert!((m.prdn - 100.0 * (0.5f64).sqrt()).abs() < 1e-9);
        assert!((m.snr_db - 10.0 * 2f64.log10()).abs() < 1e-9);
        assert!((m.rmse - (0.5f64).sqrt()).abs() < 1e-9);
        assert_eq!(m.max_abs_error, 1.0);
        // 2 samples × 16 bits over the size of one frame of 4 codes
        let expected = 32.0 / bits_sent(1, 4) as f64;
        assert!((m.compression_ratio - expected).abs() < 1e-12);
        assert!((m.sensor_compression_ratio - 0.75 * expected).abs() < 1e-12);
        assert!((m.bits_per_sample - bits_sent(1, 4) as f64 / 2.0).abs() < 1e-12);
        assert_eq!((m.windows, m.samples), (1, 2));
    }

    #[test]
    fn seams_are_steps_of_the_error_at_window_boundaries() {
        let x = Windows::new(3, vec![0.0; 6]);
        let r = Windows::new(3, vec![-1.0, -1.5, -2.0, 1.0, 1.5, 2.0]);
        let q = Quality::of(&x, &r, 1);
        // e = 1, 1.5, 2 | −1, −1.5, −2: inside |Δe| = 0.5 four times; across, 2 → −1: 3.
        assert_eq!(q.seam_ratio, Some(3.0 / 0.5));
        assert_eq!(Quality::of(&x, &x, 1).seam_ratio, None, "no error, no ratio");
        assert_eq!(Quality::of(&x.slice(0..1), &r.slice(0..1), 1).seam_ratio, None, "one window");
    }

    #[test]
    fn perfect_reconstruction_and_per_channel_mean() {
        // Two channels with very different offsets: PRDN uses each channel's own mean.
        let x = Windows::new(4, vec![100.0, 102.0, -1.0, 1.0]);
        let m = compute(&x, &x, 2, bits_sent(1, 1), 16);
        assert_eq!(m.prd, 0.0);
        assert_eq!(m.prdn, 0.0);
        assert!(m.snr_db.is_infinite());
        // A card holding it must read back (JSON has no infinity).
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"snr_db\":null"), "{json}");
        assert_eq!(serde_json::from_str::<Metrics>(&json).unwrap(), m);
        let r = Windows::new(4, vec![101.0, 101.0, 0.0, 0.0]); // reconstruct the channel means
        let m = compute(&x, &r, 2, bits_sent(1, 1), 16);
        assert!((m.prdn - 100.0).abs() < 1e-9, "{}", m.prdn);
        assert!(m.snr_db.abs() < 1e-9);
        // A signal that does not vary has no PRDN (0/0): NaN, written as null, read back.
        let flat = Windows::new(2, vec![5.0, 5.0, 5.0, 5.0]);
        let m = compute(&flat, &flat, 1, bits_sent(2, 1), 16);
        assert!(m.prdn.is_nan());
        let back = serde_json::from_str::<Metrics>(&serde_json::to_string(&m).unwrap()).unwrap();
        assert!(back.prdn.is_nan() && back.prd == m.prd);
    }

    #[test]
    fn sizes_are_frames_and_one_header_per_64_frames() {
        // 8 codes + a 2-byte check per window; a header before frames 0, 64, 128, …: 22 bytes
        // while the frame number takes one varint byte, 23 from frame 128 on.
        assert_eq!(bits_sent(1, 8), 8 * (22 + 10));
        assert_eq!(bits_sent(64, 8), 8 * (22 + 64 * 10));
        assert_eq!(bits_sent(65, 8), 8 * (2 * 22 + 65 * 10));
        assert_eq!(bits_sent(129, 8), 8 * (2 * 22 + 23 + 129 * 10));
        assert_eq!(bits_sent(0, 8), 0);
    }

    #[test]
    fn method_names_are_the_report_sections() {
        for m in [Method::FloatAutoencoder, Method::Int8Device, Method::Pca] {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
    }
}
