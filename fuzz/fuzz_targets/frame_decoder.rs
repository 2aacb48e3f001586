//! `FrameDecoder` under coverage-guided fuzzing: whatever a link does to two streams (see
//! `link.rs`; one of fixed-length frames, one of variable-length ones: codes or a bounded stream's samples), the decoder must not panic, must account for every byte, and must deliver each
//! stream's frames of a session in increasing order on the sample grid its headers imply.
#![no_main]

mod link;

use funnel_shared::wire::{DecodeEvent, FrameDecoder, ModelId, StreamLayout};
use libfuzzer_sys::fuzz_target;
use link::{received, Script};

fuzz_target!(|script: Script| {
    let model = ModelId([1, 2, 3, 4]);
    let link = received(
        &script,
        [
            (
                model,
                StreamLayout {
                    channels: 1,
                    codes_per_window: 6,
                    window: 64,
                    windows_per_frame: 1,
                    entropy_coded: false,
                    bounded: false,
                },
            ),
            (
                model,
                match script.bounded {
                    // Samples within a bound: frames of up to 2 × 2 × 32 × 3 bytes raw.
                    true => StreamLayout {
                        channels: 2,
                        codes_per_window: 0,
                        window: 32,
                        windows_per_frame: 3,
                        entropy_coded: true,
                        bounded: true,
                    },
                    false => StreamLayout {
                        channels: 2,
                        codes_per_window: 4,
                        window: 32,
                        windows_per_frame: 3,
                        entropy_coded: true,
                        bounded: false,
                    },
                },
            ),
        ],
    );

    let mut decoder = FrameDecoder::new();
    let mut accounted = 0;
    let mut last: [Option<(u16, u32)>; 256] = [None; 256];
    let mut check = |event: DecodeEvent| match event {
        DecodeEvent::Header { header, .. } => accounted += header.encoded_len(),
        DecodeEvent::Frame(f) => {
            accounted += f.wire_len();
            let id = usize::from(f.stream_id);
            if let Some((session, frame)) = last[id] {
                assert!(session != f.session || frame < f.frame, "frames out of order: {frame} then {}", f.frame);
            }
            last[id] = Some((f.session, f.frame));
            let span = u64::from(f.layout.window) * u64::from(f.layout.windows_per_frame);
            assert_eq!(f.sample_index % span, 1000 % span, "sample index off the frame grid");
            assert!((1..=span).contains(&f.samples()) && f.payload.len() <= f.raw_len(), "a last frame out of range");
        }
        DecodeEvent::Corrupt { bytes, .. } => accounted += bytes,
        DecodeEvent::Gap(g) => assert!(g.frames > 0 && g.samples > 0),
    };
    for chunk in link.chunks(usize::from(script.chunk).max(1)) {
        decoder.feed(chunk).for_each(&mut check);
    }
    decoder.finish().for_each(&mut check);
    drop(check);
    assert_eq!(accounted, link.len(), "every byte is accounted for");
});
