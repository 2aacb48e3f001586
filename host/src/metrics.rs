//! Reconstruction quality in original units (denormalized) and compression ratio.
//!
//! Definitions, summed over every sample of every evaluated window and channel:
//! * `PRD  = 100 · sqrt(Σ(x − x̂)² / Σ x²)`
//! * `PRDN = 100 · sqrt(Σ(x − x̂)² / Σ(x − x̄_c)²)` where `x̄_c` is the mean of channel `c` over the
//!   evaluated windows (independent of the signal's DC offset, unlike PRD).
//! * `SNR  = −20 · log10(PRDN / 100) = 10 · log10(Σ(x − x̄_c)² / Σ(x − x̂)²)` dB.
//! * `RMSE = sqrt(Σ(x − x̂)² / n)`, `max_abs_error = max |x − x̂|`.
//! * `compression_ratio = 16 · n / bits_sent`: 16-bit raw samples vs. the bits of the encoded
//!   Funnel frames ([`crate::framing::bits_sent`]).

use serde::{Deserialize, Serialize};

use crate::data::Windows;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub prd: f64,
    pub prdn: f64,
    pub snr_db: f64,
    pub rmse: f64,
    pub max_abs_error: f64,
    pub compression_ratio: f64,
    pub windows: usize,
    pub samples: usize,
}

/// Quality of `reconstruction` against `original` (both in original units, windows `[C][T]`),
/// with the compression ratio for `latent` codes per window.
pub fn compute(original: &Windows, reconstruction: &Windows, channels: usize, latent: usize) -> Metrics {
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
    let n = original.data.len();
    let prd = 100.0 * (err2 / sig2).sqrt();
    let prdn = 100.0 * (err2 / dev2).sqrt();
    let windows = original.len();
    let bits = crate::framing::bits_sent(windows, original.dim / channels, latent);
    Metrics {
        prd,
        prdn,
        snr_db: -20.0 * (prdn / 100.0).log10(),
        rmse: (err2 / n.max(1) as f64).sqrt(),
        max_abs_error: max_abs,
        compression_ratio: if bits == 0 { 0.0 } else { 16.0 * n as f64 / bits as f64 },
        windows,
        samples: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // One channel, one window: x = [1, 3], x̂ = [1, 2] → err² = 1, Σx² = 10, mean 2, Σ(x−x̄)² = 2
        let x = Windows::new(2, vec![1.0, 3.0]);
        let r = Windows::new(2, vec![1.0, 2.0]);
        let m = compute(&x, &r, 1, 4);
        assert!((m.prd - 100.0 * (0.1f64).sqrt()).abs() < 1e-9);
        assert!((m.prdn - 100.0 * (0.5f64).sqrt()).abs() < 1e-9);
        assert!((m.snr_db - 10.0 * 2f64.log10()).abs() < 1e-9);
        assert!((m.rmse - (0.5f64).sqrt()).abs() < 1e-9);
        assert_eq!(m.max_abs_error, 1.0);
        // 2 samples × 16 bits over the size of one frame of 4 codes
        let expected = 32.0 / crate::framing::bits_sent(1, 2, 4) as f64;
        assert!((m.compression_ratio - expected).abs() < 1e-12);
        assert_eq!((m.windows, m.samples), (1, 2));
    }

    #[test]
    fn perfect_reconstruction_and_per_channel_mean() {
        // Two channels with very different offsets: PRDN uses each channel's own mean.
        let x = Windows::new(4, vec![100.0, 102.0, -1.0, 1.0]);
        let m = compute(&x, &x, 2, 1);
        assert_eq!(m.prd, 0.0);
        assert_eq!(m.prdn, 0.0);
        assert!(m.snr_db.is_infinite());
        let r = Windows::new(4, vec![101.0, 101.0, 0.0, 0.0]); // reconstruct the channel means
        let m = compute(&x, &r, 2, 1);
        assert!((m.prdn - 100.0).abs() < 1e-9, "{}", m.prdn);
        assert!(m.snr_db.abs() < 1e-9);
    }
}
