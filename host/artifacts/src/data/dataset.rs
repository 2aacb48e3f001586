//! The time split every stage agrees on: training part (the first 80 % of the windows, its last
//! 10 % held back for early stopping) and held-out part (the last 20 %, never trained on).

use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{counts_per_unit, grid_counts_per_unit, DataError, Normalization, Recording, Windows};

/// Fraction of the windows (time-ordered) used for training; the rest is held out.
pub const TRAIN_FRACTION: f64 = 0.8;
/// Fraction of the training windows (the last ones) used for early stopping only.
const VALIDATION_FRACTION: f64 = 0.1;

/// Number of training windows out of `n` (at least 1 and leaving at least 1 held out when n ≥ 2).
pub fn train_window_count(n: usize) -> usize {
    ((n as f64 * TRAIN_FRACTION).floor() as usize).clamp(1, n.saturating_sub(1).max(1))
}

/// `(fitted, validation)` window counts of `n` training-part windows: the last 10 % (at least
/// 1) validate; a single window is fitted and validated on.
pub fn fit_validation_counts(n: usize) -> (usize, usize) {
    let validation = if n < 2 { 0 } else { ((n as f64 * VALIDATION_FRACTION).round() as usize).clamp(1, n - 1) };
    (n - validation, validation)
}

/// How the recording was cut (recorded in the model card).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub rows: usize,
    pub windows: usize,
    /// First 80 % of the windows, including the validation windows.
    pub train_windows: usize,
    /// Last 10 % of the training windows, used for early stopping only.
    pub validation_windows: usize,
    /// Last 20 % of the windows, never trained on; all metrics are on these.
    pub held_out_windows: usize,
}

/// What the trainer sees: normalized windows to fit, and later windows to stop on.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingWindows {
    pub fit: Windows,
    /// Never overlaps `fit` in time (except for a one-window training part, validated on itself).
    pub validation: Windows,
}

impl TrainingWindows {
    /// Splits time-ordered normalized windows by [`fit_validation_counts`].
    pub fn split(windows: &Windows) -> TrainingWindows {
        let (fit, validation) = fit_validation_counts(windows.len());
        let fitted = windows.slice(0..fit);
        let validation = if validation == 0 { fitted.clone() } else { windows.slice(fit..windows.len()) };
        TrainingWindows { fit: fitted, validation }
    }
}

/// A recording cut into windows, split in time and normalized. [`Dataset::new`] is the only
/// constructor, so the parts always agree with each other.
#[derive(Clone, Debug)]
pub struct Dataset {
    recording: Recording,
    window: usize,
    train: Windows,
    held_out: Windows,
    normalization: Normalization,
    train_norm: Windows,
    held_out_norm: Windows,
}

impl Dataset {
    /// Cuts `recording` into non-overlapping windows, splits them in time and normalizes with
    /// `normalization` (a model's) or, when `None`, with statistics of the training part only.
    pub fn new(
        recording: Recording,
        window: usize,
        normalization: Option<Normalization>,
    ) -> Result<Dataset, DataError> {
        if window == 0 {
            return Err(DataError::BadWindow { window });
        }
        let all = recording.windows(window);
        let n = all.len();
        if n < 2 {
            return Err(DataError::TooFewRows {
                path: recording.path.clone(),
                rows: recording.rows(),
                window,
                needed: 2 * window,
            });
        }
        let n_train = train_window_count(n);
        let train = all.slice(0..n_train);
        let held_out = all.slice(n_train..n);
        let normalization = match normalization {
            Some(given) if given.channels() != recording.channels() => {
                return Err(DataError::NormalizationChannels {
                    expected: recording.channels(),
                    found: given.channels(),
                })
            }
            Some(given) => given,
            None => Normalization::fit(&train, recording.channels()),
        };
        Ok(Dataset {
            train_norm: normalization.normalize(&train),
            held_out_norm: normalization.normalize(&held_out),
            recording,
            window,
            train,
            held_out,
            normalization,
        })
    }

    /// Reads `columns` of a CSV file and builds the dataset with statistics of its training part.
    pub fn load(path: impl AsRef<Path>, columns: &[String], window: usize) -> Result<Dataset, DataError> {
        Dataset::new(Recording::from_csv(path, columns)?, window, None)
    }

    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    pub fn path(&self) -> &Path {
        &self.recording.path
    }

    pub fn columns(&self) -> &[String] {
        &self.recording.columns
    }

    pub fn channels(&self) -> usize {
        self.recording.channels()
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Training part, original units.
    pub fn train(&self) -> &Windows {
        &self.train
    }

    /// Held-out part, original units.
    pub fn held_out(&self) -> &Windows {
        &self.held_out
    }

    pub fn normalization(&self) -> &Normalization {
        &self.normalization
    }

    pub fn train_norm(&self) -> &Windows {
        &self.train_norm
    }

    pub fn held_out_norm(&self) -> &Windows {
        &self.held_out_norm
    }

    /// Rows of the recording that the held-out windows cover.
    pub fn held_out_rows(&self) -> Range<usize> {
        let start = self.train.len() * self.window;
        start..start + self.held_out.len() * self.window
    }

    /// The device scale of the training part: its own grid if it lies on one that fits the
    /// device ([`grid_counts_per_unit`]), else the power of two fitted to its range
    /// ([`counts_per_unit`]).
    pub fn default_counts_per_unit(&self) -> f32 {
        let data = &self.train.data;
        grid_counts_per_unit(data).unwrap_or_else(|| counts_per_unit(data.iter().fold(0.0f32, |m, v| m.max(v.abs()))))
    }

    /// The training part as the trainer sees it: fitted windows start every `hop` samples
    /// (`hop < window` augments with overlapping windows) and stop before the validation
    /// windows, which keep hop = window.
    pub fn training_windows(&self, hop: usize) -> TrainingWindows {
        let (n_fit, n_val) = fit_validation_counts(self.train.len());
        let fit =
            self.normalization.normalize(&self.recording.windows_with_hop(self.window, hop, 0..n_fit * self.window));
        let validation = if n_val == 0 { fit.clone() } else { self.train_norm.slice(n_fit..self.train.len()) };
        TrainingWindows { fit, validation }
    }

    /// The split as the model card records it.
    pub fn split_info(&self) -> SplitInfo {
        SplitInfo {
            rows: self.recording.rows(),
            windows: self.train.len() + self.held_out.len(),
            train_windows: self.train.len(),
            validation_windows: fit_validation_counts(self.train.len()).1,
            held_out_windows: self.held_out.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_support::{cols, csv_file};

    #[test]
    fn too_few_rows() {
        let f = csv_file("a\n1\n2\n3\n");
        let e = Dataset::load(f.path(), &cols(&["a"]), 2).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::TooFewRows { rows: 3, window: 2, needed: 4, .. }), "{msg}");
        assert!(msg.contains("3 rows") && msg.contains("--window 2"), "{msg}");
        let f = csv_file("a\n1\n2\n3\n4\n");
        let d = Dataset::load(f.path(), &cols(&["a"]), 2).unwrap();
        assert_eq!((d.train().len(), d.held_out().len()), (1, 1));
    }

    #[test]
    fn split_and_normalization_use_training_part_only() {
        let x: Vec<f32> = (0..100).map(|i| if i < 80 { (i % 2) as f32 } else { 100.0 }).collect();
        let rec = Recording::from_channels("mem", cols(&["a"]), vec![x]);
        let d = Dataset::new(rec, 10, None).unwrap();
        assert_eq!((d.train().len(), d.held_out().len()), (8, 2));
        assert_eq!(d.held_out_rows(), 80..100);
        assert!((d.normalization().mean[0] - 0.5).abs() < 1e-6);
        assert!((d.normalization().std[0] - 0.5).abs() < 1e-6);
        // max |x_train| = 1 → 2 · 2^k <= 32767 → k = 13 (2^14 would give 32768)
        assert_eq!(d.default_counts_per_unit(), 8192.0);
    }

    #[test]
    fn a_given_normalization_is_used_and_checked() {
        let rec = Recording::from_channels("mem", cols(&["a"]), vec![(0..40).map(|v| v as f32).collect()]);
        let norm = Normalization { mean: vec![1.0], std: vec![2.0] };
        let d = Dataset::new(rec.clone(), 4, Some(norm.clone())).unwrap();
        assert_eq!(d.normalization(), &norm);
        assert_eq!(d.held_out_norm().get(0)[0], (32.0 - 1.0) / 2.0);
        let two = Normalization { mean: vec![0.0, 0.0], std: vec![1.0, 1.0] };
        let e = Dataset::new(rec, 4, Some(two)).unwrap_err();
        assert!(matches!(e, DataError::NormalizationChannels { expected: 1, found: 2 }), "{e}");
    }

    #[test]
    fn training_windows_keep_validation_after_the_fitted_part() {
        // 100 rows, window 10: 8 training windows → 7 fitted (rows 0..70), 1 validation (70..80).
        let rec = Recording::from_channels("mem", cols(&["a"]), vec![(0..100).map(|v| v as f32).collect()]);
        let d = Dataset::new(rec, 10, Some(Normalization { mean: vec![0.0], std: vec![1.0] })).unwrap();
        let t = d.training_windows(5);
        assert_eq!(t.fit.len(), 13); // starts 0, 5, …, 60
        assert_eq!(t.validation.len(), 1);
        assert_eq!(t.validation.get(0)[0], 70.0);
        assert_eq!(d.training_windows(10), TrainingWindows::split(d.train_norm()));
        assert_eq!(d.split_info().validation_windows, 1);
        assert_eq!(fit_validation_counts(1), (1, 0));
        assert_eq!(fit_validation_counts(49), (44, 5));
    }
}
