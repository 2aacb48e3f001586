//! What runs a float graph: the [`Runtime`] trait, tract (always built) and ONNX Runtime
//! (feature `ort`) for the ONNX files of a model directory. The trainer's candle network is a
//! third [`Backend`] (see `train::CandleRuntime`), chosen one layer up where training exists.

#[cfg(feature = "ort")]
mod ort;
mod signature;
mod tract;

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

#[cfg(feature = "ort")]
pub use self::ort::{ort_environment, OrtModel, OrtSession};
pub use self::tract::{load_with_tract, TractModel, TractPlan};
pub use signature::OnnxSignature;

/// A float graph with a `[N, input_len]` input and a `[N, output_len]` output.
pub trait Runtime {
    /// Values per input row.
    fn input_len(&self) -> usize;
    /// Values per output row.
    fn output_len(&self) -> usize;
    /// Runs a batch: `input` is `[batch][input_len]`, returns `[batch][output_len]`.
    fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f32>>;
}

/// A stand-in latent decoder for codec tests and the fuzzers: output sample `t` of a window is
/// latent `t % latent`, deterministic and easy to check.
#[derive(Clone, Copy, Debug)]
pub struct RepeatLatents {
    pub latent: usize,
    pub window: usize,
}

impl Runtime for RepeatLatents {
    fn input_len(&self) -> usize {
        self.latent
    }

    fn output_len(&self) -> usize {
        self.window
    }

    fn run(&self, latents: &[f32], batch: usize) -> Result<Vec<f32>> {
        let (k, w) = (self.latent, self.window);
        Ok((0..batch).flat_map(|b| (0..w).map(move |t| latents[b * k + t % k])).collect())
    }
}

/// How an inference engine runs one batch of an ONNX graph (tract, ONNX Runtime).
pub trait Engine {
    /// `input` is `batch` (at least 1) rows of `signature.input_len` values, already checked.
    fn infer(&self, signature: &OnnxSignature, input: &[f32], batch: usize) -> Result<Vec<f32>>;
}

/// An ONNX file loaded by an [`Engine`]; batches are checked against the file's signature on
/// the way in and out, whichever engine runs them.
pub struct OnnxModel<E> {
    pub signature: OnnxSignature,
    engine: E,
}

impl<E> std::fmt::Debug for OnnxModel<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("signature", &self.signature).finish()
    }
}

impl<E: Engine> Runtime for OnnxModel<E> {
    fn input_len(&self) -> usize {
        self.signature.input_len
    }

    fn output_len(&self) -> usize {
        self.signature.output_len
    }

    fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.signature.check_input(input, batch)?;
        if batch == 0 {
            return Ok(Vec::new());
        }
        let output = self.engine.infer(&self.signature, input, batch)?;
        self.signature.check_output(output.len(), batch)?;
        Ok(output)
    }
}

/// What runs a model's float graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The trainer's network on `model.safetensors` (needs the `train` feature).
    Candle,
    /// The ONNX files with tract.
    Tract,
    /// The ONNX files with ONNX Runtime (feature `ort`, `ORT_DYLIB_PATH`).
    Ort,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Candle => "candle",
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "candle" => Ok(Backend::Candle),
            "tract" => Ok(Backend::Tract),
            "ort" => Ok(Backend::Ort),
            _ => bail!("unknown backend {s:?} (candle, tract or ort)"),
        }
    }
}

/// Loads the ONNX file at `path` with an ONNX backend.
pub fn load_onnx(path: &Path, backend: Backend) -> Result<Box<dyn Runtime>> {
    match backend {
        Backend::Tract => Ok(Box::new(load_with_tract(path)?)),
        #[cfg(feature = "ort")]
        Backend::Ort => Ok(Box::new(OrtModel::load(path)?)),
        #[cfg(not(feature = "ort"))]
        Backend::Ort => {
            bail!("--backend ort: this funnel was built without ONNX Runtime; rebuild with `--features ort`")
        }
        Backend::Candle => bail!("candle runs the checkpoint model.safetensors, not {}", path.display()),
    }
}
