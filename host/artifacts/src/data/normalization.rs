//! Per-channel normalization and the device's integer sample scale.

use serde::{Deserialize, Serialize};

use super::Windows;

/// Per-channel normalization `x_norm = (x - mean[c]) / std[c]`, fitted on the training part only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Fits mean/std per channel over all samples of `windows` (`[C][T]` each). A channel with zero
    /// variance gets std 1 so it passes through unscaled.
    pub fn fit(windows: &Windows, channels: usize) -> Normalization {
        let t_len = windows.dim / channels.max(1);
        let mut mean = vec![0.0f32; channels];
        let mut std = vec![1.0f32; channels];
        for c in 0..channels {
            let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0usize);
            for w in windows.iter() {
                for &v in &w[c * t_len..(c + 1) * t_len] {
                    s += v as f64;
                    s2 += (v as f64) * (v as f64);
                    n += 1;
                }
            }
            if n > 0 {
                let m = s / n as f64;
                let var = (s2 / n as f64 - m * m).max(0.0);
                mean[c] = m as f32;
                let sd = var.sqrt();
                std[c] = if sd > 1e-12 { sd as f32 } else { 1.0 };
            }
        }
        Normalization { mean, std }
    }

    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Normalizes one `[C][T]` window in place.
    pub fn normalize_in_place(&self, window: &mut [f32]) {
        let t_len = window.len() / self.channels().max(1);
        for (c, chunk) in window.chunks_mut(t_len.max(1)).enumerate().take(self.channels()) {
            for v in chunk {
                *v = (*v - self.mean[c]) / self.std[c];
            }
        }
    }

    pub fn denormalize_in_place(&self, window: &mut [f32]) {
        let t_len = window.len() / self.channels().max(1);
        for (c, chunk) in window.chunks_mut(t_len.max(1)).enumerate().take(self.channels()) {
            for v in chunk {
                *v = *v * self.std[c] + self.mean[c];
            }
        }
    }

    /// Normalizes every window of a set (each window `[C][T]`).
    pub fn normalize(&self, windows: &Windows) -> Windows {
        let mut out = windows.clone();
        for w in out.data.chunks_mut(windows.dim.max(1)) {
            self.normalize_in_place(w);
        }
        out
    }

    pub fn denormalize(&self, windows: &Windows) -> Windows {
        let mut out = windows.clone();
        for w in out.data.chunks_mut(windows.dim.max(1)) {
            self.denormalize_in_place(w);
        }
        out
    }
}

/// The device's sample scale: the largest power of two `2^k` (k may be negative) such that
/// `2 * max_abs * 2^k <= 32767`, i.e. the training data uses at most half the i16 range (headroom
/// for larger excursions later). `max_abs == 0` gives 1.
pub fn counts_per_unit(max_abs: f32) -> f32 {
    if !max_abs.is_finite() || max_abs <= 0.0 {
        return 1.0;
    }
    let limit = 32767.0f64;
    let m = max_abs as f64;
    let mut k = (limit / (2.0 * m)).log2().floor() as i32;
    k = k.clamp(-126, 126);
    // Guard against log2 rounding at exact powers of two.
    while k > -126 && 2.0 * m * 2f64.powi(k) > limit {
        k -= 1;
    }
    while k < 126 && 2.0 * m * 2f64.powi(k + 1) <= limit {
        k += 1;
    }
    2f32.powi(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_scale_and_saturation() {
        // 2 · 1.0 · 16384 = 32768 > 32767: an exact power of two lands one step lower.
        assert_eq!(counts_per_unit(1.0), 8192.0);
        assert_eq!(counts_per_unit(0.999), 16384.0);
        assert_eq!(counts_per_unit(3.0), 4096.0);
        assert_eq!(counts_per_unit(100_000.0), 0.125);
        assert_eq!(counts_per_unit(0.0), 1.0);
        let cpu = counts_per_unit(5.0);
        assert!(2.0 * 5.0 * cpu <= 32767.0 && 2.0 * 5.0 * cpu * 2.0 > 32767.0);
        // Recordings become device counts with the shared crate's conversion.
        use funnel_shared::stream::to_counts;
        assert_eq!(to_counts(1.0, 16384.0), 16384);
        assert_eq!(to_counts(-0.00004, 16384.0), -1);
        assert_eq!(to_counts(10.0, 16384.0), i16::MAX);
        assert_eq!(to_counts(-10.0, 16384.0), i16::MIN);
    }
}
