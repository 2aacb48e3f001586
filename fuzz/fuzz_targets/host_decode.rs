//! The host decode loop (`StreamDecoder`: frames → latent decoder → rows) under coverage-guided
//! fuzzing, on a small real model and a test-double latent decoder: whatever a link does to the
//! model's stream and a stream of another model beside it, decoding never panics, refuses only
//! a link whose first stream is foreign, accounts for every byte, writes each window once at
//! most, and writes missing windows without values.
#![no_main]

mod link;

use funnel::codec::{CollectSink, DecodeError, SampleStatus, StreamDecoder};
use funnel::quantize::dense_blob;
use funnel::runtime::RepeatLatents;
use funnel_shared::wire::{ModelId, StreamLayout};
use libfuzzer_sys::fuzz_target;
use link::{received, Script};

const WINDOW: usize = 16;
const LATENT: usize = 4;

fuzz_target!(|script: Script| {
    let (blob, normalization) = dense_blob(WINDOW, LATENT);
    let ours = StreamLayout {
        channels: 1,
        codes_per_window: LATENT as u8,
        window: WINDOW as u16,
        windows_per_frame: 2,
        entropy_coded: true,
        bounded: false,
    };
    // Another model's stream: latent codes, or a bounded stream's samples.
    let theirs = StreamLayout {
        channels: 1,
        codes_per_window: if script.bounded { 0 } else { 3 },
        window: 8,
        windows_per_frame: 1,
        entropy_coded: script.bounded,
        bounded: script.bounded,
    };
    let link = received(&script, [(blob.model_id(), ours), (ModelId([9, 9, 9, 9]), theirs)]);

    let mut sink = CollectSink { channels: 1, ..Default::default() };
    let mut decoder =
        StreamDecoder::new(&blob, &normalization, &RepeatLatents { latent: LATENT, window: WINDOW }, "fuzz")
            .unwrap()
            .with_batch(3);
    let mut fed = Ok(());
    for chunk in link.chunks(usize::from(script.chunk).max(1)) {
        fed = decoder.feed(chunk, &mut sink);
        if fed.is_err() {
            break;
        }
    }
    let report = match fed.and_then(|()| decoder.finish(&mut sink)) {
        Ok(report) => report,
        // Only a first stream of another model stops a decode, before any row.
        Err(DecodeError::ForeignModel { .. }) => return assert!(sink.status.is_empty()),
        Err(e) => panic!("decode failed: {e}"),
    };
    assert_eq!(report.bytes, link.len() as u64);
    assert_eq!(report.samples_written as usize, sink.status.len());
    for (status, value) in sink.status.iter().zip(&sink.values) {
        assert_eq!(*status == SampleStatus::Missing, value.is_nan(), "{status:?} {value}");
    }
});
