//! Paths shared by the end-to-end tests.

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped default model.
pub fn ecg_model() -> PathBuf {
    root().join("models/ecg")
}

/// The shipped ECG recording and its column.
pub fn ecg_data() -> (PathBuf, Vec<String>) {
    (root().join("data/mitbih208_ecg.csv"), vec!["ecg_mlii_mV".to_string()])
}
