//! Funnel host tools: data loading, autoencoder training (candle), ONNX export and inference,
//! PCA baseline, metrics, model cards and the CLI commands.

pub mod card;
pub mod commands;
pub mod data;
pub mod decode;
pub mod encode;
pub mod float_model;
pub mod framing;
pub mod metrics;
pub mod onnx;
pub mod pca;
pub mod pipeline;
pub mod quantize;
pub mod train;

pub use commands::{eval_command, plot_command, train_command, EvalReport, TrainOutcome};
