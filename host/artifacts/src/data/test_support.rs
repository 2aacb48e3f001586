//! Small recordings for the data tests.

use std::io::Write;

/// A temporary CSV file with `content`.
pub(crate) fn csv_file(content: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content.as_bytes()).unwrap();
    f
}

/// Column names as owned strings.
pub(crate) fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}
