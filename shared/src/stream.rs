//! From a stream of samples to frames: the part of the device loop that decides what each
//! frame says (sequence numbers, sample indices, flags). The firmware and `funnel encode` both
//! go through [`StreamEncoder`], which is why their byte streams are identical.

use crate::encoder::{EncodeError, QuantizedEncoder};
use crate::wire::{Frame, FLAG_INPUT_SATURATED, FLAG_STREAM_START, WIRE_VERSION};

/// Converts a physical value (e.g. mV) to device counts, the way the device's ADC scaling is
/// described by the blob's `counts_per_unit`: rounded half away from zero, saturating at the
/// i16 range, NaN → 0. Only the host uses it (to replay recordings); the device reads counts.
pub fn to_counts(value: f32, counts_per_unit: f32) -> i16 {
    let scaled = value * counts_per_unit;
    let rounded = if scaled >= 0.0 { scaled + 0.5 } else { scaled - 0.5 };
    // `as` saturates at the i16 bounds and maps NaN to 0.
    rounded as i16
}

/// Encodes consecutive windows of one stream into frames.
#[derive(Clone, Debug)]
pub struct StreamEncoder<'m> {
    encoder: QuantizedEncoder<'m>,
    stream_id: u8,
    sequence: u32,
    next_sample_index: u64,
}

impl<'m> StreamEncoder<'m> {
    /// A stream whose first frame carries [`FLAG_STREAM_START`] and sample index 0.
    pub fn new(encoder: QuantizedEncoder<'m>, stream_id: u8) -> Self {
        StreamEncoder { encoder, stream_id, sequence: 0, next_sample_index: 0 }
    }

    pub fn encoder(&self) -> &QuantizedEncoder<'m> {
        &self.encoder
    }

    /// Samples (per channel) consumed so far.
    pub fn next_sample_index(&self) -> u64 {
        self.next_sample_index
    }

    /// Encodes the next window (`[T][C]` counts) into a frame. The sequence number wraps at
    /// `u32::MAX`; the sample index counts time steps since the stream started.
    pub fn encode_window(&mut self, samples: &[i16], scratch: &mut [i8]) -> Result<Frame, EncodeError> {
        let mut codes = heapless::Vec::new();
        // code_len() <= MAX_CODES is checked by blob validation.
        codes.resize(self.encoder.code_len(), 0).map_err(|_| EncodeError::CodesLength {
            expected: self.encoder.code_len(),
            found: crate::wire::MAX_CODES,
        })?;
        let report = self.encoder.encode(samples, scratch, &mut codes)?;
        let mut flags = 0;
        if self.sequence == 0 && self.next_sample_index == 0 {
            flags |= FLAG_STREAM_START;
        }
        if report.input_saturated {
            flags |= FLAG_INPUT_SATURATED;
        }
        let frame = Frame {
            version: WIRE_VERSION,
            model_id: self.encoder.model_id(),
            stream_id: self.stream_id,
            sequence: self.sequence,
            sample_index: self.next_sample_index,
            flags,
            codes,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.next_sample_index += self.encoder.window() as u64;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::tests::tiny_blob;

    #[test]
    fn counts_round_half_away_and_saturate() {
        assert_eq!(to_counts(0.0125, 200.0), 3); // 2.5 -> 3
        assert_eq!(to_counts(-0.0125, 200.0), -3);
        assert_eq!(to_counts(1.0e9, 200.0), i16::MAX);
        assert_eq!(to_counts(-1.0e9, 200.0), i16::MIN);
        assert_eq!(to_counts(f32::NAN, 200.0), 0);
    }

    #[test]
    fn frames_number_windows_and_flag_the_start_and_saturation() {
        let blob = tiny_blob();
        let encoder = QuantizedEncoder::from_blob(&blob).unwrap();
        let (window, channels) = (encoder.window(), encoder.channels());
        let mut scratch = [0i8; 256];
        let mut stream = StreamEncoder::new(encoder.clone(), 7);
        let quiet = [0i16; 64];
        let loud = [i16::MAX; 64];
        let n = window * channels;

        let first = stream.encode_window(&quiet[..n], &mut scratch).unwrap();
        let second = stream.encode_window(&loud[..n], &mut scratch).unwrap();
        let third = stream.encode_window(&quiet[..n], &mut scratch).unwrap();
        assert_eq!((first.sequence, first.sample_index, first.flags), (0, 0, FLAG_STREAM_START));
        assert_eq!((second.sequence, second.sample_index, second.flags), (1, window as u64, FLAG_INPUT_SATURATED));
        assert_eq!((third.sequence, third.sample_index, third.flags), (2, 2 * window as u64, 0));
        assert_eq!(first.codes, third.codes);
        assert_eq!((first.stream_id, first.model_id), (7, encoder.model_id()));
        let mut codes = [0i8; 64];
        encoder.encode(&quiet[..n], &mut scratch, &mut codes[..encoder.code_len()]).unwrap();
        assert_eq!(&first.codes[..], &codes[..encoder.code_len()]);
    }

    #[test]
    fn a_short_window_is_an_error_and_does_not_advance_the_stream() {
        let blob = tiny_blob();
        let encoder = QuantizedEncoder::from_blob(&blob).unwrap();
        let mut stream = StreamEncoder::new(encoder, 0);
        let mut scratch = [0i8; 256];
        assert!(matches!(stream.encode_window(&[0; 3], &mut scratch), Err(EncodeError::WindowLength { .. })));
        assert_eq!(stream.next_sample_index(), 0);
    }
}
