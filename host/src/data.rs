//! CSV recordings, windowing, the train/held-out time split, per-channel normalization and the
//! device's integer sample scale.
//!
//! Conventions:
//! * A CSV row is one time step; the selected columns are the channels (interleaved in the file).
//! * A window is `[C][T]` channels-first, flattened channel-major: element `c * T + t`.
//! * Windows do not overlap (hop = window). The first 80 % of the windows (in time order) are the
//!   training part, the last 20 % the held-out part that training never sees.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Fraction of the windows (time-ordered) used for training; the rest is held out.
pub const TRAIN_FRACTION: f64 = 0.8;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: malformed CSV at line {line}: {message}")]
    Csv { path: PathBuf, line: u64, message: String },
    #[error("{path}: file is empty (expected a header row and data rows)")]
    Empty { path: PathBuf },
    #[error("{path}: no data rows after the header")]
    NoRows { path: PathBuf },
    #[error("no --column given (available in {path}: {available})")]
    NoColumns { path: PathBuf, available: String },
    #[error("{path}: column {column:?} not found in the header (available: {available})")]
    MissingColumn { path: PathBuf, column: String, available: String },
    #[error("{path}: line {line} (data row {}), column {column:?}: {value:?} is not a number", line.saturating_sub(1))]
    NonNumeric { path: PathBuf, line: u64, column: String, value: String },
    #[error(
        "{path}: line {line} (data row {}), column {column:?}: value {value:?} is not finite (NaN/inf)",
        line.saturating_sub(1)
    )]
    NonFinite { path: PathBuf, line: u64, column: String, value: String },
    #[error(
        "{path}: {rows} rows is too few for --window {window}: need at least {needed} rows \
         (one training and one held-out window)"
    )]
    TooFewRows { path: PathBuf, rows: usize, window: usize, needed: usize },
    #[error("window must be at least 1 (got {window})")]
    BadWindow { window: usize },
}

/// A multi-channel recording: `samples[c][row]`, in the file's units.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub path: PathBuf,
    pub columns: Vec<String>,
    /// Channels-first: `samples[c][row]`.
    pub samples: Vec<Vec<f32>>,
}

impl Recording {
    /// Reads `path` (header row + numeric rows) and keeps `columns`, in that order, as channels.
    pub fn from_csv(path: impl AsRef<Path>, columns: &[String]) -> Result<Recording, DataError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(file);
        let csv_err = |e: csv::Error, path: &Path| -> DataError {
            if let csv::ErrorKind::Io(_) = e.kind() {
                if let csv::ErrorKind::Io(io) = e.into_kind() {
                    return DataError::Io { path: path.to_path_buf(), source: io };
                }
                unreachable!()
            }
            let line = e.position().map_or(0, |p| p.line());
            DataError::Csv { path: path.to_path_buf(), line, message: e.to_string() }
        };
        let headers = reader.headers().map_err(|e| csv_err(e, &path))?.clone();
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(DataError::Empty { path });
        }
        let available = headers.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
        if columns.is_empty() {
            return Err(DataError::NoColumns { path, available });
        }
        let mut idx = Vec::with_capacity(columns.len());
        for col in columns {
            match headers.iter().position(|h| h == col) {
                Some(i) => idx.push(i),
                None => return Err(DataError::MissingColumn { path, column: col.clone(), available }),
            }
        }
        let mut samples = vec![Vec::new(); columns.len()];
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(csv_err(e, &path)),
            }
            let line = record.position().map_or(0, |p| p.line());
            for (c, &i) in idx.iter().enumerate() {
                let cell = record.get(i).unwrap_or("");
                let v: f32 = cell.parse().map_err(|_| DataError::NonNumeric {
                    path: path.clone(),
                    line,
                    column: columns[c].clone(),
                    value: cell.to_string(),
                })?;
                if !v.is_finite() {
                    return Err(DataError::NonFinite {
                        path: path.clone(),
                        line,
                        column: columns[c].clone(),
                        value: cell.to_string(),
                    });
                }
                samples[c].push(v);
            }
        }
        if samples[0].is_empty() {
            return Err(DataError::NoRows { path });
        }
        Ok(Recording { path, columns: columns.to_vec(), samples })
    }

    /// Builds a recording from in-memory channels (tests, synthetic data).
    pub fn from_channels(path: impl Into<PathBuf>, columns: Vec<String>, samples: Vec<Vec<f32>>) -> Self {
        Recording { path: path.into(), columns, samples }
    }

    pub fn channels(&self) -> usize {
        self.samples.len()
    }

    pub fn rows(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    /// Non-overlapping windows (hop = window), each `[C][T]` flattened channel-major.
    /// A trailing partial window is dropped.
    pub fn windows(&self, window: usize) -> Windows {
        let c = self.channels();
        let n = if window == 0 { 0 } else { self.rows() / window };
        let mut data = Vec::with_capacity(n * c * window);
        for w in 0..n {
            for ch in &self.samples {
                data.extend_from_slice(&ch[w * window..(w + 1) * window]);
            }
        }
        Windows { dim: c * window, data }
    }

    /// Windows of `window` samples starting every `hop` rows, all inside `rows` (training-time
    /// augmentation: `hop < window` gives overlapping windows). Same layout as [`Self::windows`].
    pub fn windows_with_hop(&self, window: usize, hop: usize, rows: std::ops::Range<usize>) -> Windows {
        let c = self.channels();
        let end = rows.end.min(self.rows());
        let mut data = Vec::new();
        if window > 0 && hop > 0 {
            let mut start = rows.start;
            while start + window <= end {
                for ch in &self.samples {
                    data.extend_from_slice(&ch[start..start + window]);
                }
                start += hop;
            }
        }
        Windows { dim: c * window, data }
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
        if self.dim == 0 {
            0
        } else {
            self.data.len() / self.dim
        }
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
}

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
    if !(max_abs > 0.0) || !max_abs.is_finite() {
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

/// A recording cut into windows, split in time, normalized.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub channels: usize,
    pub window: usize,
    pub rows: usize,
    /// Training part (first 80 % of the windows), original units.
    pub train: Windows,
    /// Held-out part (last 20 %), original units.
    pub held_out: Windows,
    pub normalization: Normalization,
    pub counts_per_unit: f32,
    pub train_norm: Windows,
    pub held_out_norm: Windows,
}

/// Number of training windows out of `n` (at least 1 and leaving at least 1 held out when n ≥ 2).
pub fn train_window_count(n: usize) -> usize {
    ((n as f64 * TRAIN_FRACTION).floor() as usize).clamp(1, n.saturating_sub(1).max(1))
}

impl Dataset {
    pub fn prepare(rec: &Recording, window: usize) -> Result<Dataset, DataError> {
        if window == 0 {
            return Err(DataError::BadWindow { window });
        }
        let all = rec.windows(window);
        let n = all.len();
        if n < 2 {
            return Err(DataError::TooFewRows { path: rec.path.clone(), rows: rec.rows(), window, needed: 2 * window });
        }
        let n_train = train_window_count(n);
        let train = all.slice(0..n_train);
        let held_out = all.slice(n_train..n);
        let normalization = Normalization::fit(&train, rec.channels());
        let max_abs = train.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        Ok(Dataset {
            path: rec.path.clone(),
            columns: rec.columns.clone(),
            channels: rec.channels(),
            window,
            rows: rec.rows(),
            train_norm: normalization.normalize(&train),
            held_out_norm: normalization.normalize(&held_out),
            counts_per_unit: counts_per_unit(max_abs),
            train,
            held_out,
            normalization,
        })
    }

    pub fn load(path: impl AsRef<Path>, columns: &[String], window: usize) -> Result<Dataset, DataError> {
        Dataset::prepare(&Recording::from_csv(path, columns)?, window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn csv_file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_selected_columns_as_channels() {
        let f = csv_file("t,a,b\n0,1.5,10\n1,2.5,20\n2,3.5,30\n");
        let r = Recording::from_csv(f.path(), &cols(&["b", "a"])).unwrap();
        assert_eq!(r.samples, vec![vec![10.0, 20.0, 30.0], vec![1.5, 2.5, 3.5]]);
        let w = r.windows(1);
        assert_eq!(w.len(), 3);
        assert_eq!(w.get(1), &[20.0, 2.5]);
        let w = Recording::from_channels("x", cols(&["a", "b"]), vec![vec![1., 2., 3., 4.], vec![5., 6., 7., 8.]])
            .windows(2);
        assert_eq!(w.get(0), &[1., 2., 5., 6.]);
        assert_eq!(w.get(1), &[3., 4., 7., 8.]);
    }

    #[test]
    fn missing_column_lists_available() {
        let f = csv_file("t,a\n0,1\n");
        let e = Recording::from_csv(f.path(), &cols(&["zz"])).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::MissingColumn { .. }));
        assert!(msg.contains("\"zz\"") && msg.contains("\"t\", \"a\""), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()));
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let f = csv_file("a\n1\n2\nabc\n");
        let e = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::NonNumeric { line: 4, .. }), "{msg}");
        assert!(msg.contains("line 4 (data row 3)") && msg.contains("\"a\"") && msg.contains("abc"), "{msg}");
    }

    #[test]
    fn nan_and_inf_are_rejected() {
        for bad in ["NaN", "inf", "-inf"] {
            let f = csv_file(&format!("a\n1\n{bad}\n"));
            let e = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err();
            assert!(matches!(e, DataError::NonFinite { line: 3, .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_file_and_no_rows() {
        let f = csv_file("");
        let e = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err();
        assert!(matches!(e, DataError::Empty { .. }), "{e}");
        let f = csv_file("a\n");
        let e = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err();
        assert!(matches!(e, DataError::NoRows { .. }), "{e}");
        let e = Recording::from_csv("/nonexistent/x.csv", &cols(&["a"])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.csv"));
    }

    #[test]
    fn too_few_rows() {
        let f = csv_file("a\n1\n2\n3\n");
        let e = Dataset::load(f.path(), &cols(&["a"]), 2).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::TooFewRows { rows: 3, window: 2, needed: 4, .. }), "{msg}");
        assert!(msg.contains("3 rows") && msg.contains("--window 2"), "{msg}");
        let f = csv_file("a\n1\n2\n3\n4\n");
        let d = Dataset::load(f.path(), &cols(&["a"]), 2).unwrap();
        assert_eq!((d.train.len(), d.held_out.len()), (1, 1));
    }

    #[test]
    fn split_and_normalization_use_training_part_only() {
        let x: Vec<f32> = (0..100).map(|i| if i < 80 { (i % 2) as f32 } else { 100.0 }).collect();
        let rec = Recording::from_channels("mem", cols(&["a"]), vec![x]);
        let d = Dataset::prepare(&rec, 10).unwrap();
        assert_eq!((d.train.len(), d.held_out.len()), (8, 2));
        assert!((d.normalization.mean[0] - 0.5).abs() < 1e-6);
        assert!((d.normalization.std[0] - 0.5).abs() < 1e-6);
        // max |x_train| = 1 → 2 · 2^k <= 32767 → k = 13 (2^14 would give 32768)
        assert_eq!(d.counts_per_unit, 8192.0);
    }

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

    #[test]
    fn windows_with_hop_stay_inside_the_range() {
        let x: Vec<f32> = (0..20).map(|v| v as f32).collect();
        let y: Vec<f32> = (0..20).map(|v| -(v as f32)).collect();
        let rec = Recording::from_channels("mem", cols(&["x", "y"]), vec![x, y]);
        let w = rec.windows_with_hop(4, 2, 0..9);
        assert_eq!(w.len(), 3); // starts 0, 2, 4; 6 + 4 > 9
        assert_eq!(w.get(1), &[2., 3., 4., 5., -2., -3., -4., -5.]);
        // hop = window over all rows is the ordinary windowing.
        assert_eq!(rec.windows_with_hop(4, 4, 0..20), rec.windows(4));
    }

    #[test]
    fn interleaving_round_trip() {
        let inter = [1., 10., 2., 20., 3., 30.];
        let cf = interleaved_to_channels_first(&inter, 2);
        assert_eq!(cf, vec![1., 2., 3., 10., 20., 30.]);
        assert_eq!(channels_first_to_interleaved(&cf, 2), inter.to_vec());
    }
}
