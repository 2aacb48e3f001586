//! The bottom layer of Funnel's host side: what the stages pass to each other and keep on disk.
//!
//! - [`data`]: recordings (CSV), windows, the time split and normalization ([`Dataset`]);
//! - [`spec`]: the shape of an autoencoder ([`ModelSpec`]), [`training`]: what training did;
//! - [`net`]: a trained network as plain arrays ([`FloatNet`], [`FloatEncoder`]);
//! - [`blob`]: the device's model blob, validated ([`Blob`]); [`residual`]: the error-bounded
//!   residual coder fitted to a recording;
//! - [`card`]: `model.json` ([`ModelCard`]), [`model_dir`]: the directory that holds it all;
//! - [`metrics`]: reconstruction quality and bits on the wire ([`Metrics`], [`Method`]).
//!
//! Nothing here trains, runs ONNX or draws: those stages live in the `funnel` crate above this
//! one, so tools that only read model directories (xtask, a gateway) build without them.

pub mod blob;
pub mod card;
pub mod data;
pub mod metrics;
pub mod model_dir;
pub mod net;
pub mod residual;
pub mod spec;
pub mod training;

pub use blob::Blob;
pub use card::ModelCard;
pub use data::{Dataset, Recording, Windows};
pub use metrics::{Method, Metrics};
pub use model_dir::{Graph, ModelDir};
pub use net::{FloatEncoder, FloatNet};
pub use spec::ModelSpec;
