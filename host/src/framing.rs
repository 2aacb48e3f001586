//! Bits on the wire for a stream of encoded windows: the exact size of the frames the device
//! sends, computed with the `shared` wire format itself.

use funnel_shared::wire::{encode_frame, Frame, ModelId, MAX_CODES, MAX_ENCODED_LEN, WIRE_VERSION};

/// Bits the frames of `n_windows` consecutive windows (of `window` samples, `latent` codes
/// each) occupy on the link, delimiters included. Frame sizes vary only with the varint sizes
/// of the sequence number and sample index, not with the code values (COBS adds one byte per
/// frame below 254 bytes), so this is exact for any codes.
pub fn bits_sent(n_windows: usize, window: usize, latent: usize) -> u64 {
    assert!(latent <= MAX_CODES, "a frame carries at most {MAX_CODES} codes");
    let mut frame = Frame {
        version: WIRE_VERSION,
        model_id: ModelId([0; 4]),
        stream_id: 0,
        sequence: 0,
        sample_index: 0,
        flags: 0,
        codes: heapless::Vec::from_slice(&[0i8; MAX_CODES][..latent]).expect("latent <= MAX_CODES"),
    };
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut bytes = 0u64;
    for i in 0..n_windows {
        frame.sequence = i as u32;
        frame.sample_index = (i * window) as u64;
        bytes += encode_frame(&frame, &mut buf).expect("buffer holds a maximal frame").len() as u64;
    }
    8 * bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_varints() {
        // 1 version + 4 id + 1 stream + 1 seq + 1 index + 1 flags + 1 len + 8 codes = 18 payload
        // bytes, + 4 CRC = 22, + 1 COBS overhead + 1 delimiter = 24.
        assert_eq!(bits_sent(1, 128, 8), 8 * 24);
        // Window 1 from sample 128 on needs a 2-byte sample index varint.
        assert_eq!(bits_sent(2, 128, 8), 8 * (24 + 25));
        assert_eq!(bits_sent(0, 128, 8), 0);
    }
}
