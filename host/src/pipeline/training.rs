//! The jobs that train or need the float weights (feature `train`): `funnel train`,
//! `quantize`, `pipeline` and `plot`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use funnel_artifacts::blob::{frames_length, OwnedCodeTables};
use funnel_artifacts::card::{BoundedTrial, QuantizationCard, SeamFilter};
use funnel_artifacts::data::TrainingWindows;
use funnel_artifacts::data::{fit_validation_counts, Normalization};
use funnel_artifacts::metrics::Quality;
use funnel_artifacts::net::{Activation, FloatLayer, LinearInverse, NetLayer};
use funnel_artifacts::spec::{Arch, ModelSpec, Variant};
use funnel_artifacts::training::{kept_epoch, TrainConfig};
use funnel_artifacts::{Blob, Dataset, FloatNet, Graph, Method, Metrics, ModelCard, ModelDir, Recording, Windows};
use nalgebra::{DMatrix, DVector};

use super::bounded::{check_bounded_window, commit_bounded, BoundTarget, BoundedCandidate};
use super::decode::{decode_to_file, Decoding};
use super::search::{self, DeviceBudget};
use super::{checkpoint, dataset_for_model, model_dataset};
use crate::codec::{
    device_rate, device_round_trip_with, long_stream_header_bytes_per_frame, sent_windows, simulate, smooth_seams,
    DecodeReport, EncodedStream,
};
use crate::eval::Pca;
use crate::eval::{self, Evaluation, Report};
use crate::export::{export_onnx, OnnxFiles};
use crate::quantize::{
    code_dead_zones, device_codes, quantize, shifted_codes, QuantizationInput, MAX_CODE_STEP, MAX_DEAD_ZONE,
    MIN_TRAINED_GRID_STEP,
};
use crate::runtime::{Backend, Runtime, TractModel};
use crate::train::{
    checkpoint_bytes, fine_tune_decoder, restore_snapshot, snapshot, train, Autoencoder, CandleRuntime, DecoderTuning,
    RoundedCodes, TrainPlan, TrainedModel, TransformInit, VarMap,
};
use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::MAX_FRAME_CODES;

/// Relative PRDN loss of int8 against float above which quantization is called out.
pub const MAX_RELATIVE_PRDN_LOSS: f64 = 0.10;

/// `funnel quantize`.
#[derive(Clone, Debug)]
pub struct QuantizeRequest {
    pub model: PathBuf,
    /// Calibrate activation ranges on this recording (and these columns, default the model's)
    /// instead of the training part of the model's own data.
    pub calibration: Option<(PathBuf, Vec<String>)>,
    pub rate: CodeRate,
    /// One dead zone for every code, in steps; `None`: for a target rate of a model trained for
    /// a rate, the nearest step or each code's own dead zone (see `ROUNDINGS`), whichever
    /// rebuilds the validation slice better, else the card's rounding (or the nearest step).
    pub dead_zone: Option<f64>,
    /// Make the model bounded: its streams carry the samples, none more than this far (the
    /// recording's units; 0: lossless in device counts) from the device's input.
    pub max_error: Option<f64>,
}

/// How coarse the device's codes are: the rate of a trained model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CodeRate {
    /// The step the card records (the finest for a model never quantized).
    AsBefore,
    /// This step over the finest (≥ 1).
    Step(f64),
    /// The step whose stream has this many bits per sample on the training part (framing
    /// included), the code tables counted as they code frames they were not fitted to; or the
    /// finest when the model cannot reach it.
    BitsPerSample(f64),
}

/// How far below its target [`CodeRate::BitsPerSample`] may stop searching, as a fraction of
/// the target.
const RATE_TOLERANCE: f64 = 0.02;

/// What quantization produced and measured.
#[derive(Clone, Debug)]
pub struct QuantizeOutcome {
    pub blob: Blob,
    pub card: QuantizationCard,
    pub int8: Metrics,
    /// The float autoencoder with the decoder tuned to the codes, at the device's rate.
    pub float: Metrics,
    pub tuning: DecoderTuning,
    /// The graphs and the checkpoint with the tuned decoder.
    pub onnx: OnnxFiles,
    pub checkpoint: Vec<u8>,
    /// Set when int8 loses more than [`MAX_RELATIVE_PRDN_LOSS`] against float.
    pub warning: Option<String>,
    /// The receiver's seam filter chosen for these codes.
    pub seam_filter: Option<SeamFilter>,
    /// The seams it leaves in the training part's reconstruction (`None`: no error to step),
    /// and that reconstruction's PRDN.
    pub training_seam_ratio: Option<f64>,
    pub training_prdn: f64,
    /// The bounded mode, when asked for (`blob` is then the bounded blob).
    pub bounded: Option<funnel_artifacts::card::BoundedCard>,
    /// The float decoder as tuned to the codes (the bounded mode's integer decoder is made of it).
    pub decoder: Vec<NetLayer>,
    /// The rate the code step was chosen by (`unseen_rate` of the training part), when it was
    /// chosen for a rate.
    pub unseen_rate: Option<f64>,
}

/// Quantizes the encoder of `model` at `rate`, tunes its decoder (parameters in `varmap`) to
/// the device's codes of the training windows, and measures the device path and the float
/// model on the held-out part; writes nothing.
#[allow(clippy::too_many_arguments)]
fn quantize_and_measure(
    model: &Autoencoder,
    varmap: &VarMap,
    card: &ModelCard,
    dataset: &Dataset,
    calibration: &Windows,
    rate: CodeRate,
    rounding: Option<Rounding>,
    progress: bool,
) -> Result<QuantizeOutcome> {
    let encoder = model.float_net()?.float_encoder();
    // A network trained for a rate has its codes' grid: steps finer than it are in reach too.
    let trained_grid = card.train_config.code_rate.is_some();
    let finest = if trained_grid { MIN_TRAINED_GRID_STEP } else { 1.0 };
    let quantized_at = |code_step: f64, rounding: Rounding| {
        quantize(&QuantizationInput {
            encoder: &encoder,
            normalization: &card.normalization,
            counts_per_unit: card.counts_per_unit,
            calibration,
            code_step,
            trained_grid,
            dead_zone: rounding.dead_zone,
            rate_weight: rounding.rate_weight,
            windows_per_frame: usize::from(card.windows_per_frame),
        })
    };
    let roundings = match (rounding, rate) {
        (Some(r), _) => vec![r],
        (None, CodeRate::BitsPerSample(_)) if trained_grid => ROUNDINGS.to_vec(),
        (None, CodeRate::AsBefore) => vec![card.quantization.as_ref().map_or(Rounding::NEAREST, Rounding::of)],
        (None, _) => vec![Rounding::NEAREST],
    };
    // Each rounding: the step that meets the rate (searched for every rounding at once, in
    // parallel threads), the decoder tuned to those codes from the same start, scored on the
    // validation slice; the best one's weights are kept.
    let searched: Vec<Result<Quantized>> = std::thread::scope(|scope| {
        let searches: Vec<_> = roundings
            .iter()
            .map(|&rounding| {
                let quantized_at = &quantized_at;
                scope.spawn(move || {
                    let with_step = |code_step: f64| quantized_at(code_step, rounding);
                    quantize_for_rate(&with_step, card, dataset, rate, finest, rounding)
                })
            })
            .collect();
        searches.into_iter().map(|s| s.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let start = snapshot(varmap)?;
    let mut best: Option<(f64, Quantized, Vec<candle_core::Tensor>)> = None;
    for q in searched {
        let q = q?;
        restore_snapshot(varmap, &start)?;
        let tuning = tune_decoder_to_codes(&q.blob, card, dataset, model, varmap, progress)?;
        let q = Quantized { tuning: Some(tuning), ..q };
        let score = match (roundings.len(), rate) {
            (2.., CodeRate::BitsPerSample(target)) => validation_prdn_at(&q.blob, card, dataset, model, target)?,
            _ => 0.0,
        };
        if best.as_ref().is_none_or(|(s, ..)| score < *s) {
            best = Some((score, q, snapshot(varmap)?));
        }
    }
    let (_, Quantized { blob, code_step, missed, tuning, rounding, unseen_rate }, weights) =
        best.context("internal: no rounding to quantize with")?;
    restore_snapshot(varmap, &weights)?;
    let tuning = tuning.context("internal: the decoder was not tuned")?;
    let net = model.float_net()?;
    let scale = edge_scale(&card.spec, card.train_config.edge_emphasis);
    let beyond_range = linear_inverse(&net, &blob, &card.normalization, dataset.train_norm(), &scale)?;
    let net = FloatNet { beyond_range, ..net };
    let onnx = export_onnx(&net);
    let decoder = TractModel::from_proto(&onnx.decoder, Path::new(Graph::Decoder.file_name()))?;
    let (seam_filter, training_prdn, training_seam_ratio) = choose_seam_filter(&blob, card, dataset, &decoder)?;
    let eval::DeviceMetrics { metrics: int8, saturated_windows } =
        eval::device_metrics(&blob, &decoder, dataset, card.sensor_bits, card.windows_per_frame, seam_filter)?;
    let autoencoder = CandleRuntime { model, graph: Graph::Autoencoder };
    let float = eval::float_metrics(&autoencoder, dataset, 0, card.sensor_bits)?.at_rate_of(&int8);
    // A network trained for a rate rounds its codes by design: int8 arithmetic is measured
    // against the float network with the same rounding, through the same receiver, on the same
    // windows (those the device sends: all of them, its last frame carrying the windows that
    // fill no frame; whole frames only for a model without code tables).
    let float_prdn = match trained_grid {
        true => {
            let sent = 0..int8.windows;
            let x = dataset.held_out_norm().slice(sent.clone());
            let dead_zones = code_dead_zones(&blob);
            let reference = RoundedCodes { model, step: code_step, dead_zones, receiver: &decoder };
            let rounded = Windows::new(x.dim, reference.run(&x.data, x.len())?);
            let rebuilt =
                smooth_seams(&dataset.normalization().denormalize(&rounded), dataset.channels(), seam_filter)?;
            Quality::of(&dataset.held_out().slice(sent), &rebuilt, dataset.channels()).prdn
        }
        false => float.prdn,
    };
    let relative = (int8.prdn - float_prdn) / float_prdn;
    let quantization = QuantizationCard {
        blob_bytes: blob.len(),
        macs_per_window: blob.macs_per_window(),
        scratch_bytes: blob.scratch_bytes(),
        model_id: blob.model_id().to_string(),
        float_prdn,
        int8_prdn: int8.prdn,
        relative_prdn_loss: relative,
        code_step,
        dead_zone: rounding.dead_zone,
        rate_weight: rounding.rate_weight,
        prediction_lags: blob.code_tables().map_or(Vec::new(), |t| t.lags.iter().collect()),
        window_classes: blob.code_tables().map_or(1, |t| t.class_count()),
    };
    // A coarser step loses PRDN on purpose; the warning is about the finest (or a trained grid).
    let warning = ((code_step == 1.0 || trained_grid) && relative > MAX_RELATIVE_PRDN_LOSS).then(|| {
        let remedy = match (saturated_windows, trained_grid) {
            // Clipped samples are lost to any arithmetic: the float network does not clip.
            (1.., _) => format!(
                "{saturated_windows} of the {} held-out windows saturated the device's input (samples beyond its \
                 i16 counts, or 32,767 counts from the training part's mean), which the float network does not clip: \
                 the held-out part is louder than anything in the training part; train on a recording whose training \
                 part holds such stretches, or with fewer --counts-per-unit",
                int8.windows
            ),
            // The codes' grid is the network's own (i16 codes, nothing clipped): what is left is
            // the int8 weights.
            (0, true) => "The int8 weights are the limit: try another --seed or shape".to_string(),
            (0, false) => "Try calibrating on more data (`funnel quantize --calibration FILE.csv --column NAME`), a \
                           smaller latent range (retrain with --variant sparse or contractive), or a different --seed"
                .to_string(),
        };
        format!(
            "int8 PRDN {:.2} % is {:.1} % worse than float {:.2} % (limit {:.0} %). {remedy}; the device codes are \
             still usable.",
            int8.prdn,
            100.0 * relative,
            float_prdn,
            100.0 * MAX_RELATIVE_PRDN_LOSS
        )
    });
    let warning = match (missed, warning) {
        (Some(m), Some(w)) => Some(format!("{m}. {w}")),
        (m, w) => m.or(w),
    };
    let checkpoint = checkpoint_bytes(varmap)?;
    Ok(QuantizeOutcome {
        blob,
        card: quantization,
        int8,
        float,
        tuning,
        onnx,
        checkpoint,
        warning,
        seam_filter,
        training_seam_ratio,
        training_prdn,
        bounded: None,
        decoder: net.decoder,
        unseen_rate,
    })
}

/// For a linear encoder (one dense layer: `transform`), what its decoder graph rebuilds codes
/// beyond the training part's with (see [`LinearInverse`]): each latent's largest code
/// magnitude over the device's codes of the training windows `train` (normalized), and the
/// pseudo-inverse of the encoder in the metric its principal components were taken in (`scale`,
/// see [`edge_scale`]). Measured held out (`funnel bench rd`), PRDN of models trained
/// for 0.5, 1 and 2 bits/sample: a seismometer's quiet day, then an earthquake 60 times louder
/// than anything in the training part (ObsPy's KARC LHZ test record, 1 sample/s): 10.1, 9.5,
/// 6.2 % → 3.8, 4.1, 2.8 %; the IMU's acc_z at 0.5: 15.3 → 14.4 %; the ECG and PV as before.
fn linear_inverse(
    net: &FloatNet,
    blob: &Blob,
    normalization: &Normalization,
    train: &Windows,
    scale: &[f32],
) -> Result<Option<LinearInverse>> {
    let [NetLayer::Weighted(FloatLayer::Dense { in_features, out_features, weight, bias, activation })] =
        net.encoder.as_slice()
    else {
        return Ok(None);
    };
    if *activation != Activation::Identity {
        return Ok(None);
    }
    let (values, k) = (*in_features, *out_features);
    let mut code_limit = vec![0f32; k];
    for codes in device_codes(blob, normalization, train)?.chunks_exact(k) {
        for (limit, &q) in code_limit.iter_mut().zip(codes) {
            *limit = limit.max(blob.dequantize(q).abs());
        }
    }
    let (weight, bias) = pseudo_inverse(weight, bias, k, values, scale)?;
    Ok(Some(LinearInverse { code_limit, weight, bias }))
}

/// The pseudo-inverse of the affine map `c = W·x + b` (`weight`: `[k][values]`, row-major) in
/// the metric `‖S·x‖` (`scale`: the diagonal of `S`), as `x = W⁺·c − W⁺·b` with
/// `W⁺ = S⁻¹·(W·S⁻¹)⁺`: of the windows with codes `c`, the one of least weighted norm. An
/// edge-emphasized encoder (`W = Uᵀ·S`) is then undone by its synthesis rows `S⁻¹·U`; the
/// plain pseudo-inverse undid it with other windows, and the IMU's magnetometer at 1
/// bit/sample, whose held-out part leaves the training range in 9 of 40 windows, came back at
/// 1.55 % PRDN instead of 0.48 % (a Python check with ONNX Runtime).
fn pseudo_inverse(
    weight: &[f32],
    bias: &[f32],
    k: usize,
    values: usize,
    scale: &[f32],
) -> Result<(Vec<f32>, Vec<f32>)> {
    ensure!(scale.len() == values && scale.iter().all(|&s| s > 0.0), "internal: a metric of {} values", scale.len());
    let scaled = weight.iter().enumerate().map(|(i, &w)| f64::from(w) / f64::from(scale[i % values]));
    let encoder = DMatrix::from_row_slice(k, values, &scaled.collect::<Vec<_>>());
    let mut inverse = encoder.pseudo_inverse(1e-9).map_err(|e| anyhow::anyhow!("the encoder's pseudo-inverse: {e}"))?;
    for (i, &s) in scale.iter().enumerate() {
        inverse.row_mut(i).scale_mut(1.0 / f64::from(s));
    }
    let offset = -(&inverse * DVector::from_iterator(k, bias.iter().map(|&b| f64::from(b))));
    let weight = (0..values).flat_map(|i| (0..k).map(move |j| (i, j))).map(|(i, j)| inverse[(i, j)] as f32).collect();
    Ok((weight, offset.iter().map(|&b| b as f32).collect()))
}

/// How the device rounds its codes (see `QuantizationInput`): a dead zone in steps, and what a
/// code's bit is worth in squared steps, which gives each code a dead zone of its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rounding {
    pub dead_zone: f64,
    pub rate_weight: f64,
}

impl Rounding {
    /// Every code to the nearest step.
    pub const NEAREST: Rounding = Rounding { dead_zone: 0.0, rate_weight: 0.0 };

    /// One dead zone for every code.
    pub fn dead_zone(dead_zone: f64) -> Rounding {
        Rounding { dead_zone, rate_weight: 0.0 }
    }

    /// The rounding a model was quantized with.
    fn of(card: &QuantizationCard) -> Rounding {
        Rounding { dead_zone: card.dead_zone, rate_weight: card.rate_weight }
    }
}

/// The roundings a model trained for a rate is quantized with when none is asked for; the one
/// whose device path rebuilds the validation slice best at the target rate is kept. Measured
/// (`funnel bench rd`, held out, against the PCA transform coder): one dead zone of 0.2–0.3 for
/// every model lowered the PRDN at equal bits by up to 5 % at 0.5 and 1 bits/sample and raised
/// it by up to 10 % at 2, so none is a default for all; each code's own dead zone in place of
/// one of 0.25 took acc_z at 1 bit/sample from 1.13× to 1.00×, gyro_y at 0.5 from 1.20× to
/// 1.11×, and was chosen by 14 of 18 models (six channels of the ECG, IMU and PV, each at 0.5,
/// 1 and 2 bits/sample).
const ROUNDINGS: [Rounding; 2] = [Rounding::NEAREST, Rounding { dead_zone: 0.0, rate_weight: RATE_WEIGHT }];
/// What a code's bit is worth in squared steps where the codes' rounding weighs their bits.
const RATE_WEIGHT: f64 = 0.075;

/// One quantization of the encoder.
struct Quantized {
    blob: Blob,
    code_step: f64,
    rounding: Rounding,
    /// Why the target rate was not met, if it was not.
    missed: Option<String>,
    tuning: Option<DecoderTuning>,
    /// The rate the step was chosen by, when it was chosen for one.
    unseen_rate: Option<f64>,
}

/// The blob at `rate` (with `rounding`), quantized by `with_step`.
fn quantize_for_rate(
    with_step: &dyn Fn(f64) -> Result<Blob>,
    card: &ModelCard,
    dataset: &Dataset,
    rate: CodeRate,
    finest: f64,
    rounding: Rounding,
) -> Result<Quantized> {
    let mut missed = None;
    let (blob, code_step, unseen_rate) = match rate {
        CodeRate::AsBefore => {
            let step = card.quantization.as_ref().map_or(1.0, |q| q.code_step);
            (with_step(step)?, step, None)
        }
        CodeRate::Step(step) => (with_step(step)?, step, None),
        CodeRate::BitsPerSample(target) => {
            let (blob, step, reached) = step_for_rate(with_step, dataset, card.windows_per_frame, finest, target)?;
            if (reached - target).abs() > RATE_TOLERANCE * target {
                missed = Some(format!(
                    "asked for {target} bits/sample, the {} code step sends {reached:.3} (estimated on the training part){}",
                    if step == finest { "finest" } else { "coarsest" },
                    if step == finest {
                        ": train with more codes per window for a higher rate"
                    } else {
                        ": the frames' framing alone costs more (longer windows or more windows per frame cost less)"
                    }
                ));
            }
            (blob, step, Some(reached))
        }
    };
    Ok(Quantized { blob, code_step, rounding, missed, tuning: None, unseen_rate })
}

/// PRDN of the device path (`blob`, the decoder of `model` as tuned) on the validation slice of
/// the training part, moved to `target` bits/sample by the 6 dB-per-bit rule (the candidates'
/// rates differ a little): how quantizations of one model are compared.
fn validation_prdn_at(
    blob: &Blob,
    card: &ModelCard,
    dataset: &Dataset,
    model: &Autoencoder,
    target: f64,
) -> Result<f64> {
    let decoder = CandleRuntime { model, graph: Graph::Decoder };
    // The windows of the slice the device sends (whole frames only for a model without code
    // tables).
    let train = dataset.train();
    let (fit, _) = fit_validation_counts(train.len());
    let whole = sent_windows(blob, train.len() - fit, card.windows_per_frame);
    ensure!(whole >= 2, "the validation slice is too short to compare quantizations");
    let validation = train.slice(fit..fit + whole);
    let config = StreamConfig { windows_per_frame: card.windows_per_frame, ..StreamConfig::DEFAULT };
    let trip = device_round_trip_with(blob, &card.normalization, &decoder, &validation, config, None)?;
    let prdn = Quality::of(&validation, &trip.reconstruction, card.spec.channels).prdn;
    let bits = 8.0 * trip.bytes as f64 / (validation.len() * card.window()) as f64;
    Ok(prdn * (bits - target).exp2())
}

/// The seam filters [`choose_seam_filter`] tries: samples on each side, strength.
const SEAM_FILTERS: [(usize, f32); 11] =
    [(1, 0.5), (1, 0.75), (1, 1.0), (2, 0.5), (2, 0.75), (2, 1.0), (3, 0.5), (3, 0.75), (3, 1.0), (4, 0.75), (6, 0.75)];
/// Most a reconstruction's error may step where two windows meet, over its steps inside them
/// (`seam_ratio`): beyond 1.5 a reader sees the windows' edges; a filter is chosen for at most
/// this on the training part, a margin for data that differ from it.
const MAX_SEAM_RATIO: f64 = 1.25;

/// Most windows of the training part (its last ones) the seam filter is chosen on.
const MAX_SEAM_WINDOWS: usize = 4096;

/// The seam filter (or none) that rebuilds the training part best through the device path
/// among those that keep its seams within [`MAX_SEAM_RATIO`]; when none does, the one with the
/// smallest seams. A fixed smoother helps some signals and harms others (measured: the ECG's
/// PRDN fell 2.6 %, the IMU's rose at 1 bit/sample), so each model gets the one its own data
/// favours. Choosing by PRDN alone on the validation slice left the held-out seams of 8 of 33
/// models (11 channels of the ECG, IMU and PV at 0.5, 1 and 2 bits/sample) above the limit,
/// gyro_x's at 0.5 bits/sample at 2.47; the slice's 32 windows also measured seams too
/// roughly to choose by them. The filter has two settings to choose, so the training part
/// (up to [`MAX_SEAM_WINDOWS`] windows, rebuilt once and smoothed by each filter) serves.
fn choose_seam_filter(
    blob: &Blob,
    card: &ModelCard,
    dataset: &Dataset,
    decoder: &dyn Runtime,
) -> Result<(Option<SeamFilter>, f64, Option<f64>)> {
    let train = dataset.train();
    let n = sent_windows(blob, train.len().min(MAX_SEAM_WINDOWS), card.windows_per_frame);
    if n < 2 {
        return Ok((None, f64::NAN, None));
    }
    let windows = train.slice(train.len() - n..train.len());
    let config = StreamConfig { windows_per_frame: card.windows_per_frame, ..StreamConfig::DEFAULT };
    let trip = device_round_trip_with(blob, &card.normalization, decoder, &windows, config, None)?;
    let channels = card.spec.channels;
    let filters = std::iter::once(None)
        .chain(SEAM_FILTERS.iter().map(|&(samples, strength)| Some(SeamFilter { samples, strength })));
    let mut tried = Vec::new();
    for filter in filters {
        let quality = Quality::of(&windows, &smooth_seams(&trip.reconstruction, channels, filter)?, channels);
        tried.push((filter, quality.prdn, quality.seam_ratio));
    }
    Ok(seam_choice(&tried))
}

/// Of `(filter, PRDN, seam ratio)` triples (the first one's filter tried first, kept on ties):
/// the lowest PRDN within [`MAX_SEAM_RATIO`], or else the smallest seams.
fn seam_choice(tried: &[(Option<SeamFilter>, f64, Option<f64>)]) -> (Option<SeamFilter>, f64, Option<f64>) {
    // No seam ratio: no error; nothing to see.
    let seams = |t: &(Option<SeamFilter>, f64, Option<f64>)| t.2.unwrap_or(0.0);
    let within = tried.iter().filter(|t| seams(t) <= MAX_SEAM_RATIO).min_by(|a, b| a.1.total_cmp(&b.1));
    let best = within.or_else(|| tried.iter().min_by(|a, b| seams(a).total_cmp(&seams(b)).then(a.1.total_cmp(&b.1))));
    best.map_or((None, f64::NAN, None), |&t| t)
}

/// Epochs of decoder tuning at most, and without improvement before it stops.
const TUNING_EPOCHS: usize = 30;
const TUNING_PATIENCE: usize = 5;
/// Most windows the decoder is tuned on (and a searched shape is fitted on): a long recording's
/// are taken at a longer hop. Tuning the decoder on the 180,000 windows of a million samples
/// took most of `funnel train`'s 8 minutes; the shipped ECG's 19,433 stay below the cap.
const MAX_FIT_WINDOWS: usize = 24_576;

/// The hop at which `dataset`'s training part gives at most [`MAX_FIT_WINDOWS`] windows of
/// `window`, or `hop` if that gives fewer.
pub(super) fn capped_hop(dataset: &Dataset, window: usize, hop: usize) -> usize {
    hop.max((dataset.train().len() * window).div_ceil(MAX_FIT_WINDOWS)).min(window)
}

/// Fine-tunes the decoder to rebuild the training windows (cut as for training) from the codes
/// the device's int8 encoder (`blob`) makes of them, dequantized: what it will be given.
fn tune_decoder_to_codes(
    blob: &Blob,
    card: &ModelCard,
    dataset: &Dataset,
    model: &Autoencoder,
    varmap: &VarMap,
    progress: bool,
) -> Result<DecoderTuning> {
    let hop = match card.train_config.train_hop {
        0 => card.window(),
        hop => hop,
    };
    let windows = dataset.training_windows(capped_hop(dataset, card.window(), hop));
    let latents = |w: &Windows| -> Result<Windows> {
        let codes = device_codes(blob, &card.normalization, w)?;
        Ok(Windows::new(blob.latent(), codes.into_iter().map(|q| blob.dequantize(q)).collect()))
    };
    let config = TrainConfig { epochs: TUNING_EPOCHS, patience: TUNING_PATIENCE, ..card.train_config.clone() };
    fine_tune_decoder(
        model,
        varmap,
        (&latents(&windows.fit)?, &windows.fit),
        (&latents(&windows.validation)?, &windows.validation),
        &config,
        progress,
    )
}

/// The blob whose code step makes the device send `target` bits per sample of data like the
/// training part ([`unseen_rate`]), found by bisection on the logarithm of the step (the rate
/// falls as the step grows), that step, and the rate reached. When no step reaches the target,
/// the nearest end: the finest step (a model cannot send more) or the coarsest (the framing
/// alone costs more).
fn step_for_rate(
    with_step: &dyn Fn(f64) -> Result<Blob>,
    dataset: &Dataset,
    windows_per_frame: u8,
    finest_step: f64,
    target: f64,
) -> Result<(Blob, f64, f64)> {
    ensure!(target.is_finite() && target > 0.0, "--bits-per-sample must be a positive number (got {target})");
    let rate = |blob: &Blob| unseen_rate(blob, dataset, windows_per_frame);
    let finest = with_step(finest_step)?;
    let finest_rate = rate(&finest)?;
    if finest_rate <= target {
        return Ok((finest, finest_step, finest_rate));
    }
    let coarsest = with_step(MAX_CODE_STEP)?;
    let coarsest_rate = rate(&coarsest)?;
    if coarsest_rate > target {
        return Ok((coarsest, MAX_CODE_STEP, coarsest_rate));
    }
    let (mut lo, mut hi) = (finest_step.ln(), MAX_CODE_STEP.ln());
    let mut best = (coarsest, MAX_CODE_STEP, coarsest_rate);
    for _ in 0..24 {
        let step = ((lo + hi) / 2.0).exp();
        let blob = with_step(step)?;
        let rate = rate(&blob)?;
        if rate > target {
            lo = step.ln();
        } else {
            hi = step.ln();
            best = (blob, step, rate);
            if rate >= target * (1.0 - RATE_TOLERANCE) {
                break;
            }
        }
    }
    Ok(best)
}

/// Bits per sample the device sends of the training part, its code tables' share counted as
/// they code frames they were not fitted to ([`OwnedCodeTables::cross_fitted_length`]): the
/// rate a step is chosen by, since the tables fitted to the training part code it in fewer
/// bits than they will code the data the model is sent.
fn unseen_rate(blob: &Blob, dataset: &Dataset, windows_per_frame: u8) -> Result<f64> {
    let fitted = device_rate(blob, dataset.train(), windows_per_frame)?;
    let Some(tables) = blob.code_tables() else { return Ok(fitted) };
    let (latents, per_frame) = (blob.latent(), usize::from(windows_per_frame));
    let (normalization, train) = (dataset.normalization(), dataset.train_norm());
    let codes = device_codes(blob, normalization, train)?;
    // What `fitting_codes` gives for the windows outside a fold, their own codes taken from
    // `codes` rather than encoded again (the device encodes each window alike).
    let fitting = |unseen: Range<usize>| -> Result<Vec<i16>> {
        let mut fitting = Vec::new();
        for windows in [0..unseen.start, unseen.end..train.len()] {
            fitting.extend(shifted_codes(blob, normalization, &train.slice(windows.clone()), per_frame)?);
            fitting.extend_from_slice(&codes[windows.start * latents..windows.end * latents]);
        }
        Ok(fitting)
    };
    let Some(unseen) = OwnedCodeTables::cross_fitted_length(&codes, latents, per_frame, fitting)? else {
        return Ok(fitted);
    };
    let coded = frames_length(&tables, &codes, latents, per_frame);
    let samples = (dataset.train().len() * blob.window()) as f64;
    Ok(fitted + 8.0 * (unseen as f64 - coded as f64) / samples)
}

/// [`unseen_rate`] of a quantization's blob: the one its step was chosen by, if it was.
fn outcome_rate(q: &QuantizeOutcome, dataset: &Dataset, windows_per_frame: u8) -> Result<f64> {
    q.unseen_rate.map_or_else(|| unseen_rate(&q.blob, dataset, windows_per_frame), Ok)
}

/// Writes the blob and records it in the card (clearing firmware measurements of another blob).
fn commit_quantization(dir: &ModelDir, card: &mut ModelCard, q: &QuantizeOutcome) -> Result<()> {
    if card.quantization.as_ref().is_none_or(|old| old.model_id != q.card.model_id) {
        card.firmware.clear();
    }
    card.quantization = Some(q.card.clone());
    card.seam_filter = q.seam_filter;
    // The blob written here has no residual coder ([`make_bounded`] adds it).
    card.bounded = None;
    card.held_out.insert(Method::FloatAutoencoder, q.float.clone());
    eval::insert_device(&mut card.held_out, q.int8.clone());
    let graphs: Vec<(&str, Vec<u8>)> = Graph::ALL.into_iter().map(|g| (g.file_name(), q.onnx.bytes(g))).collect();
    let mut files: Vec<(&str, &[u8])> = vec![(ModelDir::BLOB, q.blob.bytes()), (ModelDir::WEIGHTS, &q.checkpoint)];
    files.extend(graphs.iter().map(|(name, bytes)| (*name, bytes.as_slice())));
    // One update: a failure leaves the old files beside the old card.
    dir.save_with_card(&files, card)?;
    Ok(())
}

/// Rates the latent codes of a bounded model are quantized for in turn, as fractions of the
/// model's own, when no rate is asked for (see [`make_bounded`]). Measured on the ECG (its
/// 1-bit/sample model quantized again with `funnel quantize --bits-per-sample B --max-error
/// E`, held out): at 14 counts the bounded stream took 0.896, 0.806, 0.803, 0.877 and 0.974
/// bits/sample for codes at 1, 0.8, 0.6, 0.45 and 0.3; at 28 counts 0.603 (the samples alone),
/// 0.564, 0.516 and 0.548 for codes at 1, 0.6, 0.45 and 0.3: a bound has a best rate.
const BOUNDED_LATENT_RATES: [f64; 5] = [0.8, 0.6, 0.45, 0.3, 0.2];

/// The network and data to quantize a model again with, at another rate.
struct Requantize<'a> {
    model: &'a Autoencoder,
    varmap: &'a VarMap,
    calibration: &'a Windows,
}

/// With `max_error`, makes the quantized model in `dir` bounded (see `pipeline::bounded`):
/// `outcome` then holds its bounded blob. The samples alone and the latent codes with
/// residuals from their rebuild are fitted to the training part, and the one whose stream of
/// it is shorter is kept. With `requantize` (no rate was asked for), the codes are also
/// quantized for [`BOUNDED_LATENT_RATES`] of their rate in turn, until a rate sends the
/// training part in more bits than the one before: the bound chooses the codes' rate, and the
/// model is committed again at the rate chosen (its decoder tuned to those codes).
fn make_bounded(
    dir: &ModelDir,
    card: &mut ModelCard,
    outcome: &mut QuantizeOutcome,
    dataset: &Dataset,
    max_error: Option<f64>,
    requantize: Option<Requantize<'_>>,
) -> Result<()> {
    let Some(max_error) = max_error else { return Ok(()) };
    let target = BoundTarget::new(card, dataset, outcome.blob.counts_per_unit(), max_error)?;
    let trial = |latent: Option<f64>, c: &BoundedCandidate| BoundedTrial {
        latent_bits_per_sample: latent,
        training_bits_per_sample: target.training_rate(c),
    };
    let mut best = target.alone(&outcome.blob)?;
    let mut trials = vec![trial(None, &best)];
    let mut requantized = None;
    let with_codes = target.with_codes(&outcome.blob, &outcome.decoder, dataset)?;
    let rate = outcome_rate(outcome, dataset, card.windows_per_frame)?;
    trials.push(trial(Some(rate), &with_codes));
    let (mut before, mut last_rate) = (with_codes.training_bytes, rate);
    if with_codes.training_bytes < best.training_bytes {
        best = with_codes;
    }
    if let Some(r) = requantize {
        let start = snapshot(r.varmap)?;
        for fraction in BOUNDED_LATENT_RATES {
            restore_snapshot(r.varmap, &start)?;
            let rate = CodeRate::BitsPerSample(fraction * rate);
            let rounding = Some(Rounding::of(&outcome.card));
            let q = quantize_and_measure(r.model, r.varmap, card, dataset, r.calibration, rate, rounding, false)?;
            let reached = outcome_rate(&q, dataset, card.windows_per_frame)?;
            if reached >= last_rate {
                // The coarsest step: the codes go no lower.
                break;
            }
            last_rate = reached;
            let c = target.with_codes(&q.blob, &q.decoder, dataset)?;
            trials.push(trial(Some(reached), &c));
            let more = c.training_bytes >= before;
            before = c.training_bytes;
            if c.training_bytes < best.training_bytes {
                best = c;
                requantized = Some((q, snapshot(r.varmap)?));
            }
            if more {
                break;
            }
        }
        restore_snapshot(r.varmap, requantized.as_ref().map_or(&start, |(_, weights)| weights))?;
    }
    if let Some((q, _)) = requantized {
        commit_quantization(dir, card, &q)?;
        *outcome = q;
    }
    let (blob, bounded) = commit_bounded(dir, card, dataset, &target, best, trials)?;
    outcome.blob = blob;
    outcome.card = card.quantization.clone().context("a quantized model")?;
    outcome.bounded = Some(bounded);
    Ok(())
}

/// Quantizes a trained model directory into `encoder.fq8` and records the device path's
/// held-out quality in its card.
pub fn quantize_model(request: &QuantizeRequest) -> Result<QuantizeOutcome> {
    let dir = ModelDir::new(&request.model);
    let mut card = dir.load_card()?;
    if !card.held_out.contains_key(&Method::FloatAutoencoder) {
        bail!(
            "{} has no {} metrics: the card was not written by `funnel train`",
            dir.path().display(),
            Method::FloatAutoencoder
        );
    }
    let (model, varmap) = checkpoint(&dir, &card)?;
    let dataset = model_dataset(&dir, &card)?;
    let calibration = match &request.calibration {
        None => dataset.train_norm().clone(),
        Some((path, columns)) => {
            let columns = if columns.is_empty() { card.columns.clone() } else { columns.clone() };
            ensure!(
                columns.len() == card.columns.len(),
                "--column gives {} channel(s), the model has {}",
                columns.len(),
                card.columns.len()
            );
            let windows = Recording::from_csv(path, &columns)?.windows(card.window());
            ensure!(!windows.is_empty(), "{}: fewer rows than one window of {}", path.display(), card.window());
            card.normalization.normalize(&windows)
        }
    };
    let rounding = request.dead_zone.map(Rounding::dead_zone);
    let mut outcome =
        quantize_and_measure(&model, &varmap, &card, &dataset, &calibration, request.rate, rounding, false)?;
    commit_quantization(&dir, &mut card, &outcome)?;
    let requantize = (request.rate == CodeRate::AsBefore).then_some(Requantize {
        model: &model,
        varmap: &varmap,
        calibration: &calibration,
    });
    make_bounded(&dir, &mut card, &mut outcome, &dataset, request.max_error, requantize)?;
    Ok(outcome)
}

/// `funnel train` (and the first half of `funnel pipeline`).
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub data: PathBuf,
    pub columns: Vec<String>,
    /// Samples per window, codes per window and architecture: the shape is searched for what
    /// is not given (the default shape search within a [`DeviceBudget`]).
    pub window: Option<usize>,
    pub latent: Option<usize>,
    pub arch: Option<Arch>,
    pub variant: Variant,
    /// Most epochs; early stopping may end sooner.
    pub epochs: usize,
    pub seed: u64,
    /// Start from the weights of another model directory where names and shapes match.
    pub init: Option<PathBuf>,
    /// Fitted windows start every `train_hop` samples (default: the window, no overlap).
    pub train_hop: Option<usize>,
    /// Epochs without a better validation loss before training stops.
    pub patience: usize,
    /// Device ADC counts per unit of the recording (default:
    /// [`Dataset::default_counts_per_unit`]).
    pub counts_per_unit: Option<f32>,
    /// Resolution of the sensor in bits (the card reports the compression ratio against it).
    pub sensor_bits: u32,
    pub out: PathBuf,
    /// Show progress on the terminal.
    pub progress: bool,
    /// The rates to train for (empty: [`DEFAULT_BITS_PER_SAMPLE`] for a searched shape; a
    /// given shape trained on reconstruction alone at the finest code step). With several, each
    /// goes to its own model directory under `out` (`bits-B`, `step-S`).
    pub rates: Vec<CodeRate>,
    /// Windows per data frame of the model's stream: its rates are measured, and a target rate
    /// trained for, with the framing this many windows share (default: 1 for a given shape; the
    /// most that fill at most [`crate::pipeline::MAX_FRAME_SAMPLES`] samples for a searched one).
    pub windows_per_frame: Option<u8>,
    /// The codes' dead zone in steps; `None`: chosen per model (see [`QuantizeRequest`]).
    pub dead_zone: Option<f64>,
    /// What a searched shape may cost the device.
    pub budget: DeviceBudget,
    /// Make each model bounded (see [`QuantizeRequest::max_error`]).
    pub max_error: Option<f64>,
}

/// Everything `train_model` produced, in memory.
pub struct TrainOutcome {
    pub dir: ModelDir,
    pub card: ModelCard,
    pub dataset: Dataset,
    pub trained: TrainedModel,
    pub net: FloatNet,
    /// The exported graphs.
    pub onnx: OnnxFiles,
    /// Float, PCA and int8 device sections.
    pub report: Report,
    pub quantization: QuantizeOutcome,
    /// The other rates' model directories, when several were asked for (the fields above are
    /// the first rate's).
    pub more: Vec<OperatingPoint>,
}

/// Trains, exports, quantizes and evaluates a model into `request.out`: checkpoint, ONNX files,
/// `encoder.fq8` and the card. Without a shape (window, codes per window, architecture), each
/// rate's shape is searched first (within `request.budget`, see [`DeviceBudget`]).
pub fn train_model(request: &TrainRequest) -> Result<TrainOutcome> {
    // Every flag is checked before anything is trained or written.
    ensure!(request.epochs >= 1, "--epochs must be at least 1 (got {})", request.epochs);
    ensure!(request.patience >= 1, "--patience must be at least 1");
    if let Some(e) = request.max_error {
        ensure!(e.is_finite() && e >= 0.0, "--max-error must be 0 or more (got {e})");
    }
    ensure!(
        (1..=32).contains(&request.sensor_bits),
        "--sensor-bits must be between 1 and 32 (got {})",
        request.sensor_bits
    );
    if let Some(cpu) = request.counts_per_unit {
        ensure!(cpu.is_finite() && cpu > 0.0, "--counts-per-unit must be a positive number (got {cpu})");
    }
    for rate in &request.rates {
        match *rate {
            CodeRate::BitsPerSample(bits) => {
                ensure!(bits.is_finite() && bits > 0.0, "--bits-per-sample must be a positive number (got {bits})")
            }
            CodeRate::Step(step) => ensure!(
                step.is_finite() && (1.0..=MAX_CODE_STEP).contains(&step),
                "the code step must be between 1 and {MAX_CODE_STEP} (got {step})"
            ),
            CodeRate::AsBefore => {}
        }
    }
    if let Some(dead_zone) = request.dead_zone {
        ensure!(
            (0.0..MAX_DEAD_ZONE).contains(&dead_zone),
            "--dead-zone must be at least 0 and below {MAX_DEAD_ZONE} of a step (got {dead_zone})"
        );
        let reconstruction_only = request.rates.is_empty() && request.window.is_some() && request.latent.is_some();
        ensure!(
            dead_zone == 0.0 || !reconstruction_only || request.arch.is_none(),
            "--dead-zone needs a model trained for a rate (--bits-per-sample)"
        );
    }
    if let Some(init) = &request.init {
        let weights = ModelDir::new(init).weights_path();
        ensure!(weights.exists(), "--init {}: no {} there", init.display(), ModelDir::WEIGHTS);
    }
    let recording = Recording::from_csv(&request.data, &request.columns)?;
    let fixed = match (request.window, request.latent, request.arch) {
        (Some(window), Some(latent), Some(arch)) => Some(ModelSpec::new(arch, recording.channels(), window, latent)?),
        _ => None,
    };
    // A target rate trains a network for it. Without one: a searched shape is trained for the
    // default rate; a given shape is trained on reconstruction alone and quantized at the
    // finest step.
    let rates = match (request.rates.is_empty(), &fixed) {
        (false, _) => request.rates.clone(),
        (true, Some(_)) => vec![CodeRate::AsBefore],
        (true, None) => vec![CodeRate::BitsPerSample(DEFAULT_BITS_PER_SAMPLE)],
    };
    if let (Some(window), Some(_)) = (request.window, request.max_error) {
        check_bounded_window(window, recording.channels())?;
    }
    let shapes: Vec<Shapes> = match &fixed {
        Some(spec) => {
            let windows_per_frame = request.windows_per_frame.unwrap_or(1);
            let shape = Shape::checked(spec.clone(), windows_per_frame, request.train_hop)?;
            rates.iter().map(|&rate| shape.for_rate(rate).map(Shapes::Given)).collect::<Result<_>>()?
        }
        None => rates
            .iter()
            .map(|&rate| search::candidates(request, recording.channels(), rate).map(Shapes::Searched))
            .collect::<Result<_>>()?,
    };

    let mut points = Vec::with_capacity(rates.len());
    let mut first = None;
    for (&rate, shapes) in rates.iter().zip(shapes) {
        let (shape, search) = match shapes {
            Shapes::Given(shape) => (shape, Vec::new()),
            Shapes::Searched(candidates) => search::search(request, &recording, rate, candidates)?,
        };
        let dir = match (rates.len(), rate) {
            (1, _) => ModelDir::create(&request.out)?,
            (_, CodeRate::BitsPerSample(bits)) => ModelDir::create(request.out.join(format!("bits-{bits}")))?,
            (_, CodeRate::Step(step)) => ModelDir::create(request.out.join(format!("step-{step}")))?,
            (_, CodeRate::AsBefore) => ModelDir::create(request.out.join("finest"))?,
        };
        let dataset = Dataset::new(recording.clone(), shape.spec.window, None)?;
        let plain = train_point(request, &shape, &dataset, rate, &dir, false)?;
        let point =
            with_fewest_seams(plain, request.progress, || train_point(request, &shape, &dataset, rate, &dir, true))?;
        let Point { trained, mut card, report, quantization } = point;
        card.shape_search = search;
        let mut quantization = quantization;
        commit_quantization(&dir, &mut card, &quantization)?;
        let requantize = request.rates.is_empty().then_some(Requantize {
            model: &trained.model,
            varmap: &trained.varmap,
            calibration: dataset.train_norm(),
        });
        make_bounded(&dir, &mut card, &mut quantization, &dataset, request.max_error, requantize)?;
        if first.is_none() {
            first = Some((trained, dataset));
        }
        points.push(OperatingPoint { dir, card, report, quantization });
    }
    let (trained, dataset) = first.context("at least one rate")?;
    let mut points = points.into_iter();
    let OperatingPoint { dir, card, report, quantization } = points.next().context("at least one rate")?;
    // The decoder was tuned to the codes: these are the graphs that go out.
    let net = trained.float_net()?;
    let onnx = quantization.onnx.clone();
    Ok(TrainOutcome { dir, card, dataset, trained, net, onnx, report, quantization, more: points.collect() })
}

/// The rate a searched shape is trained for when `funnel train` is given none.
pub const DEFAULT_BITS_PER_SAMPLE: f64 = 1.0;

/// The shape of one rate's model: given by the flags, or the candidates to search.
enum Shapes {
    Given(Shape),
    Searched(Vec<Shape>),
}

/// A network's shape and how its stream is sent, checked: everything one model needs besides
/// its data.
#[derive(Clone, Debug)]
pub(super) struct Shape {
    pub spec: ModelSpec,
    pub windows_per_frame: u8,
    /// Fitted windows start every `hop` samples.
    pub hop: usize,
    /// The codes' target rate (bits per sample with the framing left out), when trained for one.
    pub code_rate: Option<f64>,
}

impl Shape {
    /// `spec` sent `windows_per_frame` windows per frame, fitted at `hop` (default: the window).
    pub(super) fn checked(spec: ModelSpec, windows_per_frame: u8, hop: Option<usize>) -> Result<Shape> {
        let hop = hop.unwrap_or(spec.window);
        ensure!((1..=spec.window).contains(&hop), "--train-hop {hop} must be between 1 and --window {}", spec.window);
        let frame_codes = usize::from(windows_per_frame) * spec.latent;
        ensure!(
            windows_per_frame >= 1 && frame_codes <= MAX_FRAME_CODES,
            "--windows-per-frame {windows_per_frame} × --latent {} is {frame_codes} codes per frame; a frame carries \
             at most {MAX_FRAME_CODES}",
            spec.latent
        );
        Ok(Shape { spec, windows_per_frame, hop, code_rate: None })
    }

    /// This shape trained for `rate`: a rate in bits per sample becomes the codes' target.
    pub(super) fn for_rate(&self, rate: CodeRate) -> Result<Shape> {
        let code_rate = match rate {
            CodeRate::BitsPerSample(bits) => Some(code_rate_for(bits, &self.spec, self.windows_per_frame)?),
            CodeRate::Step(_) | CodeRate::AsBefore => None,
        };
        Ok(Shape { code_rate, ..self.clone() })
    }
}

/// One trained, quantized and measured model, in memory.
pub(super) struct Point {
    pub trained: TrainedModel,
    pub card: ModelCard,
    pub report: Report,
    pub quantization: QuantizeOutcome,
}

/// Seams a reader sees (see `funnel_artifacts::metrics`).
const VISIBLE_SEAM_RATIO: f64 = 1.5;
/// Most training-part PRDN edge emphasis may cost, relative, where the plain model's seams are
/// not visible. On UH4 (a seismometer, ObsPy's test data) the training part's seams of 1.47
/// and 1.41 at 1 and 2 bits/sample (1.26 and 1.38 held out) fell to 1.37 and 0.98 for 6.6 and
/// 6.5 % more PRDN there, 9 and 14 % held out: a cost for seams no one saw.
const EDGE_EMPHASIS_MAX_COST: f64 = 0.02;

/// `plain`, or — when it is a `transform` model started from principal components whose
/// training part's reconstruction steps where windows meet by more than [`MAX_SEAM_RATIO`]
/// whatever the receiver's smoother — the same model trained again with edge emphasis by
/// `retrain` ([`EDGE_WEIGHT`]) if that steps less, and either costs at most
/// [`EDGE_EMPHASIS_MAX_COST`] of the training part's PRDN or the plain seams are visible. Done
/// for the chosen shape only: the search ranks shapes by PRDN, which emphasis does not improve.
fn with_fewest_seams(plain: Point, progress: bool, retrain: impl FnOnce() -> Result<Point>) -> Result<Point> {
    let seams = |p: &Point| p.quantization.training_seam_ratio.unwrap_or(0.0);
    let prdn = |p: &Point| p.quantization.training_prdn;
    let from_components = plain.card.spec.arch == Arch::Transform && plain.card.init.is_none();
    if !from_components || plain.card.train_config.edge_emphasis || seams(&plain) <= MAX_SEAM_RATIO {
        return Ok(plain);
    }
    if progress {
        eprintln!(
            "the windows' edges step {:.2}× more than their insides on the training part (over {MAX_SEAM_RATIO}): \
             training again with their edges emphasized",
            seams(&plain)
        );
    }
    let emphasized = retrain()?;
    let better = emphasis_pays((prdn(&plain), seams(&plain)), (prdn(&emphasized), seams(&emphasized)));
    if progress {
        eprintln!(
            "edges emphasized: seams {:.2} → {:.2}, training part PRDN {:.2} → {:.2} %: {}",
            seams(&plain),
            seams(&emphasized),
            prdn(&plain),
            prdn(&emphasized),
            if better { "kept" } else { "dropped" }
        );
    }
    Ok(if better { emphasized } else { plain })
}

/// Whether a model with edge emphasis, `(PRDN, seam ratio)` on the training part, is worth
/// more than the plain one: it steps less, and costs at most [`EDGE_EMPHASIS_MAX_COST`] of PRDN
/// or the plain seams are visible.
fn emphasis_pays(plain: (f64, f64), emphasized: (f64, f64)) -> bool {
    let affordable = emphasized.0 <= plain.0 * (1.0 + EDGE_EMPHASIS_MAX_COST);
    emphasized.1 < plain.1 && (affordable || plain.1 > VISIBLE_SEAM_RATIO)
}

/// Trains `shape` on `dataset`'s training part, quantizes it at `rate` (decoder tuned to its
/// codes) and measures it on `dataset`'s held-out part; writes nothing (`dir` names the model in
/// messages and the card).
pub(super) fn train_point(
    request: &TrainRequest,
    shape: &Shape,
    dataset: &Dataset,
    rate: CodeRate,
    dir: &ModelDir,
    edge_emphasis: bool,
) -> Result<Point> {
    let spec = &shape.spec;
    let config = TrainConfig {
        variant: request.variant,
        epochs: request.epochs,
        seed: request.seed,
        patience: request.patience,
        train_hop: shape.hop,
        learning_rate: match spec.arch {
            Arch::Transform => TRANSFORM_LEARNING_RATE,
            Arch::Mlp | Arch::Conv => TrainConfig::default().learning_rate,
        },
        code_rate: shape.code_rate,
        edge_emphasis,
        ..TrainConfig::default()
    };
    let windows = dataset.training_windows(shape.hop);
    if request.progress {
        eprintln!(
            "training {} {} autoencoder: {} ch × {} samples → {} codes; hidden {:?}; {} fitted windows (hop {}), {} validation, {} held out",
            spec.arch,
            request.variant,
            spec.channels,
            spec.window,
            spec.latent,
            spec.hidden,
            windows.fit.len(),
            shape.hop,
            dataset.split_info().validation_windows,
            dataset.held_out().len()
        );
    }
    let trained = train_network(request, spec, &config, &windows, dataset, dir)?;
    let counts_per_unit = request.counts_per_unit.unwrap_or_else(|| dataset.default_counts_per_unit());
    let card = ModelCard {
        funnel_version: env!("CARGO_PKG_VERSION").to_string(),
        data_file: dir.data_file_name(&request.data),
        columns: request.columns.clone(),
        spec: spec.clone(),
        train_config: config,
        epochs_run: trained.epochs_run,
        best_epoch: trained.best_epoch,
        seconds_per_epoch: trained.seconds_per_epoch,
        history: trained.history.clone(),
        init: trained.init.clone(),
        split: dataset.split_info(),
        normalization: dataset.normalization().clone(),
        counts_per_unit,
        sensor_bits: request.sensor_bits,
        windows_per_frame: shape.windows_per_frame,
        held_out: Default::default(),
        files: Vec::new(),
        quantization: None,
        firmware: Vec::new(),
        seam_filter: None,
        shape_search: Vec::new(),
        bounded: None,
    };
    let autoencoder = trained.runtime(Graph::Autoencoder);
    let mut report = eval::evaluate(
        dir.path(),
        &Evaluation {
            dataset,
            latent: card.latent(),
            autoencoder: &autoencoder,
            backend: Backend::Candle,
            device: None,
            sensor_bits: card.sensor_bits,
            windows_per_frame: card.windows_per_frame,
            seam_filter: None,
        },
    )?;
    let quantization = quantize_and_measure(
        &trained.model,
        &trained.varmap,
        &card,
        dataset,
        dataset.train_norm(),
        rate,
        request.dead_zone.map(Rounding::dead_zone),
        request.progress,
    )?;
    report.sections.insert(Method::FloatAutoencoder, quantization.float.clone());
    eval::insert_device(&mut report.sections, quantization.int8.clone());
    let card = ModelCard { held_out: report.sections.clone(), ..card };
    Ok(Point { trained, card, report, quantization })
}

/// Trains the network of one model directory (`dir`, where the export check looks for its
/// autoencoder graph): a `transform` model starts from the training part's principal
/// components, on the grid of its target rate.
fn train_network(
    request: &TrainRequest,
    spec: &ModelSpec,
    config: &TrainConfig,
    windows: &TrainingWindows,
    dataset: &Dataset,
    dir: &ModelDir,
) -> Result<TrainedModel> {
    let transform = match (spec.arch, &request.init) {
        (Arch::Transform, None) => {
            Some(principal_transform(&windows.fit, spec, config.code_rate, config.edge_emphasis)?)
        }
        _ => None,
    };
    let plan = TrainPlan {
        spec: spec.clone(),
        config: config.clone(),
        init: request.init.clone(),
        progress: request.progress,
        transform,
    };
    let trained = train(&plan, windows)?;
    if request.progress {
        if let Some(r) = &trained.init {
            eprintln!("--init {}: loaded {} tensors {:?}", r.from, r.loaded.len(), r.loaded);
            for (name, why) in &r.skipped {
                eprintln!("--init: skipped {name}: {why}");
            }
        }
        let last = trained.history.last();
        eprintln!(
            "trained {} epochs (best {}), {:.3} s/epoch, {:.1} s total{}",
            trained.epochs_run,
            kept_epoch(trained.best_epoch),
            trained.seconds_per_epoch,
            trained.history.iter().map(|h| h.seconds).sum::<f64>(),
            match (config.code_rate, last) {
                (Some(target), Some(h)) =>
                    format!("; codes at {:.3} bits/sample (target {target:.3}), λ {:.3e}", h.penalty, h.lambda),
                _ => String::new(),
            }
        );
    }
    // Export, and check that the exported graph computes what was trained.
    let onnx = export_onnx(&trained.float_net()?);
    let exported = TractModel::from_proto(&onnx.autoencoder, &dir.onnx_path(Graph::Autoencoder))?;
    let check = dataset.held_out_norm().slice(0..dataset.held_out().len().min(16));
    let via_onnx = exported.run(&check.data, check.len())?;
    let via_candle = trained.model.reconstruct(&check)?;
    let diff = via_onnx.iter().zip(&via_candle.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    ensure!(diff <= 1e-3, "internal: autoencoder.onnx differs from the trained model by {diff}");
    Ok(trained)
}

/// A `transform` model starts from its principal components, already a good codec: a quarter
/// of the default learning rate refines it without first undoing it (measured on the three
/// shipped recordings at 0.5 and 1 bits/sample: 2e-3 lost up to 25 % PRDN at 1 bit/sample,
/// 5e-4 and 2e-4 were within 5 % of each other).
const TRANSFORM_LEARNING_RATE: f64 = 5e-4;

/// Bits a data frame costs besides its codes, on average: the length byte, the CRC-16, the
/// coder's flush (half of a 16-bit word) and a share of the stream header sent before every
/// [`StreamConfig::DEFAULT`]`.header_interval`-th frame.
fn framing_bits_per_frame() -> f64 {
    use funnel_shared::wire::CHECK_LEN;
    let header = long_stream_header_bytes_per_frame(StreamConfig::DEFAULT.header_interval);
    8.0 * (1 + CHECK_LEN) as f64 + 8.0 + 8.0 * header
}

/// The rate the codes of one value of a window may have (bits per sample with the framing left
/// out, per channel) for the stream to send `bits` per sample, framing included.
fn code_rate_for(bits: f64, spec: &ModelSpec, windows_per_frame: u8) -> Result<f64> {
    let framing = framing_bits_per_frame() / (spec.window * usize::from(windows_per_frame)) as f64;
    let codes = (bits - framing) / spec.channels as f64;
    ensure!(
        codes > 0.0,
        "--bits-per-sample {bits} is less than the framing alone costs ({framing:.3} bits/sample with --window {} and \
         {windows_per_frame} window(s) per frame): use a longer --window or more --windows-per-frame",
        spec.window
    );
    Ok(codes)
}

/// Principal components of `fit` (normalized windows of `spec`'s shape) as the transform a
/// `transform` model starts from, with the grid step at which the rounded codes' empirical
/// entropy on `fit` is `code_rate` bits per value (the transform coder that training improves
/// on); without a rate, step 1. With `edge_emphasis`, the components are those of the windows
/// scaled by [`edge_scale`]: the error they leave is weighed by its square, so the codes spend
/// more on each window's first and last samples.
fn principal_transform(
    fit: &Windows,
    spec: &ModelSpec,
    code_rate: Option<f64>,
    edge_emphasis: bool,
) -> Result<TransformInit> {
    let scale = edge_scale(spec, edge_emphasis);
    let scaled = Windows::new(
        fit.dim,
        fit.data.chunks(fit.dim).flat_map(|w| w.iter().zip(&scale).map(|(x, s)| x * s)).collect(),
    );
    let pca = Pca::fit(&scaled, spec.latent).context("principal components for the transform")?;
    let codes: Vec<Vec<f64>> = scaled.iter().map(|w| pca.project(w)).collect();
    let step = match code_rate {
        None => 1.0,
        Some(target) => {
            let rate = |step: f64| entropy_per_value(&codes, step, fit.dim);
            // The rate falls as the step grows: bisection on its logarithm.
            let (mut lo, mut hi) = (1e-4f64.ln(), 1e2f64.ln());
            for _ in 0..40 {
                let mid = (lo + hi) / 2.0;
                if rate(mid.exp()) > target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            ((lo + hi) / 2.0).exp()
        }
    };
    // A component `u` of the scaled windows `s ⊙ x` codes `x` with `u ⊙ s` and rebuilds it
    // with `u ⊘ s`; the mean is unscaled the same way.
    let rows = |f: fn(f32, f32) -> f32| -> Vec<f32> {
        (0..spec.latent)
            .flat_map(|j| {
                pca.components.column(j).iter().zip(&scale).map(|(&u, &s)| f(u as f32, s)).collect::<Vec<_>>()
            })
            .collect()
    };
    Ok(TransformInit {
        mean: pca.mean.iter().zip(&scale).map(|(&m, s)| m as f32 / s).collect(),
        analysis: rows(|u, s| u * s),
        synthesis: rows(|u, s| u / s),
        step: step as f32,
    })
}

/// How much more edge emphasis weighs the error at a window's first and last samples than in
/// its middle, and over how many samples the extra weight falls linearly to none. Block
/// transforms rebuild a window's edges worse than its middle (a sample there has neighbours on
/// one side only), so the error steps where windows meet: held out, PV power at 2 bits/sample
/// had its edge samples' mean |error| twice its middle's and seams of 1.87, which no receiver
/// smoother brought within 1.5 (they take out steps of the signal, not of the error), nor a
/// least-squares deblocking of the neighbouring windows' samples (1.72). Measured held out
/// (`funnel bench rd`) on 33 models, the ECG and the IMU's 9 channels and PV at 0.5, 1 and 2
/// bits/sample, always emphasized: every seam ratio within 1.26 (PV at 2: 1.08), PRDN better
/// by up to 5 % at 2 bits/sample but worse by up to 21 % at 0.5 and 1, where plain components
/// had no visible seams (measured before [`pseudo_inverse`] took the weighted metric, so
/// windows beyond range may account for part of it); a weight of 2 falling over 8 samples
/// left PV at 2 at 1.38. So
/// [`with_fewest_seams`] emphasizes only where plain components leave seams: of the 33, PV at
/// 1 and 2 bits/sample (held out, seams 1.07 → 0.91 and 1.87 → 1.08, PRDN 7.32 → 7.03 and
/// 2.75 → 2.77 %); the others are unchanged.
const EDGE_WEIGHT: f32 = 2.0;
const EDGE_SAMPLES: usize = 3;

/// The square root of each value's weight in `spec`'s windows (`[C][T]`): 1, or with
/// `edge_emphasis` up to √[`EDGE_WEIGHT`] at each channel's first and last samples.
fn edge_scale(spec: &ModelSpec, edge_emphasis: bool) -> Vec<f32> {
    let t_len = spec.window;
    let weight = |t: usize| {
        let from_edge = t.min(t_len - 1 - t) as f32;
        1.0 + (EDGE_WEIGHT - 1.0) * (1.0 - from_edge / EDGE_SAMPLES as f32).max(0.0)
    };
    (0..spec.input_len()).map(|i| if edge_emphasis { weight(i % t_len).sqrt() } else { 1.0 }).collect()
}

/// Empirical entropy of `codes` rounded on a grid of `step`, each component on its own, in bits
/// per value of a `dim`-value window.
fn entropy_per_value(codes: &[Vec<f64>], step: f64, dim: usize) -> f64 {
    let k = codes.first().map_or(0, Vec::len);
    let n = codes.len() as f64;
    let mut bits = 0.0;
    for j in 0..k {
        let mut counts = std::collections::HashMap::<i64, usize>::new();
        for c in codes {
            *counts.entry((c[j] / step).round() as i64).or_default() += 1;
        }
        bits += counts.values().map(|&c| -(c as f64) * (c as f64 / n).log2()).sum::<f64>();
    }
    bits / (n * dim as f64)
}

/// A model directory of one rate of a `funnel train` run.
pub struct OperatingPoint {
    pub dir: ModelDir,
    pub card: ModelCard,
    pub report: Report,
    pub quantization: QuantizeOutcome,
}

/// File names `funnel pipeline` writes next to the model files.
pub const CODES_FILE: &str = "codes.bin";
pub const RECONSTRUCTION_FILE: &str = "reconstruction.csv";
pub const PLOT_FILE: &str = "reconstruction.png";

/// What `funnel pipeline` did.
pub struct PipelineOutcome {
    pub trained: TrainOutcome,
    pub encoded: EncodedStream,
    pub decoded: DecodeReport,
    pub codes: PathBuf,
    pub reconstruction: PathBuf,
}

/// [`train_model`], then encodes the whole recording as the device would, decodes those bytes
/// into a CSV (and plot), and returns every step's report. The model, blob and decoder pass
/// from step to step in memory.
pub fn run_pipeline(request: &TrainRequest) -> Result<PipelineOutcome> {
    ensure!(
        request.rates.len() <= 1,
        "funnel pipeline encodes and decodes one model: give one --bits-per-sample (funnel train takes several)"
    );
    let trained = train_model(request)?;
    let blob = &trained.quantization.blob;
    let counts = trained.dataset.recording().device_counts(blob.counts_per_unit());
    let config = StreamConfig { windows_per_frame: trained.card.windows_per_frame, ..StreamConfig::DEFAULT };
    let encoded = simulate(blob, &counts, config)?;
    let codes = trained.dir.path().join(CODES_FILE);
    std::fs::write(&codes, &encoded.bytes).with_context(|| format!("cannot write {}", codes.display()))?;
    let decoder = TractModel::from_proto(&trained.onnx.decoder, &trained.dir.onnx_path(Graph::Decoder))?;
    let reconstruction = trained.dir.path().join(RECONSTRUCTION_FILE);
    let decoded = decode_to_file(
        &mut encoded.bytes.as_slice(),
        &Decoding {
            blob,
            normalization: &trained.card.normalization,
            decoder: &decoder,
            model_name: &trained.dir.path().display().to_string(),
            columns: &trained.card.columns,
            seam_filter: trained.card.seam_filter,
            live: false,
            seconds: None,
        },
        None,
        &reconstruction,
        None,
    )?;
    plot_device_path(&trained, &decoder)?;
    Ok(PipelineOutcome { trained, encoded, decoded, codes, reconstruction })
}

/// The pipeline's picture: the first held-out windows, original against the device path's
/// reconstruction, and the error.
#[cfg(feature = "plot")]
fn plot_device_path(trained: &TrainOutcome, decoder: &dyn Runtime) -> Result<()> {
    let held_out = trained.dataset.held_out();
    // At least 4 windows, in whole frames as the device sends them.
    let per_frame = usize::from(trained.card.windows_per_frame.max(1));
    let shown = held_out.slice(0..held_out.len().min(4usize.div_ceil(per_frame) * per_frame));
    let config = StreamConfig { windows_per_frame: trained.card.windows_per_frame, ..StreamConfig::DEFAULT };
    let card = &trained.card;
    let blob = &trained.quantization.blob;
    let trip = device_round_trip_with(blob, &card.normalization, decoder, &shown, config, card.seam_filter)?;
    let png = trained.dir.path().join(PLOT_FILE);
    crate::plot::plot_comparison(&png, &shown, &trip.reconstruction, trained.dataset.columns())
}

#[cfg(not(feature = "plot"))]
fn plot_device_path(_: &TrainOutcome, _: &dyn Runtime) -> Result<()> {
    Ok(())
}

/// `funnel plot`.
#[derive(Clone, Debug)]
pub struct PlotRequest {
    pub model: PathBuf,
    pub data: PathBuf,
    pub columns: Vec<String>,
    pub out: PathBuf,
}

/// Original vs. reconstruction (candle, the checkpoint) over the first held-out windows.
#[cfg(feature = "plot")]
pub fn plot_model(request: &PlotRequest) -> Result<()> {
    let dir = ModelDir::new(&request.model);
    let card = dir.load_card()?;
    let dataset = dataset_for_model(&dir, &card, &request.data, &request.columns)?;
    let (model, _) = checkpoint(&dir, &card)?;
    let n = dataset.held_out().len().min(4);
    let recon = dataset.normalization().denormalize(&model.reconstruct(&dataset.held_out_norm().slice(0..n))?);
    crate::plot::plot_comparison(&request.out, &dataset.held_out().slice(0..n), &recon, dataset.columns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pseudo_inverse_undoes_a_linear_encoder() {
        // c = W·x + b with W of 3 × 4 (full row rank): the inverse gives back every code vector
        // (W·W⁺ = I), and an x in W's row space itself.
        let (k, values) = (3, 4);
        let weight = [1.0, 2.0, 0.0, -1.0, 0.5, -1.0, 3.0, 0.0, 0.0, 1.0, 1.0, 2.0];
        let bias = [0.25, -2.0, 1.0];
        let (inverse, offset) = pseudo_inverse(&weight, &bias, k, values, &[1.0; 4]).unwrap();
        let encode = |x: &[f32]| -> Vec<f32> {
            weight
                .chunks(values)
                .zip(&bias)
                .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
                .collect()
        };
        let rebuild = LinearInverse { code_limit: vec![0.0; k], weight: inverse, bias: offset };
        let codes = [1.5, -0.5, 2.0];
        let again = encode(&rebuild.rebuild(&codes));
        assert!(again.iter().zip(codes).all(|(a, c)| (a - c).abs() < 1e-4), "{again:?}");
        let x: Vec<f32> = (0..values).map(|i| weight[i] - 0.5 * weight[values + i]).collect();
        let back = rebuild.rebuild(&encode(&x));
        assert!(back.iter().zip(&x).all(|(a, v)| (a - v).abs() < 1e-4), "{back:?} {x:?}");
        // In the metric ‖S·x‖: still every code vector, and an x in S⁻²·Wᵀ's range itself (the
        // windows of least weighted norm), which the plain inverse does not give back.
        let scale = [1.0, 2.0, 1.0, 0.5];
        let (inverse, offset) = pseudo_inverse(&weight, &bias, k, values, &scale).unwrap();
        let weighted = LinearInverse { code_limit: vec![0.0; k], weight: inverse, bias: offset };
        let again = encode(&weighted.rebuild(&codes));
        assert!(again.iter().zip(codes).all(|(a, c)| (a - c).abs() < 1e-4), "{again:?}");
        let x: Vec<f32> = x.iter().zip(scale).map(|(v, s)| v / (s * s)).collect();
        let back = weighted.rebuild(&encode(&x));
        assert!(back.iter().zip(&x).all(|(a, v)| (a - v).abs() < 1e-4), "{back:?} {x:?}");
        let plain = rebuild.rebuild(&encode(&x));
        assert!(plain.iter().zip(&x).any(|(a, v)| (a - v).abs() > 1e-2), "{plain:?} {x:?}");
    }

    #[test]
    fn edge_emphasis_rebuilds_the_windows_edges_better() {
        // A random walk cut into windows: what a few plain components miss gathers at the edges.
        let (t_len, latent) = (16, 4);
        let mut state = 7u64;
        let mut level = 0.0f32;
        let walk: Vec<f32> = (0..400 * t_len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                level += (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                level
            })
            .collect();
        let fit = Windows::new(t_len, walk);
        // Mean square error at each position of the windows rebuilt from unrounded codes.
        let error_by_position = |latent: usize, emphasis: bool| -> Vec<f64> {
            let spec = ModelSpec::new(Arch::Transform, 1, t_len, latent).unwrap();
            let init = principal_transform(&fit, &spec, None, emphasis).unwrap();
            let mut error = vec![0.0f64; t_len];
            for w in fit.iter() {
                let centred: Vec<f32> = w.iter().zip(&init.mean).map(|(x, m)| x - m).collect();
                let codes: Vec<f32> =
                    init.analysis.chunks(t_len).map(|row| row.iter().zip(&centred).map(|(a, x)| a * x).sum()).collect();
                for (t, e) in error.iter_mut().enumerate() {
                    let rebuilt =
                        init.mean[t] + (0..latent).map(|j| codes[j] * init.synthesis[j * t_len + t]).sum::<f32>();
                    *e += f64::from(rebuilt - w[t]).powi(2) / fit.len() as f64;
                }
            }
            error
        };
        let (plain, emphasized) = (error_by_position(latent, false), error_by_position(latent, true));
        let edges = |e: &[f64]| e[0] + e[t_len - 1];
        let total = |e: &[f64]| e.iter().sum::<f64>();
        assert!(edges(&plain) > 2.0 * (total(&plain) - edges(&plain)) / (t_len - 2) as f64, "{plain:?}");
        assert!(edges(&emphasized) < 0.8 * edges(&plain), "{emphasized:?} vs {plain:?}");
        // Plain components rebuild best on average: emphasis trades some of it for the edges.
        assert!(total(&plain) <= total(&emphasized));
        // All components: both rebuild every window exactly.
        for emphasis in [false, true] {
            assert!(error_by_position(t_len, emphasis).iter().all(|&e| e < 1e-6), "{emphasis}");
        }
    }

    #[test]
    fn edge_emphasis_is_kept_when_it_steps_less_for_little_or_the_seams_show() {
        // The training parts measured: PV at 1 and 2 bits/sample, UH4 at 0.5, 1 and 2.
        assert!(emphasis_pays((7.60, 1.29), (7.51, 1.21)));
        assert!(emphasis_pays((3.061, 1.504), (3.116, 1.03)), "1.8 % more PRDN");
        assert!(emphasis_pays((17.97, 1.42), (17.82, 1.40)));
        assert!(!emphasis_pays((10.54, 1.47), (11.24, 1.37)), "6.6 % more PRDN for seams no one sees");
        assert!(!emphasis_pays((5.26, 1.41), (5.60, 0.98)));
        // Visible seams are worth any PRDN; seams that do not fall are worth none.
        assert!(emphasis_pays((3.0, 1.8), (3.6, 1.2)));
        assert!(!emphasis_pays((3.0, 1.8), (2.9, 1.9)));
    }

    #[test]
    fn the_seam_filter_is_the_best_within_the_seam_limit_or_else_the_smoothest() {
        let f = |samples| Some(SeamFilter { samples, strength: 1.0 });
        // The lowest PRDN is not within the limit: the best that is.
        let tried = [(None, 10.0, Some(2.4)), (f(1), 9.9, Some(1.3)), (f(2), 10.1, Some(1.2)), (f(3), 10.3, Some(1.1))];
        assert_eq!(seam_choice(&tried), (f(2), 10.1, Some(1.2)));
        // Within the limit already: PRDN decides, no filter first on a tie.
        let tried = [(None, 10.0, Some(1.2)), (f(1), 10.0, Some(1.1)), (f(2), 10.4, Some(1.0))];
        assert_eq!(seam_choice(&tried), (None, 10.0, Some(1.2)));
        // None within it: the smallest seams, the lower PRDN of equal ones.
        let tried = [(None, 10.0, Some(2.4)), (f(1), 10.2, Some(1.8)), (f(2), 10.1, Some(1.8)), (f(3), 9.0, Some(1.9))];
        assert_eq!(seam_choice(&tried), (f(2), 10.1, Some(1.8)));
        // No error to step: no filter, no ratio.
        assert_eq!(seam_choice(&[(None, 0.0, None), (f(1), 0.0, None)]), (None, 0.0, None));
    }
}
