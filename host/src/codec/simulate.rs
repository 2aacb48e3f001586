//! The device simulator: a recording replayed as device counts through the `shared` crate's
//! int8 encoder and frame format — the same code the firmware runs, so the bytes are the bytes
//! the device would send.

use funnel_artifacts::Blob;
use funnel_shared::encoder::EncodeError;
use funnel_shared::stream::{StreamConfig, StreamConfigError, StreamEncoder, MAX_WINDOW_OUTPUT};

/// Why the simulator stopped (only a blob, counts and configuration that disagree can cause it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimulateError {
    #[error("the device encoder refused a window: {0}")]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Stream(#[from] StreamConfigError),
}

/// The bytes a device sends for a stream of counts, and what happened while encoding it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedStream {
    /// The exact byte stream on the link (stream headers and data frames).
    pub bytes: Vec<u8>,
    /// Windows encoded, and the data frames that carried them.
    pub windows: usize,
    pub frames: usize,
    /// Windows in which some sample was outside the calibrated input range (clamped).
    pub saturated_windows: usize,
    /// Samples (per channel) sent: the recording's, less `dropped_samples`.
    pub samples: usize,
    /// Samples (per channel) not sent: a session that is not entropy coded has no last frame,
    /// so the samples after its last full window, and the windows of a frame that did not fill,
    /// stay behind.
    pub dropped_samples: usize,
}

/// Encodes `counts` (`[T][C]`) window by window as the firmware does, and ends the stream as
/// the firmware does when its source ends (the windows and samples left over in a last frame).
pub fn simulate(blob: &Blob, counts: &[i16], config: StreamConfig) -> Result<EncodedStream, SimulateError> {
    let encoder = blob.encoder();
    let step = encoder.window() * encoder.channels();
    let mut stream = StreamEncoder::<true>::new(encoder, config)?;
    let mut scratch = vec![0i16; stream.scratch_len()];
    let mut out = EncodedStream::default();
    let mut buf = [0u8; MAX_WINDOW_OUTPUT];
    let mut windows = counts.chunks_exact(step);
    for window in &mut windows {
        let encoded = stream.encode_window(window, &mut scratch, &mut buf)?;
        out.saturated_windows += usize::from(encoded.saturated);
        out.bytes.extend_from_slice(&buf[..encoded.len]);
        out.windows += 1;
        out.frames += usize::from(encoded.len > 0);
    }
    let rest = windows.remainder();
    let mut partial = vec![0i16; step];
    partial[..rest.len()].copy_from_slice(rest);
    let samples = rest.len() / blob.channels();
    let end = stream.finish(&mut partial, samples, &mut scratch, &mut buf)?;
    out.bytes.extend_from_slice(&buf[..end.len]);
    out.frames += usize::from(end.len > 0);
    if end.len == 0 {
        out.dropped_samples = samples + stream.pending_windows() * blob.window();
    } else if samples > 0 {
        out.windows += 1;
        out.saturated_windows += usize::from(end.saturated);
    }
    out.samples = (counts.len() / blob.channels()).saturating_sub(out.dropped_samples);
    Ok(out)
}
