//! A model directory: the one place that knows its file names, and how to read and write them.
//!
//! ```text
//! model.json          the card (ModelCard): data, split, normalization, training, metrics
//! CARD.md             the same card as Markdown, rewritten with every save
//! model.safetensors   float weights (the trainer's checkpoint)
//! autoencoder.onnx    encoder.onnx    decoder.onnx     the float graphs
//! encoder.fq8         the device's int8 model blob (Blob)
//! ```
//!
//! Files are replaced atomically (written beside, then renamed), so a failed write never leaves
//! half a file behind.

use std::path::{Component, Path, PathBuf};

use crate::blob::{Blob, BlobCheckError};
use crate::card::{FileEntry, ModelCard};

/// The three float graphs of a model, as ONNX files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Graph {
    /// `[N, C*T]` normalized windows → `[N, K]` latents.
    Encoder,
    /// `[N, K]` latents → `[N, C*T]` normalized windows.
    Decoder,
    /// `[N, C*T]` → `[N, C*T]`, both halves.
    Autoencoder,
}

impl Graph {
    pub const ALL: [Graph; 3] = [Graph::Autoencoder, Graph::Encoder, Graph::Decoder];

    pub fn file_name(self) -> &'static str {
        match self {
            Graph::Encoder => "encoder.onnx",
            Graph::Decoder => "decoder.onnx",
            Graph::Autoencoder => "autoencoder.onnx",
        }
    }
}

/// Why a model directory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    #[error("cannot read model card {path} (is --model a trained model directory?): {source}")]
    CardUnreadable { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid Funnel model card: {source}")]
    CardInvalid { path: PathBuf, source: serde_json::Error },
    #[error("{path} contradicts itself: {message}")]
    CardInconsistent { path: PathBuf, message: String },
    #[error("cannot read {path} (run `funnel quantize --model {dir}` first): {source}", dir = .path.parent().unwrap_or(Path::new(".")).display())]
    BlobUnreadable { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    BlobInvalid { path: PathBuf, source: BlobCheckError },
    #[error("{dir}: model.json has {card}; encoder.fq8 has {blob}: the card and the blob are of different models")]
    BlobOfAnotherModel { dir: PathBuf, card: String, blob: String },
    #[error(
        "{path} is not the file model.json was saved with (SHA-256 {found}, the card says {expected}): a file of \
         another model? Copy the model directory whole"
    )]
    FileOfAnotherModel { path: PathBuf, expected: String, found: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot list {path}: {source}")]
    List { path: PathBuf, source: std::io::Error },
}

/// A model directory on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDir {
    path: PathBuf,
}

impl ModelDir {
    pub const CARD: &'static str = "model.json";
    pub const CARD_MARKDOWN: &'static str = "CARD.md";
    pub const WEIGHTS: &'static str = "model.safetensors";
    pub const BLOB: &'static str = "encoder.fq8";

    pub fn new(path: impl Into<PathBuf>) -> ModelDir {
        ModelDir { path: path.into() }
    }

    /// Creates the directory (and its parents) if needed.
    pub fn create(path: impl Into<PathBuf>) -> Result<ModelDir, ArtifactError> {
        let dir = ModelDir::new(path);
        std::fs::create_dir_all(&dir.path).map_err(|source| ArtifactError::Write { path: dir.path.clone(), source })?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn card_path(&self) -> PathBuf {
        self.path.join(Self::CARD)
    }

    pub fn card_markdown_path(&self) -> PathBuf {
        self.path.join(Self::CARD_MARKDOWN)
    }

    pub fn weights_path(&self) -> PathBuf {
        self.path.join(Self::WEIGHTS)
    }

    pub fn blob_path(&self) -> PathBuf {
        self.path.join(Self::BLOB)
    }

    pub fn onnx_path(&self, graph: Graph) -> PathBuf {
        self.path.join(graph.file_name())
    }

    pub fn has_blob(&self) -> bool {
        self.blob_path().is_file()
    }

    pub fn load_card(&self) -> Result<ModelCard, ArtifactError> {
        let path = self.card_path();
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ArtifactError::CardUnreadable { path: path.clone(), source })?;
        let card: ModelCard =
            serde_json::from_str(&text).map_err(|source| ArtifactError::CardInvalid { path: path.clone(), source })?;
        card.check().map_err(|message| ArtifactError::CardInconsistent { path, message })?;
        Ok(card)
    }

    /// Reads and checks `encoder.fq8`.
    pub fn load_blob(&self) -> Result<Blob, ArtifactError> {
        let path = self.blob_path();
        let bytes =
            std::fs::read(&path).map_err(|source| ArtifactError::BlobUnreadable { path: path.clone(), source })?;
        Blob::from_bytes(bytes).map_err(|source| ArtifactError::BlobInvalid { path, source })
    }

    /// Reads `encoder.fq8` and checks it against `card`: the same channels, window, codes per
    /// window and device scale — or the two files are of different models and nothing they
    /// make together can be trusted.
    pub fn load_blob_of(&self, card: &ModelCard) -> Result<Blob, ArtifactError> {
        let blob = self.load_blob()?;
        let card_says = (card.columns.len(), card.window(), card.latent(), card.counts_per_unit);
        let blob_says = (blob.channels(), blob.window(), blob.latent(), blob.counts_per_unit());
        if card_says != blob_says {
            let describe = |(channels, window, codes, cpu): (usize, usize, usize, f32), what: &str| {
                format!("{channels} {what}, window {window}, {codes} codes, {cpu} counts/unit")
            };
            return Err(ArtifactError::BlobOfAnotherModel {
                dir: self.path.clone(),
                card: describe(card_says, "column(s)"),
                blob: describe(blob_says, "channel(s)"),
            });
        }
        Ok(blob)
    }

    /// The recording a card names, resolved against this directory.
    pub fn data_path(&self, card: &ModelCard) -> PathBuf {
        self.path.join(&card.data_file)
    }

    /// How a card names `data`: relative to this directory when both can be resolved (so the
    /// directory and its data can move together), else as given.
    pub fn data_file_name(&self, data: &Path) -> String {
        match (self.path.canonicalize(), data.canonicalize()) {
            (Ok(dir), Ok(data)) => relative_path(&dir, &data).unwrap_or(data),
            _ => data.to_path_buf(),
        }
        .display()
        .to_string()
    }

    /// Replaces the file `name` with `bytes` atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
        let path = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.partial"));
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, &path)).map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            ArtifactError::Write { path, source }
        })
    }

    /// Re-lists the directory's files into the card (call after adding files), then writes
    /// `model.json` and `CARD.md`.
    pub fn save_card(&self, card: &mut ModelCard) -> Result<(), ArtifactError> {
        self.save_with_card(&[], card)
    }

    /// Writes `files` (name, bytes) and the card as one update: everything goes to temporary
    /// files first, so that failing to write any of them leaves the directory as it was (a new
    /// blob never stands beside the old card); then each is renamed into place, the card last.
    pub fn save_with_card(&self, files: &[(&str, &[u8])], card: &mut ModelCard) -> Result<(), ArtifactError> {
        card.files = self.list_files_with(files)?;
        let json = serde_json::to_string_pretty(card).expect("a card always serializes") + "\n";
        let markdown = card.to_markdown();
        let all: Vec<(&str, &[u8])> = files
            .iter()
            .copied()
            .chain([(Self::CARD, json.as_bytes()), (Self::CARD_MARKDOWN, markdown.as_bytes())])
            .collect();
        let mut staged = Vec::with_capacity(all.len());
        for &(name, bytes) in &all {
            let temporary = self.path.join(format!(".{name}.partial"));
            if let Err(source) = std::fs::write(&temporary, bytes) {
                for t in staged.iter().chain([&temporary]) {
                    let _ = std::fs::remove_file(t);
                }
                return Err(ArtifactError::Write { path: self.path.join(name), source });
            }
            staged.push(temporary);
        }
        for (&(name, _), temporary) in all.iter().zip(&staged) {
            let path = self.path.join(name);
            std::fs::rename(temporary, &path).map_err(|source| ArtifactError::Write { path, source })?;
        }
        Ok(())
    }

    /// The path of file `name` of the directory, once checked against the SHA-256 the card
    /// recorded for it: a graph or checkpoint copied in from another model is refused rather
    /// than run on this model's codes.
    pub fn checked_file(&self, card: &ModelCard, name: &str) -> Result<PathBuf, ArtifactError> {
        let path = self.path.join(name);
        let Some(expected) = card.files.iter().find(|f| f.name == name).and_then(|f| f.sha256.clone()) else {
            return Ok(path);
        };
        let bytes = std::fs::read(&path).map_err(|source| ArtifactError::Read { path: path.clone(), source })?;
        let found = sha256_hex(&bytes);
        if found != expected {
            return Err(ArtifactError::FileOfAnotherModel { path, expected, found });
        }
        Ok(path)
    }

    /// Files of the directory with sizes and hashes as they will be once `files` are written,
    /// except the card itself, sorted by name.
    fn list_files_with(&self, files: &[(&str, &[u8])]) -> Result<Vec<FileEntry>, ArtifactError> {
        let list_err = |source| ArtifactError::List { path: self.path.clone(), source };
        let overrides = files;
        let mut listed = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == Self::CARD || name == Self::CARD_MARKDOWN || name.starts_with('.') {
                continue;
            }
            if !entry.file_type().map_err(list_err)?.is_file() {
                continue;
            }
            if overrides.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let bytes =
                std::fs::read(entry.path()).map_err(|source| ArtifactError::Read { path: entry.path(), source })?;
            listed.push(FileEntry { name, bytes: bytes.len() as u64, sha256: Some(sha256_hex(&bytes)) });
        }
        for &(name, bytes) in overrides {
            listed.push(FileEntry {
                name: name.to_string(),
                bytes: bytes.len() as u64,
                sha256: Some(sha256_hex(bytes)),
            });
        }
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `target` relative to the directory `base` (both absolute and normalized), `None` when they
/// share no root.
fn relative_path(base: &Path, target: &Path) -> Option<PathBuf> {
    let (base, target): (Vec<Component>, Vec<Component>) = (base.components().collect(), target.components().collect());
    if base.first() != target.first() {
        return None;
    }
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &target[common..] {
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths_are_kept_relative_to_the_model() {
        assert_eq!(
            relative_path(Path::new("/r/models/ecg"), Path::new("/r/data/x.csv")),
            Some(PathBuf::from("../../data/x.csv"))
        );
        assert_eq!(relative_path(Path::new("/r/m"), Path::new("/r/m/x.csv")), Some(PathBuf::from("x.csv")));
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::create(tmp.path().join("models/a")).unwrap();
        let data = tmp.path().join("rec.csv");
        std::fs::write(&data, "x\n1\n").unwrap();
        let name = dir.data_file_name(&data);
        assert_eq!(name, "../../rec.csv");
        assert_eq!(dir.path().join(&name).canonicalize().unwrap(), data.canonicalize().unwrap());
    }

    #[test]
    fn writes_replace_files_whole_and_missing_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path());
        dir.write("a.bin", b"one").unwrap();
        dir.write("a.bin", b"two").unwrap();
        assert_eq!(std::fs::read(tmp.path().join("a.bin")).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "no temporary file is left");
        let e = dir.load_card().unwrap_err().to_string();
        assert!(e.contains("model.json") && e.contains("trained model directory"), "{e}");
        let e = dir.load_blob().unwrap_err().to_string();
        assert!(e.contains("encoder.fq8") && e.contains("funnel quantize"), "{e}");
        dir.write(ModelDir::BLOB, b"junk").unwrap();
        let e = dir.load_blob().unwrap_err().to_string();
        assert!(e.contains("encoder.fq8") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn a_blob_and_card_update_that_cannot_finish_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path());
        let shipped = ModelDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/ecg")).load_card().unwrap();
        let mut card = shipped.clone();
        dir.save_with_card(&[(ModelDir::BLOB, b"old")], &mut card).unwrap();
        let card_before = std::fs::read(dir.card_path()).unwrap();
        // The card's temporary cannot be written (a directory stands in its place).
        std::fs::create_dir(tmp.path().join(".model.json.partial")).unwrap();
        let e = dir.save_with_card(&[(ModelDir::BLOB, b"new")], &mut card).unwrap_err();
        assert!(e.to_string().contains("model.json"), "{e}");
        assert_eq!(std::fs::read(dir.blob_path()).unwrap(), b"old");
        assert_eq!(std::fs::read(dir.card_path()).unwrap(), card_before);
        assert!(!tmp.path().join(".encoder.fq8.partial").exists());
        // Once it can, blob and card change together, the card listing the new blob.
        std::fs::remove_dir(tmp.path().join(".model.json.partial")).unwrap();
        dir.save_with_card(&[(ModelDir::BLOB, b"new")], &mut card).unwrap();
        assert_eq!(std::fs::read(dir.blob_path()).unwrap(), b"new");
        let saved = dir.load_card().unwrap();
        assert_eq!(saved.files.iter().find(|f| f.name == ModelDir::BLOB).unwrap().bytes, 3);
    }

    #[test]
    fn a_file_replaced_after_the_card_was_saved_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path());
        dir.write("decoder.onnx", b"ours").unwrap();
        let shipped = ModelDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/ecg")).load_card().unwrap();
        let card = ModelCard { files: dir.list_files_with(&[]).unwrap(), ..shipped };
        assert_eq!(dir.checked_file(&card, "decoder.onnx").unwrap(), tmp.path().join("decoder.onnx"));
        dir.write("decoder.onnx", b"theirs").unwrap();
        let e = dir.checked_file(&card, "decoder.onnx").unwrap_err();
        assert!(matches!(e, ArtifactError::FileOfAnotherModel { .. }), "{e}");
        assert!(e.to_string().contains("another model"), "{e}");
        // A card that recorded no hash (an older card) cannot tell.
        let old = ModelCard { files: vec![FileEntry { name: "decoder.onnx".into(), bytes: 4, sha256: None }], ..card };
        assert!(dir.checked_file(&old, "decoder.onnx").is_ok());
    }
}
