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

/// A recording on a grid spanning fewer steps than this is not taken for an ADC's output: a
/// signal of a few levels (a switch, a step) would give a scale so coarse that any value between
/// its levels, unseen in training, would lose half a level to the conversion.
const MIN_GRID_SPAN: f64 = 32.0;

/// Fewer distinct values than this are too few to tell a grid from chance.
const MIN_GRID_LEVELS: usize = 16;

/// How far from an integer a value times a grid's scale may be and still lie on the grid: what
/// printing a value with 7 significant digits and reading it into an f32 leaves (half a unit
/// of the 7th digit is 5e-7 of the value), with a margin, plus 0.01 of a count.
fn on_grid(value: f64, scale: f64) -> bool {
    let counts = value * scale;
    (counts - counts.round()).abs() <= 0.01 + 2e-6 * counts.abs()
}

/// How far the scale read off the smallest gap between two printed values may be from the
/// grid's: two values' printing errors over one step, at most about 1e-6 of the largest count
/// (1.6 % within the i16 headroom).
const GAP_UNCERTAINTY: f64 = 0.02;

/// The recording's own sample grid as a device scale, if it has one the device can hold: the
/// coarsest `cpu`, an integer or the inverse of one, such that every value times `cpu` is an
/// integer (to 0.01 of a count and the 7th significant digit), the values take at least 16
/// levels spanning at least 32 steps and, as for [`counts_per_unit`],
/// `2 * max_abs * cpu <= 32767`. A recording read from an ADC (MIT-BIH's 200 counts/mV, an
/// IMU's 2048 counts/g) lies on such a grid; rescaled to a power of two it would not, and every
/// count the device holds would carry the bits between the grid's levels: the lossless and
/// error-bounded coders pay for them (2 bits per sample on the IMU's acc_z at 8192 counts/g
/// instead of its 2048).
///
/// The grid's step is the smallest gap between distinct values, or a fraction of it down to an
/// eighth (the values `{0, 2, …, 198, 201}` lie on a grid of 1, not of their smallest gap 2);
/// printed values give that step only to 2 %, so each scale within that is tried.
pub fn grid_counts_per_unit(values: &[f32]) -> Option<f32> {
    let mut sorted: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|&v| f64::from(v)).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    if sorted.len() < MIN_GRID_LEVELS {
        return None;
    }
    let (lowest, highest) = (sorted[0], sorted[sorted.len() - 1]);
    let max_abs = lowest.abs().max(highest.abs());
    let gap = sorted.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
    let fits = |scale: f64| 2.0 * max_abs * scale <= 32767.0;
    for fraction in 1..=8u32 {
        let rough = f64::from(fraction) / gap;
        if !fits(rough * (1.0 - GAP_UNCERTAINTY)) {
            // Finer fractions fit still less.
            return None;
        }
        let coarsest = scales_near(rough).find(|&cpu| {
            let scale = f64::from(cpu);
            fits(scale) && sorted.iter().all(|&v| on_grid(v, scale))
        });
        if let Some(cpu) = coarsest {
            // A finer grid would span more steps but leave levels unused between the values.
            return ((highest - lowest) * f64::from(cpu) >= MIN_GRID_SPAN).then_some(cpu);
        }
    }
    None
}

/// The integers (or, below 1, inverses of integers) within `GAP_UNCERTAINTY` of `rough`,
/// nearest first.
fn scales_near(rough: f64) -> impl Iterator<Item = f32> {
    let inverse = rough < 1.0;
    let centre = if inverse { 1.0 / rough } else { rough };
    let low = (centre * (1.0 - GAP_UNCERTAINTY)).round().max(1.0) as u64;
    let high = (centre * (1.0 + GAP_UNCERTAINTY)).round().max(1.0) as u64;
    let mut near: Vec<u64> = (low..=high).collect();
    near.sort_by(|a, b| (*a as f64 - centre).abs().total_cmp(&(*b as f64 - centre).abs()));
    near.into_iter().map(move |n| if inverse { 1.0 / n as f32 } else { n as f32 })
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

    /// `counts / cpu` as a CSV prints it (7 significant digits) and reads it back.
    fn printed(counts: impl Iterator<Item = i32>, cpu: f64) -> Vec<f32> {
        counts.map(|c| format!("{:.6e}", f64::from(c) / cpu).parse().unwrap()).collect()
    }

    #[test]
    fn an_adc_grid_is_found() {
        let wave = |amplitude: f64| (0..2000).map(move |i| ((i as f64 * 0.05).sin() * amplitude).round() as i32);
        // MIT-BIH's 200 counts/mV, an IMU's 2048 counts/g, a gyroscope's 16 counts/(°/s).
        assert_eq!(grid_counts_per_unit(&printed(wave(400.0), 200.0)), Some(200.0));
        assert_eq!(grid_counts_per_unit(&printed(wave(3000.0), 2048.0)), Some(2048.0));
        assert_eq!(grid_counts_per_unit(&printed(wave(3000.0), 16.0)), Some(16.0));
        // A grid coarser than 1: values in steps of 3 units.
        let threes: Vec<f32> = (0..100).map(|i| (3 * i) as f32).collect();
        assert_eq!(grid_counts_per_unit(&threes), Some(1.0 / 3.0));
        // The smallest gap is two steps, but the values are on a grid of one.
        let odd: Vec<f32> = (0..100).map(|i| (2 * i) as f32).chain([201.0]).collect();
        assert_eq!(grid_counts_per_unit(&odd), Some(1.0));
        // Every value of the converted recording is its ADC reading again.
        let values = printed(wave(3000.0), 2048.0);
        for (v, c) in values.iter().zip(wave(3000.0)) {
            assert_eq!(i32::from(funnel_shared::stream::to_counts(*v, 2048.0)), c);
        }
    }

    #[test]
    fn no_grid_is_made_up() {
        // Values at full f32 precision.
        let smooth: Vec<f32> = (0..2000).map(|i| (i as f32 * 0.0123).sin() * 1.7).collect();
        assert_eq!(grid_counts_per_unit(&smooth), None);
        // A grid too fine for the i16 counts: a power recording to the mW, up to 2 kW.
        let fine = printed((0..2000).map(|i| ((i as f64 * 0.0137).sin() * 2.0e6).round() as i32), 1000.0);
        assert_eq!(grid_counts_per_unit(&fine), None);
        // Too few levels to be an ADC's: a switch between 0 and 5, 20 levels spanning 20 steps.
        let switch: Vec<f32> = (0..100).map(|i| if i % 7 < 3 { 0.0 } else { 5.0 }).collect();
        assert_eq!(grid_counts_per_unit(&switch), None);
        let narrow: Vec<f32> = (0..100).map(|i| (i % 20) as f32).collect();
        assert_eq!(grid_counts_per_unit(&narrow), None);
        // A constant, nothing, and not-a-number.
        assert_eq!(grid_counts_per_unit(&[1.5; 10]), None);
        assert_eq!(grid_counts_per_unit(&[]), None);
        assert_eq!(grid_counts_per_unit(&[f32::NAN, 1.0]), None);
        // One value off the grid is enough to refuse it.
        let mut almost = printed((0..2000).map(|i| i - 1000), 200.0);
        almost[1234] += 0.0013;
        assert_eq!(grid_counts_per_unit(&almost), None);
    }
}
