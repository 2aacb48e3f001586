//! Wire format: how the device sends latent codes over a byte link.
//!
//! One [`Frame`] per encoded window, serialized with `postcard`, followed by a CRC-32
//! (ISO-HDLC, the zlib/Ethernet CRC) of those bytes, little-endian, and the whole COBS-encoded
//! and terminated by a `0x00` delimiter. The specification with golden vectors is
//! `docs/wire-format.md`; the tests in this module check those vectors.
//!
//! [`FrameDecoder`] accepts the byte stream in chunks split anywhere, skips garbage,
//! resynchronises at the next delimiter and reports damage as typed [`DecodeEvent`]s.

use crc::{Crc, CRC_32_ISO_HDLC};
use serde::{Deserialize, Serialize};

/// Version of the frame layout; the first byte of every decoded frame payload.
pub const WIRE_VERSION: u8 = 1;
/// Most latent codes one frame carries.
pub const MAX_CODES: usize = 64;
/// Length of a [`ModelId`].
pub const MODEL_ID_LEN: usize = 4;
/// Bytes of the CRC that follows the payload.
pub const CRC_LEN: usize = 4;
/// Largest postcard payload of a frame: version, model id, stream id, sequence (varint u32),
/// sample index (varint u64), flags, code count (varint) and the codes.
pub const MAX_PAYLOAD_LEN: usize = 1 + MODEL_ID_LEN + 1 + 5 + 10 + 1 + 1 + MAX_CODES;
/// Largest encoded frame including the COBS overhead byte and the `0x00` delimiter.
pub const MAX_ENCODED_LEN: usize = MAX_PAYLOAD_LEN + CRC_LEN + 2;

/// The frame checksum: CRC-32/ISO-HDLC (as zlib's `crc32`).
pub const FRAME_CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Identifies the model that produced the codes: the first bytes of the SHA-256 of the
/// model blob's payload (see [`crate::blob`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelId(pub [u8; MODEL_ID_LEN]);

impl core::fmt::Display for ModelId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `flags` bit: first frame after the device (re)started; sequence numbers restart here.
pub const FLAG_STREAM_START: u8 = 0x01;
/// `flags` bit: at least one sample of this window was clipped to the i16 input range or
/// saturated the int8 input quantizer.
pub const FLAG_INPUT_SATURATED: u8 = 0x02;

/// One encoded window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// [`WIRE_VERSION`]; serialized first so a decoder can refuse unknown layouts.
    pub version: u8,
    pub model_id: ModelId,
    /// Which sensor stream of the device this is (a device may run several).
    pub stream_id: u8,
    /// Per-stream frame counter, wrapping; a jump reveals lost frames.
    pub sequence: u32,
    /// Index of the window's first sample in the stream since the device started.
    pub sample_index: u64,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// The int8 latent codes.
    pub codes: heapless::Vec<i8, MAX_CODES>,
}

/// Why a frame could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeFrameError {
    /// The output buffer is shorter than the encoded frame ([`MAX_ENCODED_LEN`] always suffices).
    BufferTooSmall,
}

impl core::fmt::Display for EncodeFrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("frame buffer too small")
    }
}

impl core::error::Error for EncodeFrameError {}

/// Serializes `frame` with its CRC, COBS-encodes it and appends the `0x00` delimiter.
/// Returns the bytes to send.
pub fn encode_frame<'b>(frame: &Frame, buf: &'b mut [u8]) -> Result<&'b mut [u8], EncodeFrameError> {
    use postcard::ser_flavors::{crc::CrcModifier, Cobs, Slice};
    // CRC over the raw payload, then COBS over payload + CRC: the CRC protects what the
    // application reads, and COBS guarantees the only 0x00 is the delimiter.
    let cobs = Cobs::try_new(Slice::new(buf)).map_err(|_| EncodeFrameError::BufferTooSmall)?;
    postcard::serialize_with_flavor(frame, CrcModifier::new(cobs, FRAME_CRC.digest()))
        .map_err(|_| EncodeFrameError::BufferTooSmall)
}

/// What kind of damage made a delimited chunk unusable. Ordered so that receivers can count
/// damage by kind in a sorted map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CorruptKind {
    /// More bytes than any valid frame before a delimiter (a lost delimiter or garbage).
    Oversized,
    /// Not valid COBS.
    Cobs,
    /// Too short to hold a payload and CRC.
    Truncated,
    /// The CRC does not match the payload.
    Crc,
    /// The CRC matched but the payload is not a frame of this version's layout.
    Malformed,
    /// The frame declares a wire version this decoder does not know.
    UnsupportedVersion(u8),
}

impl core::fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CorruptKind::Oversized => f.write_str("oversized (no delimiter where one was due)"),
            CorruptKind::Cobs => f.write_str("invalid COBS encoding"),
            CorruptKind::Truncated => f.write_str("truncated"),
            CorruptKind::Crc => f.write_str("CRC mismatch"),
            CorruptKind::Malformed => f.write_str("malformed payload"),
            CorruptKind::UnsupportedVersion(v) => {
                write!(f, "unsupported wire version {v} (this decoder reads {WIRE_VERSION})")
            }
        }
    }
}

/// What the decoder found in the byte stream, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeEvent {
    /// An intact frame.
    Frame(Frame),
    /// Bytes up to a delimiter that are not an intact frame; `bytes` counts them (delimiter
    /// excluded) so callers can account for every byte received.
    Corrupt { kind: CorruptKind, bytes: usize },
    /// Frames are missing on `stream_id`: `expected` was due, `received` arrived (wrapping
    /// arithmetic: `received.wrapping_sub(expected)` frames were lost). Emitted just before the
    /// [`DecodeEvent::Frame`] that revealed it.
    Gap { stream_id: u8, expected: u32, received: u32 },
    /// A frame whose sequence number is not ahead of the last one seen on its stream (a repeat
    /// or a reordering); it is still delivered as the next [`DecodeEvent::Frame`].
    OutOfOrder { stream_id: u8, last: u32, received: u32 },
}

/// Streaming frame decoder: push byte chunks of any size, get [`DecodeEvent`]s.
///
/// It holds one frame's worth of bytes and the last sequence number per stream; no allocation.
pub struct FrameDecoder {
    buf: [u8; MAX_ENCODED_LEN],
    len: usize,
    /// Bytes received since the last delimiter, counting those dropped past `buf`.
    pending: usize,
    last_sequence: [Option<u32>; 256],
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    pub const fn new() -> Self {
        Self { buf: [0; MAX_ENCODED_LEN], len: 0, pending: 0, last_sequence: [None; 256] }
    }

    /// Decodes `chunk`; the returned iterator yields the events it completes. Bytes after the
    /// last delimiter stay buffered for the next call. Drop the iterator early and the rest of
    /// the chunk is discarded as if never received.
    pub fn feed<'d, 'c>(&'d mut self, chunk: &'c [u8]) -> Events<'d, 'c> {
        Events { decoder: self, rest: chunk, held: None }
    }

    /// Reports bytes still waiting for a delimiter (call at end of stream): a truncated frame.
    pub fn finish(&mut self) -> Option<DecodeEvent> {
        let bytes = core::mem::take(&mut self.pending);
        self.len = 0;
        (bytes > 0).then_some(DecodeEvent::Corrupt { kind: CorruptKind::Truncated, bytes })
    }

    /// Interprets the bytes between two delimiters. `None` for an empty chunk (back-to-back
    /// delimiters are allowed as padding / sync markers).
    fn complete(&mut self) -> Option<(DecodeEvent, Option<Frame>)> {
        let bytes = core::mem::take(&mut self.pending);
        let len = core::mem::take(&mut self.len);
        if bytes == 0 {
            return None;
        }
        let corrupt = |kind| Some((DecodeEvent::Corrupt { kind, bytes }, None));
        if bytes > len {
            return corrupt(CorruptKind::Oversized);
        }
        let Ok(decoded) = cobs::decode_in_place(&mut self.buf[..len]) else {
            return corrupt(CorruptKind::Cobs);
        };
        if decoded <= CRC_LEN {
            return corrupt(CorruptKind::Truncated);
        }
        let (payload, crc) = self.buf[..decoded].split_at(decoded - CRC_LEN);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if FRAME_CRC.checksum(payload) != stored {
            return corrupt(CorruptKind::Crc);
        }
        if payload[0] != WIRE_VERSION {
            return corrupt(CorruptKind::UnsupportedVersion(payload[0]));
        }
        let frame = match postcard::take_from_bytes::<Frame>(payload) {
            Ok((frame, [])) => frame,
            _ => return corrupt(CorruptKind::Malformed),
        };
        Some(self.track_sequence(frame))
    }

    /// Checks `frame` against its stream's previous sequence number; returns the event to emit
    /// first (a gap or reordering notice, or the frame itself) and the frame still to emit.
    fn track_sequence(&mut self, frame: Frame) -> (DecodeEvent, Option<Frame>) {
        let stream_id = frame.stream_id;
        let received = frame.sequence;
        let last = self.last_sequence[stream_id as usize].replace(received);
        let notice = match last {
            Some(_) if frame.flags & FLAG_STREAM_START != 0 => None,
            None => None,
            Some(last) => {
                let expected = last.wrapping_add(1);
                let ahead = received.wrapping_sub(last);
                if ahead == 1 {
                    None
                } else if ahead != 0 && ahead < 1 << 31 {
                    Some(DecodeEvent::Gap { stream_id, expected, received })
                } else {
                    Some(DecodeEvent::OutOfOrder { stream_id, last, received })
                }
            }
        };
        match notice {
            Some(notice) => (notice, Some(frame)),
            None => (DecodeEvent::Frame(frame), None),
        }
    }
}

/// Iterator over the events completed by one [`FrameDecoder::feed`] call.
pub struct Events<'d, 'c> {
    decoder: &'d mut FrameDecoder,
    rest: &'c [u8],
    held: Option<Frame>,
}

impl Iterator for Events<'_, '_> {
    type Item = DecodeEvent;

    fn next(&mut self) -> Option<DecodeEvent> {
        if let Some(frame) = self.held.take() {
            return Some(DecodeEvent::Frame(frame));
        }
        let d = &mut *self.decoder;
        while let Some((&byte, rest)) = self.rest.split_first() {
            self.rest = rest;
            if byte == 0 {
                if let Some((event, held)) = d.complete() {
                    self.held = held;
                    return Some(event);
                }
            } else {
                if d.len < d.buf.len() {
                    d.buf[d.len] = byte;
                    d.len += 1;
                }
                d.pending += 1;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    pub(crate) fn frame(sequence: u32, codes: &[i8]) -> Frame {
        Frame {
            version: WIRE_VERSION,
            model_id: ModelId([0xde, 0xad, 0xbe, 0xef]),
            stream_id: 0,
            sequence,
            sample_index: u64::from(sequence) * 128,
            flags: 0,
            codes: heapless::Vec::from_slice(codes).unwrap(),
        }
    }

    fn encode(f: &Frame) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        encode_frame(f, &mut buf).unwrap().to_vec()
    }

    fn decode_all(stream: &[u8], chunk: usize) -> Vec<DecodeEvent> {
        let mut d = FrameDecoder::new();
        let mut out: Vec<DecodeEvent> =
            stream.chunks(chunk.max(1)).flat_map(|c| d.feed(c).collect::<Vec<_>>()).collect();
        out.extend(d.finish());
        out
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: std::string::String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The golden vectors of `docs/wire-format.md`, byte for byte.
    #[test]
    fn golden_vectors_match_the_spec() {
        let doc = include_str!("../../docs/wire-format.md");
        let vectors: Vec<(Frame, &str)> = std::vec![
            (frame(0, &[1, -1, 0, 127, -128]), "golden-1"),
            (
                Frame {
                    stream_id: 3,
                    sequence: 300,
                    sample_index: 38_400,
                    flags: FLAG_STREAM_START | FLAG_INPUT_SATURATED,
                    ..frame(0, &[0; 8])
                },
                "golden-2",
            ),
        ];
        for (f, name) in vectors {
            let start = doc.find(&std::format!("<!-- {name} -->")).expect("vector in doc");
            let block = &doc[start..];
            let open = block.find("```\n").unwrap() + 4;
            let close = open + block[open..].find("```").unwrap();
            let expected = hex(&block[open..close]);
            assert_eq!(encode(&f), expected, "{name}");
            assert_eq!(decode_all(&expected, 1), std::vec![DecodeEvent::Frame(f)]);
        }
    }

    #[test]
    fn max_size_frame_fits_the_buffer() {
        let mut f = frame(u32::MAX, &[0; MAX_CODES]);
        f.sample_index = u64::MAX;
        let bytes = encode(&f);
        assert!(bytes.len() <= MAX_ENCODED_LEN);
        assert_eq!(decode_all(&bytes, 7), std::vec![DecodeEvent::Frame(f)]);
    }

    #[test]
    fn frames_split_anywhere_decode_identically() {
        let frames: Vec<Frame> = (0..20).map(|i| frame(i, &[i as i8, 0, -3, 0x7f])).collect();
        let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
        for chunk in [1, 2, 3, 5, 17, 64, stream.len()] {
            let events = decode_all(&stream, chunk);
            let expected: Vec<_> = frames.iter().cloned().map(DecodeEvent::Frame).collect();
            assert_eq!(events, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn garbage_is_reported_and_followed_frames_recovered() {
        let mut stream = std::vec![0x13, 0x37, 0x42];
        stream.push(0);
        stream.extend(encode(&frame(0, &[5; 6])));
        let events = decode_all(&stream, 4);
        assert_eq!(
            events,
            std::vec![
                DecodeEvent::Corrupt { kind: CorruptKind::Cobs, bytes: 3 },
                DecodeEvent::Frame(frame(0, &[5; 6]))
            ]
        );
    }

    #[test]
    fn flipped_bit_is_a_crc_error_and_the_next_frame_survives() {
        let mut a = encode(&frame(0, &[1, 2, 3]));
        a[4] ^= 0x10;
        a.extend(encode(&frame(1, &[4, 5, 6])));
        let events = decode_all(&a, 3);
        assert!(matches!(events[0], DecodeEvent::Corrupt { kind: CorruptKind::Crc | CorruptKind::Cobs, .. }));
        // The damaged frame's sequence number was never seen, so the next frame opens the stream.
        assert_eq!(events[1], DecodeEvent::Frame(frame(1, &[4, 5, 6])));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn lost_frames_are_reported_as_a_gap() {
        let stream: Vec<u8> = [0u32, 1, 4].iter().flat_map(|&s| encode(&frame(s, &[1]))).collect();
        let events = decode_all(&stream, 100);
        assert_eq!(
            events,
            std::vec![
                DecodeEvent::Frame(frame(0, &[1])),
                DecodeEvent::Frame(frame(1, &[1])),
                DecodeEvent::Gap { stream_id: 0, expected: 2, received: 4 },
                DecodeEvent::Frame(frame(4, &[1])),
            ]
        );
    }

    #[test]
    fn sequence_wraps_and_repeats_are_out_of_order() {
        let stream: Vec<u8> = [u32::MAX, 0, 0].iter().flat_map(|&s| encode(&frame(s, &[1]))).collect();
        let events = decode_all(&stream, 100);
        assert_eq!(events[1], DecodeEvent::Frame(frame(0, &[1])));
        assert_eq!(events[2], DecodeEvent::OutOfOrder { stream_id: 0, last: 0, received: 0 });
        assert_eq!(events[3], DecodeEvent::Frame(frame(0, &[1])));
    }

    #[test]
    fn restart_flag_resets_sequence_tracking() {
        let mut restarted = frame(0, &[1]);
        restarted.flags = FLAG_STREAM_START;
        let stream: Vec<u8> = [frame(7, &[1]), restarted.clone()].iter().flat_map(encode).collect();
        assert_eq!(
            decode_all(&stream, 100),
            std::vec![DecodeEvent::Frame(frame(7, &[1])), DecodeEvent::Frame(restarted)]
        );
    }

    #[test]
    fn truncated_tail_and_oversized_runs_are_reported() {
        let full = encode(&frame(0, &[9; 10]));
        let cut = &full[..full.len() - 4];
        assert_eq!(
            decode_all(cut, 2),
            std::vec![DecodeEvent::Corrupt { kind: CorruptKind::Truncated, bytes: cut.len() }]
        );

        let mut stream = std::vec![0x55u8; 1000];
        stream.push(0);
        stream.extend(&full);
        assert_eq!(
            decode_all(&stream, 33),
            std::vec![
                DecodeEvent::Corrupt { kind: CorruptKind::Oversized, bytes: 1000 },
                DecodeEvent::Frame(frame(0, &[9; 10]))
            ]
        );
    }

    #[test]
    fn unknown_version_is_refused_by_name() {
        let mut f = frame(0, &[1]);
        f.version = 2;
        assert_eq!(
            decode_all(&encode(&f), 100),
            std::vec![DecodeEvent::Corrupt { kind: CorruptKind::UnsupportedVersion(2), bytes: encode(&f).len() - 1 }]
        );
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests: random and mutated byte streams never panic the decoder, and every intact
    //! frame behind an intact delimiter is recovered.
    extern crate std;
    use super::tests::frame;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[derive(Clone, Debug)]
    enum Damage {
        None,
        Flip { at: usize, mask: u8 },
        Delete { at: usize },
        Insert { at: usize, byte: u8 },
        Duplicate { at: usize, len: usize },
        Truncate { keep: usize },
        DropDelimiter,
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            4 => Just(Damage::None),
            1 => (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Damage::Flip { at, mask }),
            1 => any::<usize>().prop_map(|at| Damage::Delete { at }),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Insert { at, byte }),
            1 => (any::<usize>(), 1..8usize).prop_map(|(at, len)| Damage::Duplicate { at, len }),
            1 => any::<usize>().prop_map(|keep| Damage::Truncate { keep }),
            1 => Just(Damage::DropDelimiter),
        ]
    }

    /// Applies `d` to one encoded frame (`bytes` ends with its delimiter).
    fn apply(d: &Damage, bytes: &mut Vec<u8>) {
        let body = bytes.len() - 1;
        match *d {
            Damage::None => {}
            Damage::Flip { at, mask } => bytes[at % body] ^= mask,
            Damage::Delete { at } => {
                bytes.remove(at % body);
            }
            Damage::Insert { at, byte } => bytes.insert(at % body, byte),
            Damage::Duplicate { at, len } => {
                let at = at % body;
                let end = (at + len).min(body);
                let copy: Vec<u8> = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            Damage::Truncate { keep } => {
                // Keep at least one byte: a frame truncated to nothing is simply absent, which
                // would make a previous frame with a dropped delimiter intact again.
                bytes.drain(1 + keep % (body - 1)..body);
            }
            Damage::DropDelimiter => {
                bytes.pop();
            }
        }
    }

    fn decoded_frames(stream: &[u8], chunk: usize) -> Vec<Frame> {
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for c in stream.chunks(chunk) {
            out.extend(d.feed(c).filter_map(|e| match e {
                DecodeEvent::Frame(f) => Some(f),
                _ => None,
            }));
        }
        d.finish();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1..300usize) {
            let mut d = FrameDecoder::new();
            for c in bytes.chunks(chunk) {
                for _ in d.feed(c) {}
            }
            d.finish();
        }

        #[test]
        fn frames_after_garbage_are_all_recovered(
            garbage in proptest::collection::vec(any::<u8>(), 0..600),
            codes in proptest::collection::vec(proptest::collection::vec(any::<i8>(), 0..=MAX_CODES), 1..12),
            chunk in 1..200usize,
        ) {
            let frames: Vec<Frame> = codes.iter().enumerate().map(|(i, c)| frame(i as u32, c)).collect();
            let mut stream = garbage;
            stream.push(0);
            let mut buf = [0u8; MAX_ENCODED_LEN];
            for f in &frames {
                stream.extend_from_slice(encode_frame(f, &mut buf).unwrap());
            }
            let got = decoded_frames(&stream, chunk);
            prop_assert!(got.len() >= frames.len());
            prop_assert_eq!(&got[got.len() - frames.len()..], &frames[..]);
        }

        #[test]
        fn mutated_streams_lose_only_the_damaged_frames(
            damages in proptest::collection::vec(damage(), 1..24),
            chunk in 1..100usize,
        ) {
            let mut stream = Vec::new();
            let mut frames = Vec::new();
            let mut bodies = Vec::new();
            let mut untouched = Vec::new();
            let mut buf = [0u8; MAX_ENCODED_LEN];
            let mut previous_delimiter_intact = true;
            for (i, d) in damages.iter().enumerate() {
                let f = frame(i as u32, &[(i % 100) as i8; 9]);
                let mut bytes = encode_frame(&f, &mut buf).unwrap().to_vec();
                bodies.push(bytes[..bytes.len() - 1].to_vec());
                apply(d, &mut bytes);
                if matches!(d, Damage::None) && previous_delimiter_intact {
                    untouched.push(f.clone());
                }
                previous_delimiter_intact = !matches!(d, Damage::DropDelimiter);
                frames.push(f);
                stream.extend(bytes);
            }
            // Exactly the frames whose encoded bytes still stand between two delimiters (or the
            // start and a delimiter): damage
            // can also restore a frame, e.g. a flip that turns the next frame's first byte into
            // 0x00 stands in for a dropped delimiter.
            let mut delimited: Vec<&[u8]> = stream.split(|&b| b == 0).collect();
            delimited.pop(); // bytes after the last delimiter are an unfinished frame
            let expected: Vec<Frame> = delimited
                .into_iter()
                .filter_map(|c| bodies.iter().position(|b| b == c).map(|i| frames[i].clone()))
                .collect();
            let got = decoded_frames(&stream, chunk);
            prop_assert_eq!(&got, &expected);
            // In particular every undamaged frame behind an intact delimiter.
            prop_assert!(untouched.iter().all(|f| got.contains(f)));
        }
    }
}
