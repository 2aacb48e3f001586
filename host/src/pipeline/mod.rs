//! Jobs: what each `funnel` command does, as functions of plain requests. A job loads its inputs,
//! runs stages in memory and writes its outputs; nothing is written before every check of the
//! job has passed, and `run_pipeline` hands artifacts from stage to stage without reloading.
//!
//! The CLI only turns flags into these requests and prints the outcomes.

#[cfg(all(feature = "peers", feature = "plot"))]
mod bench;
#[cfg(feature = "train")]
mod bounded;
mod decode;
mod mqtt;
#[cfg(feature = "train")]
mod search;
#[cfg(feature = "train")]
mod training;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use funnel_artifacts::{Blob, Dataset, Graph, ModelCard, ModelDir, Recording};

#[cfg(all(feature = "peers", feature = "plot"))]
pub use bench::{bench_rd, RdRequest, DEFAULT_RD_WINDOW};
pub use decode::{decode_stream, DecodeRequest, DecodingModel, OutputFormat, Source, StreamOutput};
pub use mqtt::{
    decode_mqtt, gateway_topic, run_gateway, topic_file_name, BrokerAddress, GatewayReport, GatewayRequest, LinkItem,
    LinkSplitter, MqttDecodeOutcome, MqttDecodeRequest, TopicOutput, DEFAULT_DECODE_TOPIC, DEFAULT_GATEWAY_TOPIC,
    MAX_TOPICS,
};
#[cfg(feature = "train")]
pub use search::{default_windows_per_frame, DeviceBudget, MAX_FRAME_SAMPLES, SEARCH_WINDOWS};
#[cfg(all(feature = "train", feature = "plot"))]
pub use training::plot_model;
#[cfg(feature = "train")]
pub use training::{
    quantize_model, run_pipeline, train_model, CodeRate, PipelineOutcome, PlotRequest, QuantizeOutcome,
    QuantizeRequest, TrainOutcome, TrainRequest, CODES_FILE, DEFAULT_BITS_PER_SAMPLE, MAX_RELATIVE_PRDN_LOSS,
    PLOT_FILE, RECONSTRUCTION_FILE,
};

use crate::codec::{simulate, EncodedStream};
use crate::eval::{self, Evaluation, Report};
use crate::runtime::{load_onnx, Backend, Runtime};
use funnel_shared::stream::StreamConfig;

/// Reads `data` for an existing model: the columns must be the card's; windows and
/// normalization are the card's.
pub fn dataset_for_model(dir: &ModelDir, card: &ModelCard, data: &Path, columns: &[String]) -> Result<Dataset> {
    card.check_columns(columns).with_context(|| format!("model {}", dir.path().display()))?;
    Ok(Dataset::new(Recording::from_csv(data, columns)?, card.window(), Some(card.normalization.clone()))?)
}

/// The recording a model was trained on (`data_file` of its card, relative to the directory).
pub fn model_dataset(dir: &ModelDir, card: &ModelCard) -> Result<Dataset> {
    let data = dir.data_path(card);
    dataset_for_model(dir, card, &data, &card.columns).with_context(|| {
        format!("the held-out part of the model's data ({}) is needed to measure the int8 loss", data.display())
    })
}

/// The latent decoder of a model directory, run by an ONNX backend (candle needs the
/// checkpoint: see [`load_runtime`]).
fn onnx_runtime(dir: &ModelDir, card: &ModelCard, graph: Graph, backend: Backend) -> Result<Box<dyn Runtime>> {
    load_onnx(&dir.checked_file(card, graph.file_name())?, backend)
}

/// The candle checkpoint of a model directory, checked against its card, with its variables.
#[cfg(feature = "train")]
fn checkpoint(dir: &ModelDir, card: &ModelCard) -> Result<(crate::train::Autoencoder, crate::train::VarMap)> {
    dir.checked_file(card, ModelDir::WEIGHTS)?;
    crate::train::load_trainable(dir, &card.spec)
}

/// A graph of a model directory run by `backend`: its ONNX file with tract or ONNX Runtime, or
/// its checkpoint with candle (feature `train`).
pub fn load_runtime(dir: &ModelDir, card: &ModelCard, graph: Graph, backend: Backend) -> Result<Box<dyn Runtime>> {
    match backend {
        #[cfg(feature = "train")]
        Backend::Candle => {
            let (model, _) = checkpoint(dir, card)?;
            Ok(Box::new(crate::train::CandleRuntime { model, graph }))
        }
        #[cfg(not(feature = "train"))]
        Backend::Candle => {
            let _ = card;
            anyhow::bail!("--backend candle: this funnel was built without training (candle); use tract or ort")
        }
        Backend::Tract | Backend::Ort => onnx_runtime(dir, card, graph, backend),
    }
}

/// `funnel eval`.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    pub model: PathBuf,
    pub data: PathBuf,
    pub columns: Vec<String>,
    /// What runs the float autoencoder (the int8 device path always decodes with tract).
    pub backend: Backend,
}

/// Held-out metrics of a model on `data`: float, PCA and, once quantized, the device path.
pub fn evaluate_model(request: &EvalRequest) -> Result<Report> {
    let dir = ModelDir::new(&request.model);
    let card = dir.load_card()?;
    let dataset = dataset_for_model(&dir, &card, &request.data, &request.columns)?;
    let autoencoder = load_runtime(&dir, &card, Graph::Autoencoder, request.backend)?;
    let device = match dir.has_blob() {
        true => Some((dir.load_blob_of(&card)?, onnx_runtime(&dir, &card, Graph::Decoder, Backend::Tract)?)),
        false => None,
    };
    eval::evaluate(
        dir.path(),
        &Evaluation {
            dataset: &dataset,
            latent: card.latent(),
            autoencoder: autoencoder.as_ref(),
            backend: request.backend,
            device: device.as_ref().map(|(blob, decoder)| (blob, decoder.as_ref())),
            sensor_bits: card.sensor_bits,
            windows_per_frame: card.stream_windows_per_frame(),
            seam_filter: card.seam_filter,
        },
    )
}

/// `funnel encode`.
#[derive(Clone, Debug)]
pub struct EncodeRequest {
    pub model: PathBuf,
    pub data: PathBuf,
    pub columns: Vec<String>,
    /// Where the frame bytes go.
    pub out: PathBuf,
    /// How the device sends the stream (windows per frame, header interval, session).
    pub stream: StreamRequest,
}

/// How a stream is sent, with the windows per frame left to the model when not given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamRequest {
    /// `None`: the model's own (`windows_per_frame` in its card, what its rate was measured with).
    pub windows_per_frame: Option<u8>,
    /// Everything else; its `windows_per_frame` is the one above.
    pub config: StreamConfig,
}

impl StreamRequest {
    /// The stream of a model whose card says `model_windows_per_frame`.
    pub fn config_for(&self, model_windows_per_frame: u8) -> StreamConfig {
        StreamConfig { windows_per_frame: self.windows_per_frame.unwrap_or(model_windows_per_frame), ..self.config }
    }
}

impl From<StreamConfig> for StreamRequest {
    /// Exactly this stream.
    fn from(config: StreamConfig) -> StreamRequest {
        StreamRequest { windows_per_frame: Some(config.windows_per_frame), config }
    }
}

/// Replays a recording through the device's int8 encoder; writes the bytes the device sends.
pub fn encode_recording(request: &EncodeRequest) -> Result<EncodedStream> {
    let (blob, counts, card) = blob_and_counts(&request.model, &request.data, &request.columns)?;
    let encoded = simulate(&blob, &counts, request.stream.config_for(card.stream_windows_per_frame()))?;
    std::fs::write(&request.out, &encoded.bytes).with_context(|| format!("cannot write {}", request.out.display()))?;
    Ok(encoded)
}

/// The recording as the device's counts, converted as `funnel encode` converts it.
pub fn recording_counts(model: &Path, data: &Path, columns: &[String]) -> Result<Vec<i16>> {
    Ok(blob_and_counts(model, data, columns)?.1)
}

/// A model's blob (checked against its card), `columns` of `data` as its device counts, and the
/// card.
fn blob_and_counts(model: &Path, data: &Path, columns: &[String]) -> Result<(Blob, Vec<i16>, ModelCard)> {
    let dir = ModelDir::new(model);
    let card = dir.load_card()?;
    let blob = dir.load_blob_of(&card)?;
    card.check_columns(columns).with_context(|| format!("model {}", dir.path().display()))?;
    let counts = Recording::from_csv(data, columns)?.device_counts(blob.counts_per_unit());
    Ok((blob, counts, card))
}
