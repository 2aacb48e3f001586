//! Funnel's host side, in layers (each uses only the layers below it; `tests/layering.rs`
//! checks it, and docs/architecture.md draws it):
//!
//! 1. [`cli`] — the `funnel` command line: flags → requests → [`pipeline`] (feature `cli`);
//! 2. [`pipeline`] — one job per command, stages composed in memory;
//! 3. the stages: [`train`] (candle, feature `train`), [`export`] (ONNX), [`quantize`] (int8
//!    blob), [`codec`] (device simulation and stream decoding), [`eval`] (held-out metrics),
//!    [`plot`] (feature `plot`);
//! 4. [`runtime`] — what runs a float graph (tract, ONNX Runtime);
//! 5. `funnel-artifacts` — recordings, datasets, model directories, cards, blobs, metrics;
//! 6. `funnel-shared` — the `no_std` code the device runs.

#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
pub mod eval;
pub mod export;
pub mod pipeline;
#[cfg(feature = "plot")]
pub mod plot;
pub mod quantize;
pub mod runtime;
#[cfg(feature = "train")]
pub mod train;
