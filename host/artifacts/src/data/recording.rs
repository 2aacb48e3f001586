//! CSV recordings: a header row, one row per time step, the selected columns as channels.

use std::path::{Path, PathBuf};

use funnel_shared::stream::to_counts;

use super::Windows;

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
    #[error("{path}: column {column:?} appears {count} times in the header: rename the copies so it names one column")]
    AmbiguousColumn { path: PathBuf, column: String, count: usize },
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
    #[error(
        "{path}: line {line} is blank: a missing row would shift every later sample in time (remove the line, or \
         fill the gap)"
    )]
    BlankLine { path: PathBuf, line: u64 },
    #[error("window must be at least 1 (got {window})")]
    BadWindow { window: usize },
    #[error("the normalization has {found} channel(s), the recording {expected}")]
    NormalizationChannels { expected: usize, found: usize },
}

/// Longest line a recording may have. Rows of numbers are short; a longer line is a broken
/// file, and reading it whole could take all memory.
pub const MAX_LINE_BYTES: u64 = 1 << 20;

/// Fails the read of a line longer than [`MAX_LINE_BYTES`], naming the line.
struct LineLimit<R> {
    inner: R,
    line_bytes: u64,
    line: u64,
}

impl<R: std::io::Read> std::io::Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line += 1;
                self.line_bytes = 0;
            } else {
                self.line_bytes += 1;
                if self.line_bytes > MAX_LINE_BYTES {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line {} is longer than {MAX_LINE_BYTES} bytes: not a recording", self.line),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Newlines inside the (quoted) fields of a record: lines it spans beyond its first.
fn newlines(record: &csv::StringRecord) -> u64 {
    record.iter().map(|field| field.matches('\n').count() as u64).sum()
}

/// Longest cell an error message quotes whole.
const MAX_QUOTED_CELL: usize = 40;

/// A cell for an error message: whole when short, else its start and its length (an
/// unterminated quote can make one cell of the rest of a file).
fn quoted_cell(cell: &str) -> String {
    if cell.len() <= MAX_QUOTED_CELL {
        return cell.to_string();
    }
    let end = (0..=MAX_QUOTED_CELL).rev().find(|&i| cell.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes)", &cell[..end], cell.len())
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
        let file = LineLimit { inner: std::io::BufReader::new(file), line_bytes: 0, line: 1 };
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
            let count = headers.iter().filter(|&h| h == col).count();
            if count > 1 {
                return Err(DataError::AmbiguousColumn { path, column: col.clone(), count });
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
            // The csv reader skips blank lines, and a skipped row would shift every later sample
            // in time without a word. A record's position is where the previous one ended, so
            // blank lines before it make it span more lines than its own.
            let start = record.position().map_or(0, |p| p.line());
            if reader.position().line().saturating_sub(start) > 1 + newlines(&record) {
                return Err(DataError::BlankLine { path, line: start });
            }
            let line = start;
            for (c, &i) in idx.iter().enumerate() {
                let cell = record.get(i).unwrap_or("");
                let v: f32 = cell.parse().map_err(|_| DataError::NonNumeric {
                    path: path.clone(),
                    line,
                    column: columns[c].clone(),
                    value: quoted_cell(cell),
                })?;
                if !v.is_finite() {
                    return Err(DataError::NonFinite {
                        path: path.clone(),
                        line,
                        column: columns[c].clone(),
                        value: quoted_cell(cell),
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

    /// The first `rows` rows (all of them when there are fewer).
    pub fn head(&self, rows: usize) -> Recording {
        let samples = self.samples.iter().map(|ch| ch[..rows.min(ch.len())].to_vec()).collect();
        Recording { path: self.path.clone(), columns: self.columns.clone(), samples }
    }

    pub fn rows(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    /// The recording as device counts, `[T][C]` interleaved as a sensor delivers them, with the
    /// conversion the device's front end is modelled by (`funnel_shared::stream::to_counts`).
    pub fn device_counts(&self, counts_per_unit: f32) -> Vec<i16> {
        (0..self.rows()).flat_map(|t| self.samples.iter().map(move |ch| to_counts(ch[t], counts_per_unit))).collect()
    }

    /// Non-overlapping windows (hop = window), each `[C][T]` flattened channel-major.
    /// A trailing partial window is dropped.
    pub fn windows(&self, window: usize) -> Windows {
        let c = self.channels();
        let n = self.rows().checked_div(window).unwrap_or(0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_support::{cols, csv_file};

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
    fn a_column_named_twice_in_the_header_is_refused() {
        let f = csv_file("t,a,a\n0,1,2\n");
        let e = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err();
        assert!(matches!(e, DataError::AmbiguousColumn { count: 2, .. }), "{e}");
        assert!(Recording::from_csv(f.path(), &cols(&["t"])).is_ok());
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
    fn counts_are_interleaved_by_time_step() {
        let rec = Recording::from_channels("mem", cols(&["a", "b"]), vec![vec![0.5, 1.0, 1.5], vec![-0.5, -1.0, -1.5]]);
        assert_eq!(rec.device_counts(4.0), vec![2, -2, 4, -4, 6, -6]);
    }

    #[test]
    fn a_blank_line_is_refused_not_skipped() {
        let f = csv_file("a\n1\n2\n\n4\n");
        let e = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err();
        assert!(matches!(e, DataError::BlankLine { line: 4, .. }), "{e}");
        assert!(e.to_string().contains("line 4 is blank"), "{e}");
        // A quoted field over two lines is not a blank line.
        let f = csv_file("a,note\n1,\"two\nlines\"\n2,x\n");
        assert_eq!(Recording::from_csv(f.path(), &cols(&["a"])).unwrap().samples, vec![vec![1.0, 2.0]]);
    }

    #[test]
    fn errors_quote_at_most_a_short_cell() {
        let long = format!("a\n1\n\"{}\n", "x".repeat(100_000));
        let f = csv_file(&long);
        let msg = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err().to_string();
        assert!(msg.len() < 400 && msg.contains("bytes)"), "{} bytes: {}", msg.len(), &msg[..msg.len().min(400)]);
    }

    #[test]
    fn an_absurdly_long_line_is_refused_without_reading_it_whole() {
        let f = csv_file(&format!("a\n1\n{}\n", ",".repeat(2 << 20)));
        let e = Recording::from_csv(f.path(), &cols(&["a"])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3 is longer than") && msg.len() < 300, "{msg}");
    }
}
