//! The codec stage: the device's encoder simulated bit-exactly ([`simulate`]) and the receiving
//! side ([`StreamDecoder`]) that turns bytes back into samples.

mod decoder;
mod simulate;
mod sink;

use anyhow::{ensure, Result};
use funnel_artifacts::data::{channels_first_to_interleaved, interleaved_to_channels_first, Normalization};
use funnel_artifacts::{Blob, Windows};
use funnel_shared::stream::{to_counts, StreamConfig};

pub use decoder::{DecodeError, DecodeReport, Gap, StreamDecoder, DEFAULT_BATCH, MAX_FILLED_GAP};
pub use simulate::{simulate, EncodedStream, SimulateError};
pub use sink::{CollectSink, CsvSink, ReconstructionSink, SampleStatus, Tee};

use crate::runtime::Runtime;

/// What the device path does to some windows (sent with [`StreamConfig::DEFAULT`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RoundTrip {
    /// The rebuilt windows, `[C][T]`, original units.
    pub reconstruction: Windows,
    /// Bytes the device sent for them (stream headers and data frames).
    pub bytes: usize,
}

/// What the device path rebuilds of `windows` (`[C][T]`, original units): each window
/// converted to counts, encoded by the int8 encoder into frames, then decoded from those bytes.
pub fn device_round_trip<R: Runtime + ?Sized>(
    blob: &Blob,
    normalization: &Normalization,
    decoder: &R,
    windows: &Windows,
) -> Result<RoundTrip> {
    let channels = blob.channels();
    let counts: Vec<i16> = windows
        .iter()
        .flat_map(|w| channels_first_to_interleaved(w, channels))
        .map(|v| to_counts(v, blob.counts_per_unit()))
        .collect();
    let encoded = simulate(blob, &counts, StreamConfig::DEFAULT)?;
    let mut sink = CollectSink { channels, ..Default::default() };
    let mut stream = StreamDecoder::new(blob, normalization, decoder, "device simulation")?;
    stream.feed(&encoded.bytes, &mut sink)?;
    let report = stream.finish(&mut sink)?;
    ensure!(
        report.windows as usize == windows.len() && report.missing_samples == 0,
        "device simulation lost frames: {}",
        report.summary()
    );
    let data = sink.values.chunks_exact(windows.dim).flat_map(|w| interleaved_to_channels_first(w, channels)).collect();
    Ok(RoundTrip { reconstruction: Windows::new(windows.dim, data), bytes: encoded.bytes.len() })
}
