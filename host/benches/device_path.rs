//! Throughput of the device path on the host, with the shipped ECG model:
//! * `encode`: the `shared` int8 encoder (the device's code) — windows/s;
//! * `decode/<backend>/batch<N>`: codes → frames → `decoder.onnx` → samples — samples/s.
//!
//! `cargo bench -p funnel --bench device_path` (add `--features ort` with `ORT_DYLIB_PATH` set
//! for the ONNX Runtime rows).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use funnel::codec::{simulate, CollectSink, StreamDecoder};
use funnel::pipeline::recording_counts;
use funnel::runtime::{load_onnx, Backend};
use funnel_artifacts::{Graph, ModelDir};
use funnel_shared::stream::StreamConfig;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ecg")
}

fn bench(c: &mut Criterion) {
    let dir = ModelDir::new(model_dir());
    let card = dir.load_card().expect("shipped model");
    let blob = dir.load_blob().expect("shipped blob");
    let counts = recording_counts(dir.path(), &dir.data_path(&card), &card.columns).expect("recording");
    let encoder = blob.encoder();
    let step = encoder.window() * encoder.channels();
    let windows = 256.min(counts.len() / step);
    let counts = &counts[..windows * step];

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(windows as u64));
    let mut scratch = vec![0i16; encoder.scratch_len()];
    let mut codes = vec![0i16; encoder.code_len()];
    group.bench_function("int8_windows", |b| {
        b.iter(|| {
            for w in counts.chunks_exact(step) {
                encoder.encode(w, &mut scratch, &mut codes).unwrap();
            }
        })
    });
    group.finish();

    let stream = simulate(&blob, counts, StreamConfig::DEFAULT).unwrap().bytes;
    let mut backends = vec![Backend::Tract];
    if cfg!(feature = "ort") {
        backends.push(Backend::Ort);
    }
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements((windows * step) as u64));
    for backend in backends {
        let decoder = load_onnx(&dir.onnx_path(Graph::Decoder), backend).expect("decoder.onnx");
        for batch in [1usize, 64] {
            group.bench_with_input(
                BenchmarkId::new(format!("{backend:?}"), format!("batch{batch}")),
                &batch,
                |b, &batch| {
                    b.iter(|| {
                        let mut sink = CollectSink { channels: encoder.channels(), ..Default::default() };
                        let mut d = StreamDecoder::new(&blob, &card.normalization, decoder.as_ref(), "bench")
                            .unwrap()
                            .with_batch(batch);
                        d.feed(&stream, &mut sink).unwrap();
                        d.finish(&mut sink).unwrap();
                        sink.values.len()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
