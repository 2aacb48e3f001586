//! The device simulator: a recording replayed as device counts through the `shared` crate's
//! int8 encoder and frame format — the same code the firmware runs, so the bytes are the bytes
//! the device would send.

use funnel_artifacts::Blob;
use funnel_shared::encoder::EncodeError;
use funnel_shared::stream::StreamEncoder;
use funnel_shared::wire::{encode_frame, EncodeFrameError, FLAG_INPUT_SATURATED, MAX_ENCODED_LEN};

/// Why the simulator stopped (only a blob and counts that disagree can cause it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimulateError {
    #[error("the device encoder refused a window: {0}")]
    Encode(#[from] EncodeError),
    #[error("a frame did not fit the frame buffer: {0}")]
    Frame(#[from] EncodeFrameError),
}

/// Frames for a stream of counts, and what happened while encoding it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedStream {
    /// The exact byte stream on the link (COBS frames, each ending in 0x00).
    pub bytes: Vec<u8>,
    pub frames: usize,
    /// Windows in which some sample was outside the calibrated input range (clamped).
    pub saturated_windows: usize,
    /// Samples (per channel) after the last full window, not sent.
    pub dropped_samples: usize,
}

/// Encodes `counts` (`[T][C]`) window by window as the firmware does, on stream 0.
pub fn simulate(blob: &Blob, counts: &[i16]) -> Result<EncodedStream, SimulateError> {
    let encoder = blob.encoder();
    let step = encoder.window() * encoder.channels();
    let mut scratch = vec![0i8; encoder.scratch_len()];
    let mut stream = StreamEncoder::new(encoder, 0);
    let mut out = EncodedStream::default();
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut windows = counts.chunks_exact(step);
    for window in &mut windows {
        let frame = stream.encode_window(window, &mut scratch)?;
        out.saturated_windows += usize::from(frame.flags & FLAG_INPUT_SATURATED != 0);
        out.bytes.extend_from_slice(encode_frame(&frame, &mut buf)?);
        out.frames += 1;
    }
    out.dropped_samples = windows.remainder().len() / blob.channels();
    Ok(out)
}
