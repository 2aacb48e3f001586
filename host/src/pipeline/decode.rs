//! `funnel decode`: bytes from a file, stdin or a serial port, through [`StreamDecoder`], into a
//! CSV or a Parquet file (and optionally a plot); and [`DecodingModel`], a model loaded to decode
//! and encode in memory.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use funnel_artifacts::card::SeamFilter;
use funnel_artifacts::data::Normalization;
use funnel_artifacts::{Blob, Graph, ModelCard, ModelDir};

use super::load_runtime;
use crate::codec::{
    simulate, CollectSink, CsvSink, DecodeReport, EncodedStream, ParquetMetadata, ParquetSink, ReconstructionSink,
    SampleStatus, StreamDecoder, Tee, DEFAULT_BATCH,
};
use crate::runtime::{Backend, Runtime};
use funnel_shared::stream::StreamConfig;

/// Where frame bytes come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    File(PathBuf),
    Stdin,
    /// A live device: frames are decoded as they arrive, until `seconds` (or forever).
    Serial {
        port: String,
        baud: u32,
        seconds: Option<f64>,
    },
}

impl Source {
    /// Its bytes; a serial port's reads time out every 200 ms (a live decode flushes then).
    pub(super) fn open(&self) -> Result<Box<dyn Read>> {
        Ok(match self {
            Source::Stdin => Box::new(std::io::stdin().lock()),
            Source::File(path) => {
                Box::new(std::fs::File::open(path).with_context(|| format!("cannot open --input {}", path.display()))?)
            }
            Source::Serial { port, baud, .. } => Box::new(
                serialport::new(port, *baud)
                    .timeout(Duration::from_millis(200))
                    .open()
                    .with_context(|| format!("cannot open serial port {port} at {baud} baud"))?,
            ),
        })
    }
}

/// `funnel decode`.
#[derive(Clone, Debug)]
pub struct DecodeRequest {
    pub model: PathBuf,
    pub source: Source,
    /// Output CSV: `sample_index,<columns>,status` (and `max_error` for a bounded model).
    pub out: PathBuf,
    /// What runs `decoder.onnx` (or, with candle, the checkpoint's decoder).
    pub backend: Backend,
    /// Also plot the first samples of the reconstruction.
    pub plot: Option<PathBuf>,
    /// The stream of the link to decode; `None`: the first heard, and from a file every other
    /// stream too (see [`decode_stream`]).
    pub stream: Option<u8>,
}

/// One stream's output of [`decode_stream`].
#[derive(Debug)]
pub struct StreamOutput {
    /// The stream decoded (`None`: no stream header was received).
    pub stream_id: Option<u8>,
    pub out: PathBuf,
    /// What happened; an error for another stream of the file that could not be decoded (one of
    /// another model), which does not stop the others.
    pub report: Result<DecodeReport>,
}

/// Set by Ctrl-C (SIGINT) once a decode has started: reading stops, everything received is
/// decoded and written, and the output ends with an `interrupted` row.
pub(super) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub(super) fn watch_for_interrupt() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Without a handler (another one is installed) Ctrl-C keeps its default effect.
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    });
}

/// Decodes a frame stream of a model directory's model into a CSV: the chosen stream, or the
/// first one heard into `out`; from a file, without a chosen stream, every other stream on the
/// link into `<out stem>.stream<N>.<ext>` beside it (each read from the file again). The first
/// output's failure is this function's error; the others' are in their [`StreamOutput`].
pub fn decode_stream(request: &DecodeRequest) -> Result<Vec<StreamOutput>> {
    let model = DecodingModel::load(&request.model, request.backend)?;
    if let Source::File(input) = &request.source {
        let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
        anyhow::ensure!(
            !same(input, &request.out),
            "--out {} is the --input file: decoding into it would destroy the capture",
            request.out.display()
        );
    }
    let mut reader = request.source.open()?;
    let (live, seconds) = match request.source {
        Source::Serial { seconds, .. } => (true, seconds),
        _ => (false, None),
    };
    let decoding = Decoding { live, seconds, ..model.decoding() };
    watch_for_interrupt();
    let first = decode_to_file(&mut reader, &decoding, request.stream, &request.out, request.plot.as_deref())?;
    let others: Vec<u8> = first.other_streams.keys().copied().collect();
    let interrupted = first.interrupted;
    let mut outputs = vec![StreamOutput { stream_id: first.stream_id, out: request.out.clone(), report: Ok(first) }];
    let (Source::File(input), None, false) = (&request.source, request.stream, interrupted) else { return Ok(outputs) };
    for id in others {
        let out = stream_output(&request.out, id);
        let report = std::fs::File::open(input)
            .with_context(|| format!("cannot open --input {}", input.display()))
            .and_then(|mut file| decode_to_file(&mut file, &decoding, Some(id), &out, None));
        outputs.push(StreamOutput { stream_id: Some(id), out, report });
    }
    Ok(outputs)
}

/// Where stream `id` of a link decoded into `out` goes: `recon.csv` → `recon.stream3.csv`.
fn stream_output(out: &Path, id: u8) -> PathBuf {
    let stem = out.file_stem().map_or("out".into(), |s| s.to_string_lossy());
    let name = match out.extension() {
        Some(ext) => format!("{stem}.stream{id}.{}", ext.to_string_lossy()),
        None => format!("{stem}.stream{id}"),
    };
    out.with_file_name(name)
}

/// A model loaded for decoding (its card, blob and decoder), and for encoding as its device
/// does: what `funnel decode` and the Python package work with.
pub struct DecodingModel {
    name: String,
    card: ModelCard,
    blob: Blob,
    decoder: Box<dyn Runtime>,
}

impl DecodingModel {
    /// The model in directory `model` (card and blob checked against each other), its decoder
    /// run by `backend`.
    pub fn load(model: &Path, backend: Backend) -> Result<Self> {
        let dir = ModelDir::new(model);
        let card = dir.load_card()?;
        let blob = dir.load_blob_of(&card)?;
        let decoder = load_runtime(&dir, &card, Graph::Decoder, backend)?;
        Ok(DecodingModel { name: model.display().to_string(), card, blob, decoder })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn blob(&self) -> &Blob {
        &self.blob
    }

    /// Decodes `bytes` (a link's frames, as `funnel decode --input` reads them; its first
    /// stream) in memory: every sample from the first sent, `NaN` where missing.
    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<(CollectSink, DecodeReport)> {
        let mut decoder = self.decoding().stream_decoder()?;
        let mut sink = CollectSink { channels: self.card.columns.len(), ..Default::default() };
        decoder.feed(bytes, &mut sink)?;
        let report = decoder.finish(&mut sink)?;
        Ok((sink, report))
    }

    /// Decodes `bytes` as [`DecodingModel::decode_bytes`] does into the Parquet file
    /// `funnel decode --out F.parquet` writes of them, in memory.
    pub fn decode_to_parquet(&self, bytes: &[u8]) -> Result<(Vec<u8>, DecodeReport)> {
        let decoding = self.decoding();
        let mut decoder = decoding.stream_decoder()?;
        let mut sink = decoding.parquet_sink(Vec::new())?;
        decoder.feed(bytes, &mut sink)?;
        let report = decoder.finish(&mut sink)?;
        Ok((sink.finish()?, report))
    }

    /// The bytes the model's device sends for `values` (`[T][C]`, in the recording's units), as
    /// `funnel encode` writes them: the card's windows per frame, session 0, the end of the
    /// values in a last frame.
    pub fn encode_values(&self, values: &[f64]) -> Result<EncodedStream> {
        let channels = self.blob.channels();
        anyhow::ensure!(
            values.len().is_multiple_of(channels),
            "{} values are not whole time steps of the model's {channels} channels",
            values.len()
        );
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            anyhow::bail!(
                "value {i} (time step {}, channel {}) is {}: a device sends numbers",
                i / channels,
                i % channels,
                values[i]
            );
        }
        let counts: Vec<i16> =
            values.iter().map(|&v| funnel_shared::stream::to_counts(v as f32, self.blob.counts_per_unit())).collect();
        let config = StreamConfig { windows_per_frame: self.card.stream_windows_per_frame(), ..StreamConfig::DEFAULT };
        Ok(simulate(&self.blob, &counts, config)?)
    }

    /// Its decoding set-up for a file (not live, read to its end).
    pub(super) fn decoding(&self) -> Decoding<'_> {
        Decoding {
            blob: &self.blob,
            normalization: &self.card.normalization,
            decoder: self.decoder.as_ref(),
            model_name: &self.name,
            columns: &self.card.columns,
            seam_filter: self.card.seam_filter,
            live: false,
            seconds: None,
        }
    }
}

/// One model's decoding set-up.
pub(super) struct Decoding<'a> {
    pub blob: &'a Blob,
    pub normalization: &'a Normalization,
    pub decoder: &'a dyn Runtime,
    pub model_name: &'a str,
    pub columns: &'a [String],
    /// The model's seam filter (its card's).
    pub seam_filter: Option<SeamFilter>,
    /// Decode every frame as it arrives (batch 1) and flush on read time-outs.
    pub live: bool,
    /// Stop reading after this long.
    pub seconds: Option<f64>,
}

impl<'a> Decoding<'a> {
    /// Rows of this model into `file`, as `format`: its columns, and for a bounded model the
    /// bound each row keeps.
    pub fn rows_sink(&self, file: File, format: OutputFormat) -> Result<RowsSink> {
        let out = BufWriter::new(file);
        Ok(match format {
            OutputFormat::Csv => RowsSink::Csv(CsvSink::new(out, self.columns, self.bound())?),
            OutputFormat::Parquet => RowsSink::Parquet(Box::new(self.parquet_sink(out)?)),
        })
    }

    /// The bound every value of a bounded model keeps, in the recording's units.
    fn bound(&self) -> Option<f32> {
        self.blob.residual().map(|r| f32::from(r.max_error) / self.blob.counts_per_unit())
    }

    /// Rows of this model as Parquet into `out`, the model named in the file's metadata.
    pub fn parquet_sink<W: Write + Send>(&self, out: W) -> Result<ParquetSink<W>> {
        let bound = self.bound();
        let mut entries = vec![
            ("funnel.model_id".to_string(), self.blob.model_id().to_string()),
            ("funnel.model".to_string(), self.model_name.to_string()),
            ("funnel.columns".to_string(), serde_json::to_string(self.columns)?),
            ("funnel.counts_per_unit".to_string(), self.blob.counts_per_unit().to_string()),
        ];
        if let Some(bound) = bound {
            entries.push(("funnel.max_error".to_string(), bound.to_string()));
        }
        Ok(ParquetSink::new(out, self.columns, bound, &ParquetMetadata { entries })?)
    }

    /// A decoder of one stream of a link (a window at a time when live).
    pub fn stream_decoder(&self) -> Result<StreamDecoder<'a, dyn Runtime + 'a>> {
        Ok(StreamDecoder::new(self.blob, self.normalization, self.decoder, self.model_name)?
            .with_batch(if self.live { 1 } else { DEFAULT_BATCH })
            .with_seam_filter(self.seam_filter))
    }
}

/// The file format of a decode's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    /// Written a row group at a time, readable once the decode has ended.
    Parquet,
}

impl OutputFormat {
    /// The file name extension of this format.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Csv => "csv",
            OutputFormat::Parquet => "parquet",
        }
    }

    /// Parquet for a name ending in `.parquet`, else CSV.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("parquet") => OutputFormat::Parquet,
            _ => OutputFormat::Csv,
        }
    }
}

/// Where a decode's rows go.
pub(super) enum RowsSink {
    Csv(CsvSink<BufWriter<File>>),
    Parquet(Box<ParquetSink<BufWriter<File>>>),
}

impl RowsSink {
    /// Writes what is held (a Parquet file's last row group and footer) and flushes.
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            RowsSink::Csv(mut csv) => csv.flush(),
            RowsSink::Parquet(parquet) => parquet.finish()?.flush(),
        }
    }
}

impl ReconstructionSink for RowsSink {
    fn window(
        &mut self,
        sample_index: u64,
        len: usize,
        values: Option<&[f32]>,
        status: SampleStatus,
    ) -> std::io::Result<()> {
        match self {
            RowsSink::Csv(csv) => csv.window(sample_index, len, values, status),
            RowsSink::Parquet(parquet) => parquet.window(sample_index, len, values, status),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RowsSink::Csv(csv) => csv.flush(),
            // Rows go out a row group at a time.
            RowsSink::Parquet(_) => Ok(()),
        }
    }
}

/// Reads `reader` to its end (or time-out), writing rows to `out` and, with `plot`, a picture.
///
/// A file or stdin is decoded into a temporary file beside `out` that replaces it only once
/// decoding has succeeded, so a failed decode never destroys an earlier reconstruction; a live
/// port writes `out` as rows arrive (that output is the point of watching a device).
pub(super) fn decode_to_file(
    reader: &mut dyn Read,
    d: &Decoding<'_>,
    stream: Option<u8>,
    out: &Path,
    plot: Option<&Path>,
) -> Result<DecodeReport> {
    if let (Some(png), false) = (plot, cfg!(feature = "plot")) {
        anyhow::bail!("cannot write {}: this funnel was built without plotting (feature `plot`)", png.display());
    }
    let target = match (d.live, out.file_name()) {
        // One temporary file per process: two decodes into the same --out each write whole
        // files, and the last to finish wins, instead of interleaving lines.
        (false, Some(name)) => {
            out.with_file_name(format!(".{}.{}.partial", name.to_string_lossy(), std::process::id()))
        }
        _ => out.to_path_buf(),
    };
    let decoded = decode_into(reader, d, stream, &target, OutputFormat::of(out), plot);
    match (&decoded, target == out) {
        (Ok(_), false) => std::fs::rename(&target, out)
            .with_context(|| format!("cannot write {}", out.display()))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&target);
            })?,
        (Err(_), false) => {
            let _ = std::fs::remove_file(&target);
        }
        (_, true) => {}
    }
    decoded
}

/// [`decode_to_file`] into `target`.
fn decode_into(
    reader: &mut dyn Read,
    d: &Decoding<'_>,
    stream: Option<u8>,
    target: &Path,
    format: OutputFormat,
    plot: Option<&Path>,
) -> Result<DecodeReport> {
    let file = File::create(target).with_context(|| format!("cannot create {}", target.display()))?;
    let mut rows = d.rows_sink(file, format)?;
    let mut collect = CollectSink { channels: d.columns.len(), limit: Some(PLOT_SAMPLES), ..Default::default() };
    let report = {
        let mut sink = Tee { a: &mut rows, b: plot.map(|_| &mut collect as &mut dyn ReconstructionSink) };
        let mut decoder = d.stream_decoder()?;
        if let Some(id) = stream {
            decoder = decoder.with_stream(id);
        }
        let started = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut interrupted = false;
        loop {
            if d.seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
                break;
            }
            if INTERRUPTED.swap(false, Ordering::SeqCst) {
                interrupted = true;
                break;
            }
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => decoder.feed(&buf[..n], &mut sink)?,
                Err(e) if d.live && e.kind() == std::io::ErrorKind::TimedOut => decoder.flush(&mut sink)?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading the frame stream"),
            }
        }
        let mut report = decoder.finish(&mut sink)?;
        if interrupted {
            report.interrupted = true;
            sink.window(report.end_sample.unwrap_or(0), 1, None, SampleStatus::Interrupted)?;
            sink.flush()?;
        }
        report
    };
    rows.finish().with_context(|| format!("cannot write {}", target.display()))?;
    if let Some(png) = plot {
        plot_stream(png, d.columns, &collect)?;
    }
    Ok(report)
}

#[cfg(feature = "plot")]
use crate::plot::PLOT_SAMPLES;
/// Without plotting nothing is collected (and asking for a plot fails up front).
#[cfg(not(feature = "plot"))]
const PLOT_SAMPLES: usize = 0;

#[cfg(feature = "plot")]
fn plot_stream(png: &Path, columns: &[String], collected: &CollectSink) -> Result<()> {
    crate::plot::plot_stream(png, columns, collected)
}

#[cfg(not(feature = "plot"))]
fn plot_stream(_: &Path, _: &[String], _: &CollectSink) -> Result<()> {
    unreachable!("refused before decoding")
}
