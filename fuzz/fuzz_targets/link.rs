//! What a link does to two streams, as a script the fuzzer writes: frames sent, lost, repeated
//! and reordered; headers, restarts and bogus headers; garbage, flipped and cut bytes.

use arbitrary::Arbitrary;
use funnel_shared::wire::{
    encode_frame, encode_last_frame, ModelId, StreamHeader, StreamLayout, MAX_FRAME_LEN, MAX_FRAME_PAYLOAD,
};

#[derive(Arbitrary, Debug)]
pub enum Op {
    /// The next frame of stream `b`, `skip` frames after the last one sent (lost in between);
    /// `len` sets the payload length of a variable-length (entropy-coded) layout, and `end`
    /// makes it a last frame of that many samples (modulo a frame's span, plus 1).
    Frame {
        b: bool,
        skip: u8,
        saturated: bool,
        code: u8,
        len: u16,
        end: Option<u16>,
    },
    /// The frame before the last one of stream `b` again (repeated or late).
    Again {
        b: bool,
    },
    /// A stream header for stream `b`'s next frame; `restart` starts a new session.
    Header {
        b: bool,
        restart: bool,
    },
    /// A CRC-valid header that lies about the frame number.
    Bogus {
        b: bool,
        frame: u32,
    },
    Garbage(Vec<u8>),
    /// Flips bits of the byte `back` bytes before the end of what was sent so far.
    Flip {
        back: u8,
        mask: u8,
    },
    /// Cuts the last `n` bytes.
    Cut {
        n: u8,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Script {
    pub chunk: u8,
    /// The variable-length stream is a bounded one (samples, not codes).
    pub bounded: bool,
    pub ops: Vec<Op>,
}

struct Sender {
    header: StreamHeader,
    next: u32,
}

impl Sender {
    fn frame(&self, frame: u32, saturated: bool, code: u8, len: u16, end: Option<u16>, out: &mut Vec<u8>) {
        let payload = [code; MAX_FRAME_PAYLOAD];
        let layout = &self.header.layout;
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = match end.filter(|_| layout.entropy_coded) {
            Some(end) => {
                let samples = (u64::from(end) % layout.frame_span()) as u32 + 1;
                let windows = samples.div_ceil(u32::from(layout.window)) as usize;
                let raw = match layout.bounded {
                    true => 2 * samples as usize * usize::from(layout.channels),
                    false => 2 * windows * usize::from(layout.codes_per_window),
                };
                let len = usize::from(len) % (raw + 1);
                encode_last_frame(&self.header, frame, saturated, samples, &payload[..len], &mut buf)
            }
            None => {
                let raw = layout.max_payload_len();
                let len = if layout.entropy_coded { usize::from(len) % (raw + 1) } else { raw };
                encode_frame(&self.header, frame, saturated, &payload[..len], &mut buf)
            }
        };
        out.extend_from_slice(&buf[..n.expect("a valid frame")]);
    }
}

/// The bytes received when two streams (ids 0 and 9, models and layouts given) are sent as
/// `script` says; every session starts at sample 1000.
pub fn received(script: &Script, streams: [(ModelId, StreamLayout); 2]) -> Vec<u8> {
    let mut senders = [0, 9].map(|stream_id| {
        let (model_id, layout) = streams[usize::from(stream_id == 9)];
        let header = StreamHeader {
            stream_id,
            restart: true,
            model_id,
            session: 0,
            layout,
            header_interval: 8,
            frame: 0,
            start_sample: 1000,
        };
        Sender { header, next: 0 }
    });
    let mut link = Vec::new();
    for op in script.ops.iter().take(200) {
        match op {
            Op::Frame { b, skip, saturated, code, len, end } => {
                let s = &mut senders[usize::from(*b)];
                let frame = s.next.saturating_add(u32::from(*skip % 8));
                s.frame(frame, *saturated, *code, *len, *end, &mut link);
                s.next = frame.saturating_add(1);
            }
            Op::Again { b } => {
                let s = &senders[usize::from(*b)];
                s.frame(s.next.saturating_sub(2), false, 0, u16::MAX, None, &mut link);
            }
            Op::Header { b, restart } => {
                let s = &mut senders[usize::from(*b)];
                if *restart {
                    s.header.session = s.header.session.wrapping_add(1);
                    s.next = 0;
                }
                // As the spec asks of a sender: a restart is a new session, flagged.
                let header = StreamHeader { frame: s.next, restart: *restart, ..s.header };
                link.extend_from_slice(&header.encode());
            }
            Op::Bogus { b, frame } => {
                let s = &senders[usize::from(*b)];
                link.extend_from_slice(&StreamHeader { frame: *frame, restart: false, ..s.header }.encode());
            }
            Op::Garbage(bytes) => link.extend(bytes.iter().take(600)),
            Op::Flip { back, mask } => {
                if let Some(i) = link.len().checked_sub(1 + usize::from(*back)) {
                    link[i] ^= mask;
                }
            }
            Op::Cut { n } => link.truncate(link.len().saturating_sub(usize::from(*n))),
        }
    }
    link
}
