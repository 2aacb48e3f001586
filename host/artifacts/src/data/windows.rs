//! Equally sized flattened windows, and the two sample layouts: `[T][C]` as sensors deliver
//! rows, `[C][T]` as the networks read windows.

/// A set of equally sized flattened windows stored contiguously.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Windows {
    /// Length of one window (`C * T`).
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Windows {
    pub fn new(dim: usize, data: Vec<f32>) -> Self {
        assert!(dim > 0 && data.len() % dim == 0, "windows: data length must be a multiple of dim");
        Windows { dim, data }
    }
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    pub fn iter(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }
    /// Windows `range` as a new set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Windows {
        Windows { dim: self.dim, data: self.data[range.start * self.dim..range.end * self.dim].to_vec() }
    }

    /// These windows, consecutive `[C][T]` windows of a `channels`-channel series, cut again
    /// from the series `offset` samples later (0 < `offset` < T): one window fewer.
    pub fn shifted(&self, channels: usize, offset: usize) -> Windows {
        let t = self.dim / channels.max(1);
        let n = self.len();
        if offset == 0 || offset >= t || n < 2 {
            return if offset == 0 { self.clone() } else { Windows { dim: self.dim, data: Vec::new() } };
        }
        let mut data = Vec::with_capacity((n - 1) * self.dim);
        for (w, next) in self.iter().zip(self.iter().skip(1)) {
            for c in 0..channels {
                data.extend_from_slice(&w[c * t + offset..(c + 1) * t]);
                data.extend_from_slice(&next[c * t..c * t + offset]);
            }
        }
        Windows { dim: self.dim, data }
    }
}

/// Converts one interleaved block (`[T][C]`, as rows arrive from a sensor) to channels-first `[C][T]`.
pub fn interleaved_to_channels_first(interleaved: &[f32], channels: usize) -> Vec<f32> {
    let t_len = interleaved.len() / channels.max(1);
    let mut out = vec![0.0; t_len * channels];
    for t in 0..t_len {
        for c in 0..channels {
            out[c * t_len + t] = interleaved[t * channels + c];
        }
    }
    out
}

/// Inverse of [`interleaved_to_channels_first`].
pub fn channels_first_to_interleaved(cf: &[f32], channels: usize) -> Vec<f32> {
    let t_len = cf.len() / channels.max(1);
    let mut out = vec![0.0; t_len * channels];
    for c in 0..channels {
        for t in 0..t_len {
            out[t * channels + c] = cf[c * t_len + t];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_windows_are_cut_from_the_same_series_later() {
        // Two channels, windows of 3 samples: a = 0..9, b = 10..19.
        let series: Vec<Vec<f32>> = vec![(0..9).map(|v| v as f32).collect(), (10..19).map(|v| v as f32).collect()];
        let windows = Windows::new(
            6,
            (0..3).flat_map(|w| series.iter().flat_map(move |ch| ch[3 * w..3 * w + 3].to_vec())).collect(),
        );
        let shifted = windows.shifted(2, 2);
        assert_eq!(shifted.len(), 2);
        assert_eq!(shifted.get(0), &[2., 3., 4., 12., 13., 14.]);
        assert_eq!(shifted.get(1), &[5., 6., 7., 15., 16., 17.]);
        assert_eq!(windows.shifted(2, 0), windows);
        assert!(windows.shifted(2, 3).is_empty());
        assert!(windows.slice(0..1).shifted(2, 1).is_empty());
    }

    #[test]
    fn interleaving_round_trip() {
        let inter = [1., 10., 2., 20., 3., 30.];
        let cf = interleaved_to_channels_first(&inter, 2);
        assert_eq!(cf, vec![1., 2., 3., 10., 20., 30.]);
        assert_eq!(channels_first_to_interleaved(&cf, 2), inter.to_vec());
    }
}
