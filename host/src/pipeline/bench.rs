//! `funnel bench rd`: the rate–distortion picture of one recording's held-out part — the classic
//! peers swept over their knobs, and every Funnel model given, with each Funnel point's PRDN
//! against the best peer's at the same bits per sample.

use std::path::PathBuf;

use super::{dataset_for_model, onnx_runtime};
use crate::codec::long_stream_header_bytes_per_frame;
use crate::eval::bounded::{bounded_sweep, BoundedModelPoint, BoundedReport};
use crate::eval::peers::{all_peers, FunnelPoint, PeerInput, RdPoint, RdReport};
use crate::eval::{bounded_metrics, device_metrics};
use crate::runtime::Backend;
use anyhow::{ensure, Context, Result};
use funnel_artifacts::{Dataset, Graph, ModelDir, Recording};
use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::stream_len;

/// Window of the peers' split when no model is given.
pub const DEFAULT_RD_WINDOW: usize = 256;

/// `funnel bench rd`.
#[derive(Clone, Debug)]
pub struct RdRequest {
    pub data: PathBuf,
    pub column: String,
    /// Funnel models to place among the peers (their int8 device path; a bounded model's
    /// bounded stream in the bounded table).
    pub models: Vec<PathBuf>,
    /// Window of the split and of the per-window peers (default: the first model's, else 256).
    pub window: Option<usize>,
    /// Where `rd.json` and `rd.png` go.
    pub out: PathBuf,
    /// Windows each Funnel data frame carries (the device's `--windows-per-frame`; `None`: each
    /// model's own): more cost less framing per window and add latency. Every held-out window
    /// is sent (the stream's last frame carries those that fill no frame).
    pub windows_per_frame: Option<u8>,
    /// Device counts per unit for the lossless reference and the error-bounded sweep (`None`:
    /// the first model's, else [`Dataset::default_counts_per_unit`]).
    pub counts_per_unit: Option<f32>,
}

/// The held-out part of one column as the peers see it, with the split of `window`.
fn peer_split(recording: &Recording, window: usize) -> Result<(Vec<f64>, Vec<f64>, f32)> {
    let dataset = Dataset::new(recording.clone(), window, None)?;
    let flat = |w: &funnel_artifacts::Windows| w.data.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    Ok((flat(dataset.train()), flat(dataset.held_out()), dataset.default_counts_per_unit()))
}

/// Runs the peers and the models on `request.data` and writes `rd.json` and `rd.png`.
pub fn bench_rd(request: &RdRequest) -> Result<RdReport> {
    let columns = vec![request.column.clone()];
    let recording = Recording::from_csv(&request.data, &columns)?;
    let models: Vec<ModelDir> = request.models.iter().map(ModelDir::new).collect();
    let cards = models.iter().map(|m| m.load_card()).collect::<Result<Vec<_>, _>>()?;
    let window = match (request.window, cards.first()) {
        (Some(w), _) => w,
        (None, Some(card)) => card.window(),
        (None, None) => DEFAULT_RD_WINDOW,
    };
    ensure!(window >= 2, "--window must be at least 2");
    let (train, held_out, default_cpu) = peer_split(&recording, window)?;
    let counts_per_unit = match request.counts_per_unit {
        Some(cpu) => {
            ensure!(cpu.is_finite() && cpu > 0.0, "--counts-per-unit must be a positive number, not {cpu}");
            cpu
        }
        None => cards.first().map_or(default_cpu, |c| c.counts_per_unit),
    };
    let points = all_peers(&PeerInput { train: &train, held_out: &held_out, window, counts_per_unit })
        .context("classic peers")?;

    let mut funnel = Vec::new();
    let mut bounded_models = Vec::new();
    for (dir, card) in models.iter().zip(&cards) {
        // Each model on its own split (its window), through the device path.
        let dataset = dataset_for_model(dir, card, &request.data, &columns)?;
        let blob = dir.load_blob_of(card)?;
        if let Some(bounded) = &card.bounded {
            // What `funnel encode` sends for a bounded model: its bounded stream.
            let config = StreamConfig { windows_per_frame: card.stream_windows_per_frame(), ..StreamConfig::DEFAULT };
            let stream = bounded_metrics(&blob, &dataset, config)
                .with_context(|| format!("the bounded stream of {}", dir.path().display()))?;
            let rows = dataset.held_out_rows();
            let held_out: Vec<f64> = dataset.recording().samples[0][rows].iter().map(|&v| f64::from(v)).collect();
            bounded_models.push(BoundedModelPoint::against_peers(
                dir.path().display().to_string(),
                blob.model_id().to_string(),
                bounded.latent_codes,
                &held_out,
                blob.counts_per_unit(),
                bounded.max_error_counts,
                stream,
            )?);
            continue;
        }
        let decoder = onnx_runtime(dir, card, Graph::Decoder, Backend::Tract)?;
        let windows_per_frame = request.windows_per_frame.unwrap_or(card.windows_per_frame).max(1);
        // The held-out windows the device sends, through the model's receiver, as `funnel eval`
        // measures them.
        let m =
            device_metrics(&blob, decoder.as_ref(), &dataset, card.sensor_bits, windows_per_frame, card.seam_filter)?
                .metrics;
        let setting = match windows_per_frame {
            1 => format!("{} codes/window", blob.latent()),
            w => format!(
                "{} codes/window, {w} windows/frame ({} of {} held-out windows)",
                blob.latent(),
                m.windows,
                dataset.held_out().len()
            ),
        };
        let point = RdPoint {
            method: format!("Funnel {}", dir.path().display()),
            setting,
            bits_per_sample: m.bits_per_sample,
            prdn: m.prdn,
            prd: m.prd,
            snr_db: m.snr_db,
            max_abs_error: m.max_abs_error,
        };
        // The headers of the frames that carried the held-out windows (all of them: the last
        // frame carries the rest), against a long stream's one every `header_interval` frames.
        let interval = StreamConfig::DEFAULT.header_interval;
        let frames = (m.windows as u64).div_ceil(u64::from(windows_per_frame));
        let samples = (m.windows * card.window()) as f64;
        let header_bits = 8.0 * stream_len(frames, 0, interval, 0) as f64 / samples;
        let long_stream_header_bits =
            8.0 * long_stream_header_bytes_per_frame(interval) / (f64::from(windows_per_frame) * card.window() as f64);
        funnel.push(
            FunnelPoint::against(dir.path().display().to_string(), blob.model_id().to_string(), point, &points)
                .with_headers(header_bits, long_stream_header_bits, &points),
        );
    }
    let report = RdReport {
        data: request.data.display().to_string(),
        column: request.column.clone(),
        window,
        held_out_samples: held_out.len(),
        points,
        funnel,
        bounded: BoundedReport {
            models: bounded_models,
            ..bounded_sweep(&train, &held_out, counts_per_unit).context("the bounded sweep")?
        },
    };
    std::fs::create_dir_all(&request.out).with_context(|| format!("cannot create {}", request.out.display()))?;
    let json = request.out.join("rd.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", json.display()))?;
    crate::plot::plot_rd(&request.out.join("rd.png"), &report)?;
    Ok(report)
}
