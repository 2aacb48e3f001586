//! Paths and checks shared by the end-to-end tests.

use std::path::{Path, PathBuf};

use funnel_artifacts::metrics::{Method, Quality};
use funnel_artifacts::{ModelCard, Recording, Windows};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped default model.
pub fn ecg_model() -> PathBuf {
    root().join("models/ecg")
}

/// The shipped lossless ECG model: bounded with `--max-error 0` at MIT-BIH's 200 counts/mV.
pub fn ecg_lossless_model() -> PathBuf {
    root().join("models/ecg-lossless")
}

/// The shipped error-bounded ECG model: `--max-error 0.07` (14 counts at 200 counts/mV), its
/// frames carrying latent codes and the residuals from the integer decoder's rebuild of them.
pub fn ecg_bounded_model() -> PathBuf {
    root().join("models/ecg-bounded")
}

/// The shipped ECG recording and its column.
pub fn ecg_data() -> (PathBuf, Vec<String>) {
    (root().join("data/mitbih208_ecg.csv"), vec!["ecg_mlii_mV".to_string()])
}

/// `(sample_index, value or None, status)` rows of a one-channel reconstruction CSV written by
/// `funnel decode` (the header must name `column`).
pub fn read_rows(path: &Path, column: &str) -> Vec<(u64, Option<f64>, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(format!("sample_index,{column},status").as_str()));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), (!f[1].is_empty()).then(|| f[1].parse().unwrap()), f[2].to_string())
        })
        .collect()
}

/// PRDN of a decoded one-channel CSV over the held-out part of the recording `data` that
/// `card` was trained on, and the number of windows it covers: as far as the card's device
/// figure goes (sent alone, the held-out part's last windows may fill no frame), or as far as
/// the CSV goes when that is shorter (the frames of the whole recording end where they end).
/// Rows are taken by sample index; every held-out row up to there must be present.
pub fn held_out_prdn(csv: &Path, card: &ModelCard, data: &Path) -> (f64, usize) {
    let rows = read_rows(csv, &card.columns[0]);
    let rec = Recording::from_csv(data, &card.columns).unwrap();
    let start = card.split.train_windows * card.window();
    let decoded = rows.len().saturating_sub(start) / card.window();
    let windows = card.held_out.get(&Method::Int8Device).map_or(card.split.held_out_windows, |m| m.windows);
    let windows = windows.min(decoded);
    let end = start + windows * card.window();
    let original = Windows::new(card.window(), rec.samples[0][start..end].to_vec());
    let values: Vec<f32> = rows[start..end]
        .iter()
        .enumerate()
        .map(|(i, (index, value, status))| {
            assert_eq!(*index as usize, start + i);
            assert_ne!(status, "missing");
            value.unwrap() as f32
        })
        .collect();
    (Quality::of(&original, &Windows::new(card.window(), values), 1).prdn, windows)
}
