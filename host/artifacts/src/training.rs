//! What training did, as the model card records it: the configuration, every epoch, and what
//! `--init` transferred.

use serde::{Deserialize, Serialize};

use crate::spec::Variant;

/// The training schedule and the variant's loss weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub variant: Variant,
    pub epochs: usize,
    pub seed: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Early stopping: epochs without validation improvement before stopping.
    pub patience: usize,
    /// `sparse`: weight of the mean |z| penalty.
    pub sparse_weight: f64,
    /// `contractive`: weight of the Jacobian penalty.
    pub contractive_weight: f64,
    /// `denoising`: std of the Gaussian input noise (normalized units).
    pub noise_std: f32,
    /// Training windows start every `train_hop` samples (the window length: no overlap).
    /// Informational here: the caller cuts the windows.
    #[serde(default)]
    pub train_hop: usize,
    /// Rate–distortion training: the rate the codes aim at, in bits per sample with the framing
    /// left out (see `funnel::train`). `None`: trained on reconstruction alone, the codes' grid
    /// calibrated afterwards by the quantizer.
    #[serde(default)]
    pub code_rate: Option<f64>,
    /// A `transform` model started from principal components taken in a metric that weighs
    /// each window's first and last samples more (see `funnel::pipeline`): tried when the
    /// plain components leave steps where windows meet, and kept when it steps less.
    #[serde(default)]
    pub edge_emphasis: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            variant: Variant::Plain,
            epochs: 60,
            seed: 1,
            batch_size: 16,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            patience: 8,
            sparse_weight: 1e-3,
            contractive_weight: 1e-3,
            noise_std: 0.1,
            train_hop: 0,
            code_rate: None,
            edge_emphasis: false,
        }
    }
}

/// How a report names the epoch whose weights were kept (0: none beat the starting weights).
pub fn kept_epoch(best_epoch: usize) -> String {
    match best_epoch {
        0 => "none: the starting weights were kept".to_string(),
        epoch => epoch.to_string(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Training objective (MSE + weighted variant penalty), mean over minibatches.
    pub train_loss: f64,
    /// The variant's penalty term before weighting (mean |z| for `sparse`, ‖J‖_F² for
    /// `contractive`), mean over minibatches; 0 for `plain` and `denoising`. Under
    /// rate–distortion training: the codes' estimated rate, bits per sample.
    #[serde(default)]
    pub penalty: f64,
    /// Rate–distortion training: the weight λ of the rate term at the end of the epoch.
    #[serde(default)]
    pub lambda: f64,
    /// Reconstruction MSE on the validation windows (normalized units).
    pub val_loss: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InitReport {
    pub from: String,
    pub loaded: Vec<String>,
    /// `(name, reason)`.
    pub skipped: Vec<(String, String)>,
}
