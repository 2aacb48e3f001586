//! The codec stage: the device's encoder simulated bit-exactly ([`simulate`]) and the receiving
//! side ([`StreamDecoder`]) that turns bytes back into samples.

mod columnar;
mod decoder;
mod seams;
mod simulate;
mod sink;

use anyhow::{ensure, Result};
use funnel_artifacts::card::SeamFilter;
use funnel_artifacts::data::Normalization;
use funnel_artifacts::{Blob, Windows};
use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::stream_len;

pub use columnar::{ParquetMetadata, ParquetSink, ROW_GROUP_ROWS};
pub use decoder::{DecodeError, DecodeReport, Gap, StreamDecoder, DEFAULT_BATCH, MAX_FILLED_GAP};
pub use seams::smooth_seams;
pub use simulate::{simulate, EncodedStream, SimulateError};
pub use sink::{CollectSink, CsvSink, ReconstructionSink, SampleStatus, Tee};

use crate::runtime::Runtime;

/// What the device path does to some windows.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundTrip {
    /// The rebuilt windows, `[C][T]`, original units.
    pub reconstruction: Windows,
    /// Bytes the device sent for them (stream headers and data frames).
    pub bytes: usize,
    /// Windows with a sample the device's input saturated on (clipped; `funnel encode`
    /// reports them).
    pub saturated_windows: usize,
}

/// `windows` (`[C][T]`, original units) as the device's counts, `[T][C]`, one after another.
fn device_counts(blob: &Blob, windows: &Windows) -> Vec<i16> {
    windows.iter().flat_map(|w| blob.window_counts(w)).collect()
}

/// Bytes of stream header a long session (from sample 0, a header every `header_interval`
/// frames) sends per data frame: over its first 2^20 frames, whose headers are 22 to 24 bytes
/// (the frame number a varint).
pub fn long_stream_header_bytes_per_frame(header_interval: u8) -> f64 {
    const FRAMES: u64 = 1 << 20;
    stream_len(FRAMES, 0, header_interval, 0) as f64 / FRAMES as f64
}

/// How many of `windows` windows the device sends in frames of `windows_per_frame`: all of them
/// when `blob` entropy codes (its stream ends with a last frame), else those that fill frames.
pub fn sent_windows(blob: &Blob, windows: usize, windows_per_frame: u8) -> usize {
    let per_frame = usize::from(windows_per_frame.max(1));
    match blob.code_tables() {
        Some(_) => windows,
        None => windows / per_frame * per_frame,
    }
}

/// Bits per sample (per channel) the device sends for `windows` (`[C][T]`, original units)
/// in frames of `windows_per_frame` windows, framing included; the windows it sends
/// ([`sent_windows`]).
pub fn device_rate(blob: &Blob, windows: &Windows, windows_per_frame: u8) -> Result<f64> {
    let whole = sent_windows(blob, windows.len(), windows_per_frame);
    ensure!(whole > 0, "no whole frame of {windows_per_frame} windows to measure the rate on");
    let config = StreamConfig { windows_per_frame, ..StreamConfig::DEFAULT };
    let encoded = simulate(blob, &device_counts(blob, &windows.slice(0..whole)), config)?;
    Ok(8.0 * encoded.bytes.len() as f64 / (whole * blob.window()) as f64)
}

/// What the device path rebuilds of `windows` (`[C][T]`, original units) sent with
/// [`StreamConfig::DEFAULT`]: each window converted to counts, encoded by the int8 encoder into
/// frames, then decoded from those bytes.
pub fn device_round_trip<R: Runtime + ?Sized>(
    blob: &Blob,
    normalization: &Normalization,
    decoder: &R,
    windows: &Windows,
) -> Result<RoundTrip> {
    device_round_trip_with(blob, normalization, decoder, windows, StreamConfig::DEFAULT, None)
}

/// [`device_round_trip`] with the windows sent as `config` says (`windows` must be sent whole,
/// [`sent_windows`]) and received through `seams` (the model's seam filter).
pub fn device_round_trip_with<R: Runtime + ?Sized>(
    blob: &Blob,
    normalization: &Normalization,
    decoder: &R,
    windows: &Windows,
    config: StreamConfig,
    seams: Option<SeamFilter>,
) -> Result<RoundTrip> {
    let channels = blob.channels();
    ensure!(
        sent_windows(blob, windows.len(), config.windows_per_frame) == windows.len(),
        "{} windows do not fill frames of {} windows",
        windows.len(),
        config.windows_per_frame
    );
    let encoded = simulate(blob, &device_counts(blob, windows), config)?;
    let mut sink = CollectSink { channels, ..Default::default() };
    let mut stream = StreamDecoder::new(blob, normalization, decoder, "device simulation")?.with_seam_filter(seams);
    stream.feed(&encoded.bytes, &mut sink)?;
    let report = stream.finish(&mut sink)?;
    ensure!(
        report.windows as usize == windows.len() && report.missing_samples == 0,
        "device simulation lost frames: {}",
        report.summary()
    );
    Ok(RoundTrip {
        reconstruction: sink.into_windows(windows.dim),
        bytes: encoded.bytes.len(),
        saturated_windows: encoded.saturated_windows,
    })
}
