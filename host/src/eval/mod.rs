//! The eval stage: held-out quality of the float autoencoder, the PCA baseline with as many
//! components as the model has codes, and the int8 device path, as one [`Report`].

#[cfg(feature = "peers")]
pub mod bounded;
mod pca;
#[cfg(feature = "peers")]
pub mod peers;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use funnel_artifacts::card::SeamFilter;
use funnel_artifacts::metrics::{self, Method, Metrics};
use funnel_artifacts::{Blob, Dataset, Windows};
use serde::Serialize;

pub use pca::Pca;

use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::{DecodeEvent, FrameDecoder};

use crate::codec::{device_round_trip_with, sent_windows, simulate};
use crate::runtime::{Backend, Runtime};

/// Held-out metrics per method.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub model_dir: String,
    pub data_file: String,
    pub columns: Vec<String>,
    pub window: usize,
    pub latent: usize,
    pub held_out_windows: usize,
    /// What ran the float autoencoder.
    pub backend: Backend,
    pub sections: BTreeMap<Method, Metrics>,
}

impl Report {
    pub fn table(&self) -> String {
        let mut s = format!(
            "held-out metrics: {} windows of {} × {} samples ({}), latent {}\n",
            self.held_out_windows,
            self.columns.len(),
            self.window,
            self.data_file,
            self.latent
        );
        s += &format!(
            "{:<18} {:>9} {:>9} {:>9} {:>11} {:>11} {:>8} {:>7}\n",
            "method", "PRD %", "PRDN %", "SNR dB", "RMSE", "max |err|", "CR", "seams"
        );
        for (method, m) in &self.sections {
            s += &format!(
                "{:<18} {:>9.3} {:>9.3} {:>9.2} {:>11.5} {:>11.5} {:>8.2} {:>7}\n",
                method.name(),
                m.prd,
                m.prdn,
                m.snr_db,
                m.rmse,
                m.max_abs_error,
                m.compression_ratio,
                m.seam_ratio.map_or("–".to_string(), |r| format!("{r:.2}"))
            );
        }
        s += "seams: mean |Δ error| across window boundaries over its mean inside windows (1: none; over 1.5: visible)\n";
        s
    }
}

/// What to evaluate on the held-out part of `dataset` (normalized with the model's statistics).
pub struct Evaluation<'a> {
    pub dataset: &'a Dataset,
    /// Codes per window (the PCA baseline gets as many components).
    pub latent: usize,
    /// The float autoencoder, normalized windows in and out.
    pub autoencoder: &'a dyn Runtime,
    /// What `autoencoder` is.
    pub backend: Backend,
    /// The device path, once quantized: the blob and the latent decoder.
    pub device: Option<(&'a Blob, &'a dyn Runtime)>,
    /// Resolution of the sensor, for the compression ratio against it.
    pub sensor_bits: u32,
    /// Windows per data frame of the device's stream.
    pub windows_per_frame: u8,
    /// The receiver's seam filter (the card's).
    pub seam_filter: Option<SeamFilter>,
}

/// Float autoencoder, PCA (fitted on the training part, K = latent) and, when given, the int8
/// device path on the held-out part. The float autoencoder and PCA are charged the bits the
/// device sent (of raw int8 codes without a device).
pub fn evaluate(model_dir: &Path, e: &Evaluation<'_>) -> Result<Report> {
    let ds = e.dataset;
    let mut sections = BTreeMap::new();
    let bits = metrics::bits_sent(ds.held_out().len(), e.latent);
    sections.insert(Method::FloatAutoencoder, float_metrics(e.autoencoder, ds, bits, e.sensor_bits)?);
    let pca = Pca::fit(ds.train_norm(), e.latent).context("PCA baseline")?;
    let pca_recon = ds.normalization().denormalize(&pca.reconstruct(ds.held_out_norm()));
    sections.insert(Method::Pca, metrics::compute(ds.held_out(), &pca_recon, ds.channels(), bits, e.sensor_bits));
    if let Some((blob, decoder)) = e.device {
        insert_device(
            &mut sections,
            device_metrics(blob, decoder, ds, e.sensor_bits, e.windows_per_frame, e.seam_filter)?.metrics,
        );
    }
    Ok(Report {
        model_dir: model_dir.display().to_string(),
        data_file: ds.path().display().to_string(),
        columns: ds.columns().to_vec(),
        window: ds.window(),
        latent: e.latent,
        held_out_windows: ds.held_out().len(),
        backend: e.backend,
        sections,
    })
}

/// Adds the device path's section and charges every other section the bits the device sent.
pub fn insert_device(sections: &mut BTreeMap<Method, Metrics>, device: Metrics) {
    for m in sections.values_mut() {
        *m = m.clone().at_rate_of(&device);
    }
    sections.insert(Method::Int8Device, device);
}

/// Held-out metrics of a float autoencoder (normalized windows in and out), charged `bits`.
pub fn float_metrics(autoencoder: &dyn Runtime, ds: &Dataset, bits: u64, sensor_bits: u32) -> Result<Metrics> {
    let x = ds.held_out_norm();
    let recon = Windows::new(x.dim, autoencoder.run(&x.data, x.len())?);
    let recon = ds.normalization().denormalize(&recon);
    Ok(metrics::compute(ds.held_out(), &recon, ds.channels(), bits, sensor_bits))
}

/// The device path's held-out metrics, and how many of the windows saturated its input.
#[derive(Clone, Debug)]
pub struct DeviceMetrics {
    pub metrics: Metrics,
    /// Held-out windows with a sample beyond what the device's input holds (clipped): a float
    /// network clips nothing, so these are where the device path can lose to it most.
    pub saturated_windows: usize,
}

/// Held-out metrics of the device path: int8 encoder → frames of `windows_per_frame` windows →
/// `decoder` (through `seam_filter`), charged the bytes the simulated device sent, on the
/// held-out windows it sends (all of them, unless `blob` has no code tables: then those that
/// fill frames, see `codec::sent_windows`).
pub fn device_metrics(
    blob: &Blob,
    decoder: &dyn Runtime,
    ds: &Dataset,
    sensor_bits: u32,
    windows_per_frame: u8,
    seam_filter: Option<SeamFilter>,
) -> Result<DeviceMetrics> {
    let whole = sent_windows(blob, ds.held_out().len(), windows_per_frame);
    ensure!(
        whole > 0,
        "the held-out part ({} windows) does not fill one frame of {windows_per_frame} windows",
        ds.held_out().len()
    );
    let held_out = ds.held_out().slice(0..whole);
    let config = StreamConfig { windows_per_frame, ..StreamConfig::DEFAULT };
    let trip = device_round_trip_with(blob, ds.normalization(), decoder, &held_out, config, seam_filter)?;
    Ok(DeviceMetrics {
        metrics: metrics::compute(&held_out, &trip.reconstruction, ds.channels(), 8 * trip.bytes as u64, sensor_bits),
        saturated_windows: trip.saturated_windows,
    })
}

/// Held-out figures of a bounded stream (see [`bounded_metrics`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BoundedMetrics {
    /// Bits per sample (per channel) of the stream, headers, lengths and checks included.
    pub bits_per_sample: f64,
    /// The largest error against the recording (its units, as `funnel decode` writes the
    /// samples) and against the device's counts.
    pub max_abs_error: f64,
    pub max_abs_error_counts: u16,
}

/// The held-out part of `ds` as a device with the bounded `blob` sends it (frames cut by
/// `config`), received as `funnel decode` receives it. Errs when a sample comes back further
/// than the blob's bound from the device's count, or the stream does not decode cleanly.
pub fn bounded_metrics(blob: &Blob, ds: &Dataset, config: StreamConfig) -> Result<BoundedMetrics> {
    let spec = blob.residual().context("the model is not bounded (its blob has no residual coder)")?;
    let (recording, held_out, cpu) = (ds.recording(), ds.held_out_rows(), blob.counts_per_unit());
    let channels = recording.channels();
    let counts = recording.device_counts(cpu);
    let held_counts = &counts[held_out.start * channels..held_out.end * channels];
    let encoded = simulate(blob, held_counts, config)?;
    let mut receiver = FrameDecoder::new();
    let mut events: Vec<DecodeEvent> = receiver.feed(&encoded.bytes).collect();
    events.extend(receiver.finish());
    let mut rebuilt = Vec::with_capacity(held_counts.len());
    for event in events {
        match event {
            DecodeEvent::Frame(frame) => rebuilt.extend(blob.frame_samples(&frame)?),
            DecodeEvent::Header { .. } => {}
            other => bail!("internal: the device simulation's stream did not decode cleanly: {other:?}"),
        }
    }
    ensure!(rebuilt.len() == held_counts.len(), "internal: the bounded stream lost samples");
    let max_abs_error_counts = held_counts.iter().zip(&rebuilt).map(|(x, r)| x.abs_diff(*r)).max().unwrap_or(0);
    ensure!(
        max_abs_error_counts <= spec.max_error,
        "internal: a held-out sample is {max_abs_error_counts} counts off, over the bound of {}",
        spec.max_error
    );
    let max_abs_error = (held_out.start..held_out.end)
        .flat_map(|t| (0..channels).map(move |c| (t, c)))
        .zip(&rebuilt)
        .map(|((t, c), &r)| f64::from((recording.samples[c][t] - f32::from(r) / cpu).abs()))
        .fold(0.0, f64::max);
    Ok(BoundedMetrics {
        bits_per_sample: 8.0 * encoded.bytes.len() as f64 / held_out.len() as f64,
        max_abs_error,
        max_abs_error_counts,
    })
}
