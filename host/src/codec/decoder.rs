//! From received bytes back to the signal: frames through the resynchronising
//! [`FrameDecoder`], codes dequantized, the latent decoder run in batches, denormalized, and one
//! output row per sample. Missing windows stay empty (flagged), never invented.

use std::collections::{BTreeMap, VecDeque};

use funnel_artifacts::data::{channels_first_to_interleaved, Normalization};
use funnel_artifacts::Blob;
use funnel_shared::wire::{
    CorruptKind, DecodeEvent, Frame, FrameDecoder, ModelId, FLAG_INPUT_SATURATED, FLAG_STREAM_START,
};

use super::sink::{ReconstructionSink, SampleStatus};
use crate::runtime::Runtime;

/// Frames decoded together in one call of the latent decoder.
pub const DEFAULT_BATCH: usize = 64;
/// A gap longer than this many samples is reported but not written out as empty rows (a
/// corrupted-but-CRC-valid sample index must not make us write gigabytes).
pub const MAX_FILLED_GAP: u64 = 1 << 24;

/// A run of samples with no frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub first_sample: u64,
    pub samples: u64,
    /// False when the gap was too long to write out as empty rows.
    pub filled: bool,
}

/// Everything that happened to the stream, for the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeReport {
    pub bytes: u64,
    pub frames: u64,
    pub samples_written: u64,
    pub saturated_windows: u64,
    /// Frames lost according to the sequence numbers.
    pub frames_lost: u64,
    pub gaps: Vec<Gap>,
    pub missing_samples: u64,
    /// Damaged chunks skipped, by kind, and the bytes they held.
    pub corrupt: BTreeMap<CorruptKind, u64>,
    pub corrupt_bytes: u64,
    /// Frames that repeat or go back in time (duplicates, reordering): skipped.
    pub stale_frames_skipped: u64,
    /// Times the device restarted its stream (sample index back to 0).
    pub restarts: u64,
}

impl DecodeReport {
    pub fn corrupt_frames(&self) -> u64 {
        self.corrupt.values().sum()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} bytes, {} frames decoded, {} samples written ({} saturated windows)\n",
            self.bytes, self.frames, self.samples_written, self.saturated_windows
        );
        s += &format!(
            "{} frames lost, {} samples missing in {} gap(s), {} corrupt chunk(s) skipped ({} bytes), {} stale frame(s) skipped, {} restart(s)\n",
            self.frames_lost,
            self.missing_samples,
            self.gaps.len(),
            self.corrupt_frames(),
            self.corrupt_bytes,
            self.stale_frames_skipped,
            self.restarts
        );
        for (kind, n) in &self.corrupt {
            s += &format!("  corrupt: {n} × {kind}\n");
        }
        for g in self.gaps.iter().take(20) {
            s += &format!(
                "  gap: samples {}..{} ({} samples){}\n",
                g.first_sample,
                g.first_sample + g.samples,
                g.samples,
                if g.filled { "" } else { " — too long, no rows written" }
            );
        }
        if self.gaps.len() > 20 {
            s += &format!("  … {} more gaps\n", self.gaps.len() - 20);
        }
        s
    }
}

enum Pending {
    Frame(Frame),
    Missing { first_sample: u64, samples: u64 },
}

/// Why decoding stopped. Damaged bytes never stop it (they are counted in the
/// [`DecodeReport`]); a stream of another model, a decoder of the wrong shape, a failing runtime
/// or an output that cannot be written do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(
        "frame {sequence} (sample {sample_index}) was made by model {found}, but --model {model_name} is model \
         {expected}: decode it with the model that made it"
    )]
    ForeignModel { sequence: u32, sample_index: u64, found: ModelId, expected: ModelId, model_name: String },
    #[error("frame {sequence} has {found} codes, model {model_id} emits {expected}")]
    CodeCount { sequence: u32, found: usize, expected: usize, model_id: ModelId },
    #[error("the card's normalization has {found} channel(s), the model blob {expected}")]
    NormalizationChannels { expected: usize, found: usize },
    #[error(
        "the decoder of --model {model_name} maps {input} latents to {output} values, but its model {model_id} \
         sends {latent} codes per window of {values} values: decoder.onnx belongs to another model"
    )]
    DecoderShape { model_name: String, model_id: ModelId, input: usize, output: usize, latent: usize, values: usize },
    #[error("the decoder failed: {0:#}")]
    Runtime(anyhow::Error),
    #[error("cannot write the reconstruction: {0}")]
    Sink(#[from] std::io::Error),
}

/// Decodes one model's frames from a byte stream into a [`ReconstructionSink`], running the
/// latent decoder `R` (any [`Runtime`]: tract, ONNX Runtime, candle, a test double).
pub struct StreamDecoder<'d, R: Runtime + ?Sized> {
    frames: FrameDecoder,
    model_id: ModelId,
    model_name: String,
    blob: &'d Blob,
    normalization: &'d Normalization,
    decoder: &'d R,
    batch: usize,
    next_sample: Option<u64>,
    pending: VecDeque<Pending>,
    report: DecodeReport,
}

impl<'d, R: Runtime + ?Sized> StreamDecoder<'d, R> {
    /// `blob` identifies the model (frames of other models are refused); `decoder` is its
    /// decoder graph, checked against the blob's shape. `model_name` names the model in errors.
    pub fn new(
        blob: &'d Blob,
        normalization: &'d Normalization,
        decoder: &'d R,
        model_name: &str,
    ) -> Result<Self, DecodeError> {
        if normalization.channels() != blob.channels() {
            return Err(DecodeError::NormalizationChannels {
                expected: blob.channels(),
                found: normalization.channels(),
            });
        }
        let values = blob.window() * blob.channels();
        if decoder.input_len() != blob.latent() || decoder.output_len() != values {
            return Err(DecodeError::DecoderShape {
                model_name: model_name.to_string(),
                model_id: blob.model_id(),
                input: decoder.input_len(),
                output: decoder.output_len(),
                latent: blob.latent(),
                values,
            });
        }
        Ok(StreamDecoder {
            frames: FrameDecoder::new(),
            model_id: blob.model_id(),
            model_name: model_name.to_string(),
            blob,
            normalization,
            decoder,
            batch: DEFAULT_BATCH,
            next_sample: None,
            pending: VecDeque::new(),
            report: DecodeReport::default(),
        })
    }

    /// Frames decoded per runtime call (1 = lowest latency).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Consumes a chunk of received bytes (any size, split anywhere).
    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        self.report.bytes += chunk.len() as u64;
        let events: Vec<DecodeEvent> = self.frames.feed(chunk).collect();
        for event in events {
            self.handle(event, sink)?;
        }
        Ok(())
    }

    /// Decodes and writes everything received so far.
    pub fn flush(&mut self, sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        let frames: Vec<&Frame> =
            self.pending.iter().filter_map(|p| if let Pending::Frame(f) = p { Some(f) } else { None }).collect();
        let latents: Vec<f32> = frames.iter().flat_map(|f| f.codes.iter().map(|&q| self.blob.dequantize(q))).collect();
        let n = frames.len();
        let recon = if n > 0 { self.decoder.run(&latents, n).map_err(DecodeError::Runtime)? } else { Vec::new() };
        let (window, channels) = (self.blob.window(), self.blob.channels());
        let dim = window * channels;
        if recon.len() != n * dim {
            return Err(DecodeError::Runtime(anyhow::anyhow!(
                "decoder returned {} values for {n} windows of {dim}",
                recon.len()
            )));
        }
        let mut windows = recon.chunks_exact(dim.max(1));
        for p in self.pending.drain(..) {
            match p {
                Pending::Frame(f) => {
                    let mut w = windows.next().expect("one window per frame").to_vec();
                    self.normalization.denormalize_in_place(&mut w);
                    let values = channels_first_to_interleaved(&w, channels);
                    let status =
                        if f.flags & FLAG_INPUT_SATURATED != 0 { SampleStatus::Saturated } else { SampleStatus::Ok };
                    sink.window(f.sample_index, window, Some(&values), status)?;
                    self.report.samples_written += window as u64;
                }
                Pending::Missing { first_sample, samples } => {
                    sink.window(first_sample, samples as usize, None, SampleStatus::Missing)?;
                    self.report.samples_written += samples;
                }
            }
        }
        Ok(sink.flush()?)
    }

    /// Ends the stream: a partial frame at the end is reported as truncated.
    pub fn finish(mut self, sink: &mut dyn ReconstructionSink) -> Result<DecodeReport, DecodeError> {
        if let Some(event) = self.frames.finish() {
            self.handle(event, sink)?;
        }
        self.flush(sink)?;
        Ok(self.report)
    }

    fn handle(&mut self, event: DecodeEvent, sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        match event {
            DecodeEvent::Frame(frame) => self.frame(frame, sink)?,
            DecodeEvent::Corrupt { kind, bytes } => {
                *self.report.corrupt.entry(kind).or_default() += 1;
                self.report.corrupt_bytes += bytes as u64;
            }
            DecodeEvent::Gap { expected, received, .. } => {
                self.report.frames_lost += u64::from(received.wrapping_sub(expected))
            }
            // The frame itself follows; its sample index decides what to do with it.
            DecodeEvent::OutOfOrder { .. } => {}
        }
        Ok(())
    }

    fn frame(&mut self, frame: Frame, sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        if frame.model_id != self.model_id {
            return Err(DecodeError::ForeignModel {
                sequence: frame.sequence,
                sample_index: frame.sample_index,
                found: frame.model_id,
                expected: self.model_id,
                model_name: self.model_name.clone(),
            });
        }
        if frame.codes.len() != self.blob.latent() {
            return Err(DecodeError::CodeCount {
                sequence: frame.sequence,
                found: frame.codes.len(),
                expected: self.blob.latent(),
                model_id: self.model_id,
            });
        }
        let window = self.blob.window() as u64;
        match self.next_sample {
            Some(_) if frame.flags & FLAG_STREAM_START != 0 && frame.sample_index == 0 => {
                self.report.restarts += 1;
            }
            Some(next) if frame.sample_index < next => {
                self.report.stale_frames_skipped += 1;
                return Ok(());
            }
            Some(next) if frame.sample_index > next => {
                let samples = frame.sample_index - next;
                let filled = samples <= MAX_FILLED_GAP;
                self.report.gaps.push(Gap { first_sample: next, samples, filled });
                self.report.missing_samples += samples;
                if filled {
                    self.pending.push_back(Pending::Missing { first_sample: next, samples });
                }
            }
            _ => {}
        }
        self.next_sample = Some(frame.sample_index + window);
        self.report.frames += 1;
        self.report.saturated_windows += u64::from(frame.flags & FLAG_INPUT_SATURATED != 0);
        self.pending.push_back(Pending::Frame(frame));
        if self.pending.len() >= self.batch {
            self.flush(sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::simulate::simulate;
    use crate::codec::sink::CollectSink;
    use crate::quantize::dense_blob;
    use funnel_artifacts::blob::model_id_of;

    const WINDOW: usize = 16;
    const LATENT: usize = 4;

    /// Output sample `t` of a window is latent `t % K`: deterministic and easy to check.
    struct RepeatLatents;

    impl Runtime for RepeatLatents {
        fn input_len(&self) -> usize {
            LATENT
        }

        fn output_len(&self) -> usize {
            WINDOW
        }

        fn run(&self, latents: &[f32], batch: usize) -> anyhow::Result<Vec<f32>> {
            Ok((0..batch).flat_map(|b| (0..WINDOW).map(move |t| latents[b * LATENT + t % LATENT])).collect())
        }
    }

    fn model() -> (Blob, Normalization) {
        dense_blob(WINDOW, LATENT)
    }

    /// Encoded frames of `n` windows, one `Vec` per frame.
    fn frames(blob: &Blob, n: usize) -> Vec<Vec<u8>> {
        let counts: Vec<i16> = (0..n * WINDOW).map(|i| (((i as f32) * 0.21).sin() * 300.0) as i16).collect();
        let bytes = simulate(blob, &counts).unwrap().bytes;
        bytes.split_inclusive(|&b| b == 0).map(<[u8]>::to_vec).collect()
    }

    fn decode(blob: &Blob, norm: &Normalization, stream: &[u8], chunk: usize) -> (CollectSink, DecodeReport) {
        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut d = StreamDecoder::new(blob, norm, &RepeatLatents, "test").unwrap().with_batch(3);
        for c in stream.chunks(chunk) {
            d.feed(c, &mut sink).unwrap();
        }
        let report = d.finish(&mut sink).unwrap();
        (sink, report)
    }

    #[test]
    fn damage_is_reported_exactly_and_everything_else_recovered() {
        let (blob, norm) = model();
        let frames = frames(&blob, 20);
        let (clean, clean_report) = decode(&blob, &norm, &frames.concat(), 1000);
        assert_eq!((clean_report.frames, clean_report.missing_samples, clean_report.corrupt_frames()), (20, 0, 0));
        assert_eq!(clean.status.len(), 20 * WINDOW);

        let mut damaged = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let mut f = f.clone();
            match i {
                3 => {
                    f.drain(4..7); // deleted bytes
                }
                5 => damaged.extend_from_slice(&f.clone()), // duplicated frame
                8 => f[6] ^= 0x40,                          // flipped bits
                19 => f.truncate(f.len() - 5),              // truncated at the end of the stream
                _ => {}
            }
            damaged.extend(f);
        }
        for chunk in [1, 7, 4096] {
            let (got, report) = decode(&blob, &norm, &damaged, chunk);
            assert_eq!(report.frames, 17, "chunk {chunk}"); // 20 sent, 3 damaged; the duplicate is skipped
            assert_eq!(report.frames_lost, 2);
            assert_eq!(
                report.gaps,
                vec![
                    Gap { first_sample: 3 * WINDOW as u64, samples: WINDOW as u64, filled: true },
                    Gap { first_sample: 8 * WINDOW as u64, samples: WINDOW as u64, filled: true }
                ]
            );
            assert_eq!(report.stale_frames_skipped, 1);
            assert_eq!(report.corrupt_frames(), 3, "{:?}", report.corrupt);
            assert_eq!(report.corrupt.get(&CorruptKind::Truncated), Some(&1));
            // Windows 0..19 are present or flagged; window 19 was cut off at the end.
            assert_eq!(got.status.len(), 19 * WINDOW);
            for w in 0..19 {
                let range = w * WINDOW..(w + 1) * WINDOW;
                if w == 3 || w == 8 {
                    assert!(got.status[range.clone()].iter().all(|&s| s == SampleStatus::Missing));
                    assert!(got.values[range].iter().all(|v| v.is_nan()), "missing samples carry no value");
                } else {
                    assert_eq!(got.values[range.clone()], clean.values[range], "window {w}");
                }
            }
        }
    }

    #[test]
    fn frames_of_another_model_are_refused_naming_both_ids() {
        let (blob, norm) = model();
        // Same structure, different weights → different id.
        let mut other = model().0.bytes().to_vec();
        let n = other.len();
        other[n - 40] ^= 1;
        let payload_len = n - funnel_shared::blob::HEADER_LEN - 4;
        let id = model_id_of(&other[funnel_shared::blob::HEADER_LEN..][..payload_len]);
        other[6..10].copy_from_slice(&id.0);
        let crc = funnel_shared::wire::FRAME_CRC.checksum(&other[..n - 4]);
        other[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let other_blob = Blob::from_bytes(other).unwrap();
        let foreign = frames(&other_blob, 2).concat();

        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut d = StreamDecoder::new(&blob, &norm, &RepeatLatents, "models/x").unwrap();
        let err = d.feed(&foreign, &mut sink).unwrap_err();
        assert!(matches!(err, DecodeError::ForeignModel { .. }), "{err}");
        let err = err.to_string();
        let ours = blob.model_id().to_string();
        assert!(err.contains(&id.to_string()) && err.contains(&ours) && err.contains("models/x"), "{err}");
    }

    #[test]
    fn a_restarted_device_is_reported_and_its_frames_kept() {
        let (blob, norm) = model();
        let run = frames(&blob, 3).concat();
        let (got, report) = decode(&blob, &norm, &[run.clone(), run].concat(), 64);
        assert_eq!((report.frames, report.restarts, report.stale_frames_skipped), (6, 1, 0));
        assert_eq!(got.status.len(), 6 * WINDOW);
    }

    #[test]
    fn a_decoder_of_another_shape_is_refused_before_any_frame() {
        struct Wide;
        impl Runtime for Wide {
            fn input_len(&self) -> usize {
                LATENT + 1
            }
            fn output_len(&self) -> usize {
                WINDOW
            }
            fn run(&self, _: &[f32], _: usize) -> anyhow::Result<Vec<f32>> {
                unreachable!("never run")
            }
        }
        let (blob, norm) = model();
        let e = StreamDecoder::new(&blob, &norm, &Wide, "models/x").err().unwrap();
        assert!(matches!(e, DecodeError::DecoderShape { input: 5, latent: 4, .. }), "{e}");
        assert!(e.to_string().contains("another model"), "{e}");
    }
}
