//! From received bytes back to the signal: frames through the resynchronising
//! [`FrameDecoder`], codes dequantized, the ONNX decoder run in batches, denormalized, and one
//! output row per sample. Missing windows stay empty (flagged), never invented.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use funnel_shared::blob::CodeQuant;
use funnel_shared::encoder::QuantizedEncoder;
use funnel_shared::wire::{DecodeEvent, Frame, FrameDecoder, ModelId, FLAG_INPUT_SATURATED, FLAG_STREAM_START};
use serde::Serialize;

use crate::card::ModelCard;
use crate::data::{channels_first_to_interleaved, Normalization};
use crate::encode::load_blob;
use crate::onnx::{load_with_tract, TractModel, DECODER_FILE};

/// Frames decoded together in one call of the ONNX decoder.
pub const DEFAULT_BATCH: usize = 64;
/// A gap longer than this many samples is reported but not written out as empty rows (a
/// corrupted-but-CRC-valid sample index must not make us write gigabytes).
pub const MAX_FILLED_GAP: u64 = 1 << 24;

/// Runs the decoder half of the autoencoder: `[batch][K]` latents → `[batch][C*T]` normalized.
pub trait LatentDecoder {
    fn decode(&self, latents: &[f32], batch: usize) -> Result<Vec<f32>>;
}

impl LatentDecoder for TractModel {
    fn decode(&self, latents: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.run(latents, batch)
    }
}

#[cfg(feature = "ort")]
impl LatentDecoder for crate::onnx::OrtModel {
    fn decode(&self, latents: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.run(latents, batch)
    }
}

/// Which runtime runs `decoder.onnx`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Tract,
    /// ONNX Runtime, loaded from `ORT_DYLIB_PATH` (build with `--features ort`).
    Ort,
}

/// Loads `decoder.onnx` of a model directory with the chosen backend.
pub fn load_decoder(model_dir: &Path, backend: Backend) -> Result<Box<dyn LatentDecoder>> {
    let path = model_dir.join(DECODER_FILE);
    match backend {
        Backend::Tract => Ok(Box::new(load_with_tract(&path)?)),
        #[cfg(feature = "ort")]
        Backend::Ort => Ok(Box::new(crate::onnx::OrtModel::load(&path)?)),
        #[cfg(not(feature = "ort"))]
        Backend::Ort => {
            bail!("this funnel was built without ONNX Runtime; rebuild with `--features ort`")
        }
    }
}

/// How one output sample came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleStatus {
    Ok,
    /// The device clamped some input of this window to the calibrated range.
    Saturated,
    /// The frame of this window never arrived intact: no value.
    Missing,
}

impl SampleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SampleStatus::Ok => "ok",
            SampleStatus::Saturated => "saturated",
            SampleStatus::Missing => "missing",
        }
    }
}

/// Receives reconstructed windows in stream order.
pub trait ReconstructionSink {
    /// `len` samples starting at `sample_index`; `values` is `[len][C]` interleaved, `None` for
    /// samples that were lost.
    fn window(&mut self, sample_index: u64, len: usize, values: Option<&[f32]>, status: SampleStatus) -> Result<()>;
    /// Called after each decoded batch (live output flushes here).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Writes `sample_index,<columns...>,status` rows.
pub struct CsvSink<W: Write> {
    out: W,
    channels: usize,
}

impl<W: Write> CsvSink<W> {
    pub fn new(mut out: W, columns: &[String]) -> Result<Self> {
        writeln!(out, "sample_index,{},status", columns.join(","))?;
        Ok(CsvSink { out, channels: columns.len() })
    }
}

impl<W: Write> ReconstructionSink for CsvSink<W> {
    fn window(&mut self, sample_index: u64, len: usize, values: Option<&[f32]>, status: SampleStatus) -> Result<()> {
        for t in 0..len {
            write!(self.out, "{}", sample_index + t as u64)?;
            for c in 0..self.channels {
                match values {
                    Some(v) => write!(self.out, ",{}", v[t * self.channels + c])?,
                    None => write!(self.out, ",")?,
                }
            }
            writeln!(self.out, ",{}", status.as_str())?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(self.out.flush()?)
    }
}

/// Keeps the reconstruction in memory (evaluation, tests, plots): `[T][C]` values, NaN where
/// missing.
#[derive(Clone, Debug, Default)]
pub struct CollectSink {
    pub channels: usize,
    pub first_sample: Option<u64>,
    pub values: Vec<f32>,
    pub status: Vec<SampleStatus>,
}

impl ReconstructionSink for CollectSink {
    fn window(&mut self, sample_index: u64, len: usize, values: Option<&[f32]>, status: SampleStatus) -> Result<()> {
        self.first_sample.get_or_insert(sample_index);
        match values {
            Some(v) => self.values.extend_from_slice(&v[..len * self.channels]),
            None => self.values.extend(std::iter::repeat_n(f32::NAN, len * self.channels)),
        }
        self.status.extend(std::iter::repeat_n(status, len));
        Ok(())
    }
}

/// A run of samples with no frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub first_sample: u64,
    pub samples: u64,
    /// False when the gap was too long to write out as empty rows.
    pub filled: bool,
}

/// Everything that happened to the stream, for the user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecodeReport {
    pub bytes: u64,
    pub frames: u64,
    pub samples_written: u64,
    pub saturated_windows: u64,
    /// Frames lost according to the sequence numbers.
    pub frames_lost: u64,
    pub gaps: Vec<Gap>,
    pub missing_samples: u64,
    /// Damaged chunks skipped, by kind, and the bytes they held.
    pub corrupt: BTreeMap<String, u64>,
    pub corrupt_bytes: u64,
    /// Frames that repeat or go back in time (duplicates, reordering): skipped.
    pub stale_frames_skipped: u64,
    /// Times the device restarted its stream (sample index back to 0).
    pub restarts: u64,
}

impl DecodeReport {
    pub fn corrupt_frames(&self) -> u64 {
        self.corrupt.values().sum()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} bytes, {} frames decoded, {} samples written ({} saturated windows)\n",
            self.bytes, self.frames, self.samples_written, self.saturated_windows
        );
        s += &format!(
            "{} frames lost, {} samples missing in {} gap(s), {} corrupt chunk(s) skipped ({} bytes), {} stale frame(s) skipped, {} restart(s)\n",
            self.frames_lost,
            self.missing_samples,
            self.gaps.len(),
            self.corrupt_frames(),
            self.corrupt_bytes,
            self.stale_frames_skipped,
            self.restarts
        );
        for (kind, n) in &self.corrupt {
            s += &format!("  corrupt: {n} × {kind}\n");
        }
        for g in self.gaps.iter().take(20) {
            s += &format!(
                "  gap: samples {}..{} ({} samples){}\n",
                g.first_sample,
                g.first_sample + g.samples,
                g.samples,
                if g.filled { "" } else { " — too long, no rows written" }
            );
        }
        if self.gaps.len() > 20 {
            s += &format!("  … {} more gaps\n", self.gaps.len() - 20);
        }
        s
    }
}

enum Pending {
    Frame(Frame),
    Missing { first_sample: u64, samples: u64 },
}

/// Decodes one model's frames from a byte stream into a [`ReconstructionSink`].
pub struct StreamDecoder<'d> {
    frames: FrameDecoder,
    model_id: ModelId,
    model_name: String,
    codes: CodeQuant,
    latent: usize,
    window: usize,
    channels: usize,
    normalization: Normalization,
    decoder: &'d dyn LatentDecoder,
    batch: usize,
    next_sample: Option<u64>,
    pending: VecDeque<Pending>,
    report: DecodeReport,
}

impl<'d> StreamDecoder<'d> {
    /// `blob` identifies the model (frames of other models are refused); `decoder` is its
    /// `decoder.onnx`. `model_name` names the model in errors.
    pub fn new(
        blob: &[u8],
        normalization: &Normalization,
        decoder: &'d dyn LatentDecoder,
        model_name: &str,
    ) -> Result<Self> {
        let encoder = QuantizedEncoder::from_blob(blob).map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(
            normalization.channels() == encoder.channels(),
            "the card's normalization does not match the blob's channels"
        );
        Ok(StreamDecoder {
            frames: FrameDecoder::new(),
            model_id: encoder.model_id(),
            model_name: model_name.to_string(),
            codes: encoder.spec().codes,
            latent: encoder.code_len(),
            window: encoder.window(),
            channels: encoder.channels(),
            normalization: normalization.clone(),
            decoder,
            batch: DEFAULT_BATCH,
            next_sample: None,
            pending: VecDeque::new(),
            report: DecodeReport::default(),
        })
    }

    /// Frames decoded per ONNX call (1 = lowest latency).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Consumes a chunk of received bytes (any size, split anywhere).
    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn ReconstructionSink) -> Result<()> {
        self.report.bytes += chunk.len() as u64;
        let events: Vec<DecodeEvent> = self.frames.feed(chunk).collect();
        for event in events {
            self.handle(event, sink)?;
        }
        Ok(())
    }

    /// Decodes and writes everything received so far.
    pub fn flush(&mut self, sink: &mut dyn ReconstructionSink) -> Result<()> {
        let frames: Vec<&Frame> =
            self.pending.iter().filter_map(|p| if let Pending::Frame(f) = p { Some(f) } else { None }).collect();
        let mut latents = Vec::with_capacity(frames.len() * self.latent);
        for f in &frames {
            latents
                .extend(f.codes.iter().map(|&q| self.codes.scale * (f32::from(q) - f32::from(self.codes.zero_point))));
        }
        let n = frames.len();
        let recon = if n > 0 { self.decoder.decode(&latents, n)? } else { Vec::new() };
        let dim = self.window * self.channels;
        ensure!(recon.len() == n * dim, "decoder returned {} values for {n} windows of {dim}", recon.len());
        let mut windows = recon.chunks_exact(dim.max(1));
        for p in self.pending.drain(..) {
            match p {
                Pending::Frame(f) => {
                    let mut w = windows.next().expect("one window per frame").to_vec();
                    self.normalization.denormalize_in_place(&mut w);
                    let values = channels_first_to_interleaved(&w, self.channels);
                    let status =
                        if f.flags & FLAG_INPUT_SATURATED != 0 { SampleStatus::Saturated } else { SampleStatus::Ok };
                    sink.window(f.sample_index, self.window, Some(&values), status)?;
                    self.report.samples_written += self.window as u64;
                }
                Pending::Missing { first_sample, samples } => {
                    sink.window(first_sample, samples as usize, None, SampleStatus::Missing)?;
                    self.report.samples_written += samples;
                }
            }
        }
        sink.flush()
    }

    /// Ends the stream: a partial frame at the end is reported as truncated.
    pub fn finish(mut self, sink: &mut dyn ReconstructionSink) -> Result<DecodeReport> {
        if let Some(event) = self.frames.finish() {
            self.handle(event, sink)?;
        }
        self.flush(sink)?;
        Ok(self.report)
    }

    fn handle(&mut self, event: DecodeEvent, sink: &mut dyn ReconstructionSink) -> Result<()> {
        match event {
            DecodeEvent::Frame(frame) => self.frame(frame, sink)?,
            DecodeEvent::Corrupt { kind, bytes } => {
                *self.report.corrupt.entry(kind.to_string()).or_default() += 1;
                self.report.corrupt_bytes += bytes as u64;
            }
            DecodeEvent::Gap { expected, received, .. } => {
                self.report.frames_lost += u64::from(received.wrapping_sub(expected))
            }
            // The frame itself follows; its sample index decides what to do with it.
            DecodeEvent::OutOfOrder { .. } => {}
        }
        Ok(())
    }

    fn frame(&mut self, frame: Frame, sink: &mut dyn ReconstructionSink) -> Result<()> {
        if frame.model_id != self.model_id {
            bail!(
                "frame {} (sample {}) was made by model {}, but --model {} is model {}: decode it with the model that made it",
                frame.sequence,
                frame.sample_index,
                frame.model_id,
                self.model_name,
                self.model_id
            );
        }
        ensure!(
            frame.codes.len() == self.latent,
            "frame {} has {} codes, model {} emits {}",
            frame.sequence,
            frame.codes.len(),
            self.model_id,
            self.latent
        );
        let window = self.window as u64;
        match self.next_sample {
            Some(_) if frame.flags & FLAG_STREAM_START != 0 && frame.sample_index == 0 => {
                self.report.restarts += 1;
            }
            Some(next) if frame.sample_index < next => {
                self.report.stale_frames_skipped += 1;
                return Ok(());
            }
            Some(next) if frame.sample_index > next => {
                let samples = frame.sample_index - next;
                let filled = samples <= MAX_FILLED_GAP;
                self.report.gaps.push(Gap { first_sample: next, samples, filled });
                self.report.missing_samples += samples;
                if filled {
                    self.pending.push_back(Pending::Missing { first_sample: next, samples });
                }
            }
            _ => {}
        }
        self.next_sample = Some(frame.sample_index + window);
        self.report.frames += 1;
        self.report.saturated_windows += u64::from(frame.flags & FLAG_INPUT_SATURATED != 0);
        self.pending.push_back(Pending::Frame(frame));
        if self.pending.len() >= self.batch {
            self.flush(sink)?;
        }
        Ok(())
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct DecodeArgs {
    /// Model directory (`encoder.fq8` identifies the model, `decoder.onnx` rebuilds windows).
    #[arg(long)]
    pub model: PathBuf,
    /// Frame stream file, or `-` for stdin.
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    pub input: Option<String>,
    /// Read a live device on this serial port instead (e.g. /dev/ttyACM0).
    #[arg(long)]
    pub serial: Option<String>,
    #[arg(long, default_value_t = 115_200, requires = "serial")]
    pub baud: u32,
    /// Stop reading the serial port after this many seconds (default: until interrupted).
    #[arg(long, requires = "serial")]
    pub seconds: Option<f64>,
    /// Output CSV: `sample_index,<columns>,status`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Backend::Tract)]
    pub backend: Backend,
    /// Also plot the reconstruction (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// `funnel decode`.
pub fn decode_command(args: &DecodeArgs) -> Result<DecodeReport> {
    let card = ModelCard::load(&args.model)?;
    let blob = load_blob(&args.model)?;
    let decoder = load_decoder(&args.model, args.backend)?;
    let name = args.model.display().to_string();
    let file = std::fs::File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut csv = CsvSink::new(std::io::BufWriter::new(file), &card.columns)?;
    let mut collect = CollectSink { channels: card.columns.len(), ..Default::default() };
    let report =
        {
            let mut sink = Tee { a: &mut csv, b: args.plot.as_ref().map(|_| &mut collect) };
            let live = args.serial.is_some();
            let mut stream = StreamDecoder::new(&blob, &card.normalization, decoder.as_ref(), &name)?
                .with_batch(if live { 1 } else { DEFAULT_BATCH });

            let mut reader: Box<dyn Read> = match (&args.input, &args.serial) {
                (Some(path), _) if path == "-" => Box::new(std::io::stdin().lock()),
                (Some(path), _) => {
                    Box::new(std::fs::File::open(path).with_context(|| format!("cannot open --input {path}"))?)
                }
                (None, Some(port)) => Box::new(
                    serialport::new(port, args.baud)
                        .timeout(std::time::Duration::from_millis(200))
                        .open()
                        .with_context(|| format!("cannot open serial port {port} at {} baud", args.baud))?,
                ),
                (None, None) => bail!("give --input FILE (or -) or --serial PORT"),
            };
            let started = std::time::Instant::now();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                if args.seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
                    break;
                }
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => stream.feed(&buf[..n], &mut sink)?,
                    Err(e) if live && e.kind() == std::io::ErrorKind::TimedOut => stream.flush(&mut sink)?,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("reading the frame stream"),
                }
            }
            stream.finish(&mut sink)?
        };
    if let Some(png) = &args.plot {
        plot_reconstruction(png, &card.columns, &collect)?;
    }
    Ok(report)
}

/// Feeds two sinks.
struct Tee<'a> {
    a: &'a mut dyn ReconstructionSink,
    b: Option<&'a mut CollectSink>,
}

impl ReconstructionSink for Tee<'_> {
    fn window(&mut self, sample_index: u64, len: usize, values: Option<&[f32]>, status: SampleStatus) -> Result<()> {
        self.a.window(sample_index, len, values, status)?;
        if let Some(b) = self.b.as_mut() {
            b.window(sample_index, len, values, status)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.a.flush()
    }
}

/// Samples shown by `--plot`.
const PLOT_SAMPLES: usize = 2048;

/// The first [`PLOT_SAMPLES`] reconstructed samples per channel; missing samples are gaps in
/// the lines over a shaded band.
fn plot_reconstruction(out: &Path, columns: &[String], rec: &CollectSink) -> Result<()> {
    crate::commands::draw_with_text_fallback(|text| draw_reconstruction(out, columns, rec, text))
}

fn draw_reconstruction(out: &Path, columns: &[String], rec: &CollectSink, text: bool) -> Result<()> {
    use plotters::prelude::*;
    let plot_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    let channels = rec.channels.max(1);
    let len = rec.status.len().min(PLOT_SAMPLES);
    let first = rec.first_sample.unwrap_or(0) as usize;
    let finite = rec.values[..len * channels].iter().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi { (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)) } else { (-1.0, 1.0) };
    let root = BitMapBackend::new(out, (1400, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let mut cb = ChartBuilder::on(&root);
    cb.margin(12).x_label_area_size(if text { 30 } else { 0 }).y_label_area_size(if text { 60 } else { 0 });
    if text {
        cb.caption("decoded stream (shaded: missing frames)", ("sans-serif", 22));
    }
    let mut chart = cb.build_cartesian_2d(first..first + len.max(1), lo..hi).map_err(|e| plot_err(&e))?;
    if text {
        chart.configure_mesh().x_desc("sample index").draw().map_err(|e| plot_err(&e))?;
    }
    let missing = (0..len).filter(|&t| rec.status[t] == SampleStatus::Missing);
    chart
        .draw_series(
            missing.map(|t| Rectangle::new([(first + t, lo), (first + t + 1, hi)], RGBColor(255, 200, 200).filled())),
        )
        .map_err(|e| plot_err(&e))?;
    let palette = [RGBColor(0, 90, 200), RGBColor(0, 140, 60), RGBColor(150, 0, 150), RGBColor(30, 30, 30)];
    for c in 0..channels {
        let color = palette[c % palette.len()];
        // One line per run of present samples.
        let mut run: Vec<(usize, f32)> = Vec::new();
        for t in 0..=len {
            let v = if t < len { rec.values[t * channels + c] } else { f32::NAN };
            if v.is_finite() {
                run.push((first + t, v));
            } else if !run.is_empty() {
                let series =
                    chart.draw_series(LineSeries::new(std::mem::take(&mut run), color)).map_err(|e| plot_err(&e))?;
                if text && t == len {
                    let label = columns.get(c).cloned().unwrap_or_default();
                    series.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                }
            }
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(&e))?;
    }
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}

/// What the device path rebuilds of `windows` (`[C][T]`, original units): each window
/// converted to counts, encoded by the int8 encoder into frames, then decoded from those bytes.
pub fn device_reconstruction(
    blob: &[u8],
    normalization: &Normalization,
    decoder: &dyn LatentDecoder,
    windows: &crate::data::Windows,
) -> Result<crate::data::Windows> {
    let encoder = QuantizedEncoder::from_blob(blob).map_err(|e| anyhow::anyhow!("{e}"))?;
    let channels = encoder.channels();
    let cpu = encoder.spec().counts_per_unit;
    let counts: Vec<i16> = windows
        .iter()
        .flat_map(|w| crate::data::channels_first_to_interleaved(w, channels))
        .map(|v| funnel_shared::stream::to_counts(v, cpu))
        .collect();
    let encoded = crate::encode::encode_counts(blob, &counts)?;
    let mut sink = CollectSink { channels, ..Default::default() };
    let mut stream = StreamDecoder::new(blob, normalization, decoder, "device simulation")?;
    stream.feed(&encoded.bytes, &mut sink)?;
    let report = stream.finish(&mut sink)?;
    ensure!(
        report.frames as usize == windows.len() && report.missing_samples == 0,
        "device simulation lost frames: {}",
        report.summary()
    );
    let data = sink
        .values
        .chunks_exact(windows.dim)
        .flat_map(|w| crate::data::interleaved_to_channels_first(w, channels))
        .collect();
    Ok(crate::data::Windows::new(windows.dim, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Windows;
    use crate::float_model::{Activation, FloatEncoder, FloatLayer};
    use crate::quantize::{quantize, QuantizationInput};

    const WINDOW: usize = 16;
    const LATENT: usize = 4;

    /// Output sample `t` of a window is latent `t % K`: deterministic and easy to check.
    struct RepeatLatents;

    impl LatentDecoder for RepeatLatents {
        fn decode(&self, latents: &[f32], batch: usize) -> Result<Vec<f32>> {
            Ok((0..batch).flat_map(|b| (0..WINDOW).map(move |t| latents[b * LATENT + t % LATENT])).collect())
        }
    }

    fn model() -> (Vec<u8>, Normalization) {
        let encoder = FloatEncoder {
            channels: 1,
            window: WINDOW,
            layers: vec![FloatLayer::Dense {
                in_features: WINDOW,
                out_features: LATENT,
                weight: (0..WINDOW * LATENT).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect(),
                bias: vec![0.1, -0.2, 0.0, 0.3],
                activation: Activation::Identity,
            }],
        };
        let normalization = Normalization { mean: vec![0.5], std: vec![2.0] };
        let calibration = Windows::new(WINDOW, (0..64 * WINDOW).map(|i| ((i as f32) * 0.37).sin() * 2.0).collect());
        let blob = quantize(&QuantizationInput {
            encoder: &encoder,
            normalization: &normalization,
            counts_per_unit: 100.0,
            calibration: &calibration,
        })
        .unwrap();
        (blob.bytes, normalization)
    }

    /// Encoded frames of `n` windows, one `Vec` per frame.
    fn frames(blob: &[u8], n: usize) -> Vec<Vec<u8>> {
        let counts: Vec<i16> = (0..n * WINDOW).map(|i| (((i as f32) * 0.21).sin() * 300.0) as i16).collect();
        let bytes = crate::encode::encode_counts(blob, &counts).unwrap().bytes;
        bytes.split_inclusive(|&b| b == 0).map(<[u8]>::to_vec).collect()
    }

    fn decode(blob: &[u8], norm: &Normalization, stream: &[u8], chunk: usize) -> (CollectSink, DecodeReport) {
        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut d = StreamDecoder::new(blob, norm, &RepeatLatents, "test").unwrap().with_batch(3);
        for c in stream.chunks(chunk) {
            d.feed(c, &mut sink).unwrap();
        }
        let report = d.finish(&mut sink).unwrap();
        (sink, report)
    }

    #[test]
    fn damage_is_reported_exactly_and_everything_else_recovered() {
        let (blob, norm) = model();
        let frames = frames(&blob, 20);
        let (clean, clean_report) = decode(&blob, &norm, &frames.concat(), 1000);
        assert_eq!((clean_report.frames, clean_report.missing_samples, clean_report.corrupt_frames()), (20, 0, 0));
        assert_eq!(clean.status.len(), 20 * WINDOW);

        let mut damaged = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let mut f = f.clone();
            match i {
                3 => {
                    f.drain(4..7); // deleted bytes
                }
                5 => damaged.extend_from_slice(&f.clone()), // duplicated frame
                8 => f[6] ^= 0x40,                          // flipped bits
                19 => f.truncate(f.len() - 5),              // truncated at the end of the stream
                _ => {}
            }
            damaged.extend(f);
        }
        for chunk in [1, 7, 4096] {
            let (got, report) = decode(&blob, &norm, &damaged, chunk);
            assert_eq!(report.frames, 17, "chunk {chunk}"); // 20 sent, 3 damaged; the duplicate is skipped
            assert_eq!(report.frames_lost, 2);
            assert_eq!(
                report.gaps,
                vec![
                    Gap { first_sample: 3 * WINDOW as u64, samples: WINDOW as u64, filled: true },
                    Gap { first_sample: 8 * WINDOW as u64, samples: WINDOW as u64, filled: true }
                ]
            );
            assert_eq!(report.stale_frames_skipped, 1);
            assert_eq!(report.corrupt_frames(), 3, "{:?}", report.corrupt);
            assert_eq!(report.corrupt.get("truncated"), Some(&1));
            // Windows 0..19 are present or flagged; window 19 was cut off at the end.
            assert_eq!(got.status.len(), 19 * WINDOW);
            for w in 0..19 {
                let range = w * WINDOW..(w + 1) * WINDOW;
                if w == 3 || w == 8 {
                    assert!(got.status[range.clone()].iter().all(|&s| s == SampleStatus::Missing));
                    assert!(got.values[range].iter().all(|v| v.is_nan()), "missing samples carry no value");
                } else {
                    assert_eq!(got.values[range.clone()], clean.values[range], "window {w}");
                }
            }
        }
    }

    #[test]
    fn frames_of_another_model_are_refused_naming_both_ids() {
        let (blob, norm) = model();
        let (mut other_blob, _) = model();
        // Same structure, different weights → different id.
        let n = other_blob.len();
        other_blob[n - 40] ^= 1;
        let crc = funnel_shared::wire::FRAME_CRC.checksum(&other_blob[..n - 4]);
        other_blob[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let payload_len = n - funnel_shared::blob::HEADER_LEN - 4;
        let id = crate::quantize::model_id_of(&other_blob[funnel_shared::blob::HEADER_LEN..][..payload_len]);
        other_blob[6..10].copy_from_slice(&id.0);
        let crc = funnel_shared::wire::FRAME_CRC.checksum(&other_blob[..n - 4]);
        other_blob[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let foreign = frames(&other_blob, 2).concat();

        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut d = StreamDecoder::new(&blob, &norm, &RepeatLatents, "models/x").unwrap();
        let err = d.feed(&foreign, &mut sink).unwrap_err().to_string();
        let ours = QuantizedEncoder::from_blob(&blob).unwrap().model_id().to_string();
        assert!(err.contains(&id.to_string()) && err.contains(&ours) && err.contains("models/x"), "{err}");
    }

    #[test]
    fn a_restarted_device_is_reported_and_its_frames_kept() {
        let (blob, norm) = model();
        let run = frames(&blob, 3).concat();
        let (got, report) = decode(&blob, &norm, &[run.clone(), run].concat(), 64);
        assert_eq!((report.frames, report.restarts, report.stale_frames_skipped), (6, 1, 0));
        assert_eq!(got.status.len(), 6 * WINDOW);
    }

    #[test]
    fn csv_rows_have_index_values_and_status() {
        let mut out = Vec::new();
        {
            let mut sink = CsvSink::new(&mut out, &["a".to_string(), "b".to_string()]).unwrap();
            sink.window(10, 2, Some(&[1.0, 2.0, 3.0, 4.0]), SampleStatus::Ok).unwrap();
            sink.window(12, 1, None, SampleStatus::Missing).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "sample_index,a,b,status\n10,1,2,ok\n11,3,4,ok\n12,,,missing\n");
    }
}
