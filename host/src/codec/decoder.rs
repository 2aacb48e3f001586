//! From received bytes back to the signal: headers and frames through the resynchronising
//! [`FrameDecoder`], codes dequantized, the latent decoder run in batches, denormalized, and one
//! output row per sample; the frames of a bounded stream carry the samples themselves (coded
//! within the model's bound), which go out as they are. Missing windows stay empty (flagged),
//! never invented.

use std::collections::{BTreeMap, VecDeque};

use funnel_artifacts::data::{channels_first_to_interleaved, Normalization};
use funnel_artifacts::Blob;
use funnel_shared::stream::stream_layout;
use funnel_shared::wire::{
    CorruptKind, DataFrame, DecodeEvent, FrameDecoder, LockChange, ModelId, StreamHeader, WIRE_VERSION,
};

use super::seams::Seams;
use super::sink::{ReconstructionSink, SampleStatus};
use crate::runtime::Runtime;
use funnel_artifacts::card::SeamFilter;

/// Windows decoded together in one call of the latent decoder.
pub const DEFAULT_BATCH: usize = 64;
/// Missing rows a decode writes beyond four per decoded sample: a gap that would take the
/// missing rows past `MAX_FILLED_GAP + 4 × decoded samples` is reported but not written out as
/// rows, so a stream that claims far-away sample indices cannot make us write gigabytes.
pub const MAX_FILLED_GAP: u64 = 1 << 20;

/// A run of samples with no frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub first_sample: u64,
    pub samples: u64,
    /// False when the gap was not written out as empty rows (see [`MAX_FILLED_GAP`]).
    pub filled: bool,
}

/// Everything that happened to the stream, for the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// The stream decoded (`None`: no stream header was received).
    pub stream_id: Option<u8>,
    pub bytes: u64,
    /// Data frames decoded, and the windows they held.
    pub frames: u64,
    pub windows: u64,
    pub samples_written: u64,
    pub saturated_windows: u64,
    /// Stream headers received (of the decoded stream), and those no frame confirmed
    /// (repeated, late or bogus): ignored.
    pub headers: u64,
    pub ignored_headers: u64,
    /// Frames lost, known exactly from the frame numbers.
    pub frames_lost: u64,
    pub gaps: Vec<Gap>,
    pub missing_samples: u64,
    /// Missing samples written out as empty rows.
    pub missing_rows: u64,
    /// Unusable byte runs, by kind, and the bytes they held.
    pub corrupt: BTreeMap<CorruptKind, u64>,
    pub corrupt_bytes: u64,
    /// Times the device restarted (a new session on the decoded stream).
    pub restarts: u64,
    /// Frames of the followed stream in a session of another model: not decoded.
    pub foreign_frames: u64,
    /// Frames that passed their check but whose entropy-coded codes do not decode (a damaged
    /// frame the 16-bit check let through): their samples are a gap.
    pub undecodable_frames: u64,
    /// Other streams heard on the link, with their frames: not decoded here.
    pub other_streams: BTreeMap<u8, u64>,
    /// The sample index after the last row written.
    pub end_sample: Option<u64>,
    /// Reading was stopped by Ctrl-C (the output ends with an `interrupted` row).
    pub interrupted: bool,
}

impl DecodeReport {
    pub fn corrupt_runs(&self) -> u64 {
        self.corrupt.values().sum()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} bytes, {} frames ({} windows) decoded, {} samples written ({} saturated windows), {} stream header(s)\n",
            self.bytes, self.frames, self.windows, self.samples_written, self.saturated_windows, self.headers
        );
        s += &format!(
            "{} frames lost, {} samples missing in {} gap(s), {} unusable byte run(s) ({} bytes), {} restart(s), {} ignored header(s), {} frame(s) of another model skipped\n",
            self.frames_lost,
            self.missing_samples,
            self.gaps.len(),
            self.corrupt_runs(),
            self.corrupt_bytes,
            self.restarts,
            self.ignored_headers,
            self.foreign_frames
        );
        for (id, frames) in &self.other_streams {
            s += &format!("  stream {id} on the same link: {frames} frame(s), decoded separately (--stream {id})\n");
        }
        if self.undecodable_frames > 0 {
            s += &format!(
                "{} frame(s) passed their check but did not decode (damage the check missed): written as missing\n",
                self.undecodable_frames
            );
        }
        if self.headers == 0 && self.other_streams.is_empty() {
            s += &format!(
                "no stream header was received: nothing to decode (is this a Funnel stream of wire version {WIRE_VERSION}?)\n"
            );
        }
        if self.interrupted {
            s += "interrupted (Ctrl-C): everything received until then is decoded, the output ends with an `interrupted` row\n";
        }
        for (kind, n) in &self.corrupt {
            s += &format!("  unusable: {n} × {kind}\n");
        }
        for g in self.gaps.iter().take(20) {
            s += &format!(
                "  gap: samples {}..{} ({} samples){}\n",
                g.first_sample,
                g.first_sample + g.samples,
                g.samples,
                if g.filled { "" } else { " — not written as rows (more than the stream can prove)" }
            );
        }
        if self.gaps.len() > 20 {
            s += &format!("  … {} more gaps\n", self.gaps.len() - 20);
        }
        s
    }
}

enum Pending {
    Frame {
        frame: Box<DataFrame>,
        codes: Vec<i16>,
    },
    /// A bounded stream's frame: its samples, device counts `[T][C]`.
    Samples {
        frame: Box<DataFrame>,
        counts: Vec<i16>,
    },
    Missing {
        first_sample: u64,
        samples: u64,
    },
}

/// Why decoding stopped. Damaged bytes never stop it (they are counted in the
/// [`DecodeReport`]); a stream of another model, a decoder of the wrong shape, a failing runtime
/// or an output that cannot be written do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(
        "the stream (stream {stream_id}, session {session}) was made by model {found}, but --model {model_name} is \
         model {expected}: decode it with the model that made it"
    )]
    ForeignModel { stream_id: u8, session: u16, found: ModelId, expected: ModelId, model_name: String },
    #[error(
        "the stream header of model {model_id} declares windows of {window} samples × {channels} channel(s) with \
         {codes} codes (entropy coded: {entropy_coded}, bounded: {bounded}), but its blob makes {blob_window} × \
         {blob_channels} with {blob_codes} (entropy coded: {blob_entropy_coded}, bounded: {blob_bounded})"
    )]
    Layout {
        model_id: ModelId,
        window: u16,
        channels: u8,
        codes: u8,
        entropy_coded: bool,
        bounded: bool,
        blob_window: usize,
        blob_channels: usize,
        blob_codes: usize,
        blob_entropy_coded: bool,
        blob_bounded: bool,
    },
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

/// Decodes one model's stream from a byte stream into a [`ReconstructionSink`], running the
/// latent decoder `R` (any [`Runtime`]: tract, ONNX Runtime, candle, a test double).
///
/// It follows one stream of the link: the one chosen with [`StreamDecoder::with_stream`], else
/// the first whose header it receives. A stream of another model is refused
/// ([`DecodeError::ForeignModel`]); frames of other streams are counted per stream
/// ([`DecodeReport::other_streams`]), and frames of a later session of another model on the
/// followed stream are counted and skipped.
pub struct StreamDecoder<'d, R: Runtime + ?Sized> {
    frames: FrameDecoder,
    model_id: ModelId,
    model_name: String,
    blob: &'d Blob,
    normalization: &'d Normalization,
    decoder: &'d R,
    batch: usize,
    /// The stream being decoded: chosen, or the first heard.
    stream_id: Option<u8>,
    /// A header of the followed stream has been checked against the model.
    checked: bool,
    /// The followed stream's current session is of another model.
    foreign_session: bool,
    pending: VecDeque<Pending>,
    pending_windows: usize,
    seams: Seams,
    report: DecodeReport,
}

impl<'d, R: Runtime + ?Sized> StreamDecoder<'d, R> {
    /// `blob` identifies the model (streams of other models are refused); `decoder` is its
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
            stream_id: None,
            checked: false,
            foreign_session: false,
            pending: VecDeque::new(),
            pending_windows: 0,
            seams: Seams::new(None, blob.window(), blob.channels()),
            report: DecodeReport::default(),
        })
    }

    /// Smooths the steps where decoded windows meet (the model card's `seam_filter`); the last
    /// samples of each window are then written when the next window, a gap or the end arrives.
    pub fn with_seam_filter(mut self, filter: Option<SeamFilter>) -> Self {
        self.seams = Seams::new(filter, self.blob.window(), self.blob.channels());
        self
    }

    fn written(&mut self, (first, len): (u64, usize)) {
        self.report.samples_written += len as u64;
        self.report.end_sample = Some(first + len as u64);
    }

    /// Decodes stream `stream_id` of the link (without it: the first stream heard).
    pub fn with_stream(mut self, stream_id: u8) -> Self {
        self.stream_id = Some(stream_id);
        self
    }

    /// Windows decoded per runtime call (1 = lowest latency).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Consumes a chunk of received bytes (any size, split anywhere).
    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        self.report.bytes += chunk.len() as u64;
        let events: Vec<DecodeEvent> = self.frames.feed(chunk).collect();
        self.handle_all(events, sink)
    }

    fn handle_all(&mut self, events: Vec<DecodeEvent>, sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        for event in events {
            self.handle(event, sink)?;
        }
        Ok(())
    }

    /// Decodes and writes everything received so far.
    pub fn flush(&mut self, sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        let latents: Vec<f32> = self
            .pending
            .iter()
            .filter_map(|p| if let Pending::Frame { codes, .. } = p { Some(codes) } else { None })
            .flat_map(|codes| codes.iter().map(|&q| self.blob.dequantize(q)))
            .collect();
        let n = self.pending_windows;
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
        self.pending_windows = 0;
        let pending: Vec<Pending> = self.pending.drain(..).collect();
        for p in pending {
            match p {
                Pending::Samples { frame: f, counts } => {
                    // Exact samples (within the bound): no seam to smooth.
                    if let Some(run) = self.seams.release(sink)? {
                        self.written(run);
                    }
                    let status = if f.saturated { SampleStatus::Saturated } else { SampleStatus::Ok };
                    let scale = self.blob.counts_per_unit();
                    let values: Vec<f32> = counts.iter().map(|&c| f32::from(c) / scale).collect();
                    let samples = f.samples() as usize;
                    sink.window(f.sample_index, samples, Some(&values), status)?;
                    self.written((f.sample_index, samples));
                }
                Pending::Frame { frame: f, .. } => {
                    let status = if f.saturated { SampleStatus::Saturated } else { SampleStatus::Ok };
                    for w in 0..f.windows() {
                        let mut values = windows.next().expect("one window per window of codes").to_vec();
                        self.normalization.denormalize_in_place(&mut values);
                        let values = channels_first_to_interleaved(&values, channels);
                        let first = f.sample_index + (w * window) as u64;
                        // A last frame's last window may end early: the rest is the sender's padding.
                        let valid = (f.samples() - (w * window) as u64).min(window as u64) as usize;
                        let runs = match valid < window {
                            true => self.seams.last_window(sink, first, values, valid, status)?,
                            false => self.seams.window(sink, first, values, status)?,
                        };
                        for run in runs {
                            self.written(run);
                        }
                    }
                }
                Pending::Missing { first_sample, samples } => {
                    if let Some(run) = self.seams.release(sink)? {
                        self.written(run);
                    }
                    sink.window(first_sample, samples as usize, None, SampleStatus::Missing)?;
                    self.written((first_sample, samples as usize));
                }
            }
        }
        Ok(sink.flush()?)
    }

    /// Ends the stream: what is still buffered is decided (a cut-off frame is reported as
    /// truncated) and written.
    pub fn finish(mut self, sink: &mut dyn ReconstructionSink) -> Result<DecodeReport, DecodeError> {
        let events: Vec<DecodeEvent> = self.frames.finish().collect();
        self.handle_all(events, sink)?;
        self.flush(sink)?;
        if let Some(run) = self.seams.release(sink)? {
            self.written(run);
            sink.flush()?;
        }
        self.report.stream_id = self.stream_id;
        Ok(self.report)
    }

    fn handle(&mut self, event: DecodeEvent, sink: &mut dyn ReconstructionSink) -> Result<(), DecodeError> {
        match event {
            DecodeEvent::Header { header, lock } => self.header(&header, lock)?,
            DecodeEvent::Frame(frame) => {
                if Some(frame.stream_id) != self.stream_id {
                    *self.report.other_streams.entry(frame.stream_id).or_default() += 1;
                    return Ok(());
                }
                // Frames come only after their stream's header, which set `checked` (or refused).
                if self.foreign_session {
                    self.report.foreign_frames += 1;
                    return Ok(());
                }
                let (windows, saturated, bounded) = (frame.windows(), frame.saturated, frame.layout.bounded);
                let lost = funnel_shared::wire::Gap {
                    stream_id: frame.stream_id,
                    session: frame.session,
                    first_frame: frame.frame,
                    frames: 1,
                    first_sample: frame.sample_index,
                    samples: frame.samples(),
                };
                let decoded = match bounded {
                    true => self
                        .blob
                        .frame_samples(&frame)
                        .ok()
                        .map(|counts| Pending::Samples { frame: Box::new(frame), counts }),
                    false => {
                        self.blob.frame_codes(&frame).ok().map(|codes| Pending::Frame { frame: Box::new(frame), codes })
                    }
                };
                let Some(decoded) = decoded else {
                    self.report.undecodable_frames += 1;
                    return self.handle(DecodeEvent::Gap(lost), sink);
                };
                self.report.frames += 1;
                self.report.windows += windows as u64;
                self.report.saturated_windows += if saturated { windows as u64 } else { 0 };
                // A bounded frame needs no decoder: it goes out at once.
                self.pending_windows += if bounded { 0 } else { windows };
                self.pending.push_back(decoded);
                if self.pending_windows >= self.batch || bounded {
                    self.flush(sink)?;
                }
            }
            DecodeEvent::Gap(gap) => {
                if Some(gap.stream_id) != self.stream_id || self.foreign_session {
                    return Ok(());
                }
                self.report.frames_lost += u64::from(gap.frames);
                self.report.missing_samples += gap.samples;
                let decoded = self.report.windows * self.blob.window() as u64;
                let budget = MAX_FILLED_GAP.saturating_add(decoded.saturating_mul(4));
                let filled = self.report.missing_rows.saturating_add(gap.samples) <= budget;
                self.report.missing_rows += if filled { gap.samples } else { 0 };
                self.report.gaps.push(Gap { first_sample: gap.first_sample, samples: gap.samples, filled });
                if filled {
                    self.pending.push_back(Pending::Missing { first_sample: gap.first_sample, samples: gap.samples });
                }
            }
            DecodeEvent::Corrupt { kind, bytes } => {
                *self.report.corrupt.entry(kind).or_default() += 1;
                self.report.corrupt_bytes += bytes as u64;
            }
        }
        Ok(())
    }

    /// Whether `header` announces a stream this decoder can rebuild.
    fn check_header(&self, header: &StreamHeader) -> Result<(), DecodeError> {
        if header.model_id != self.model_id {
            return Err(DecodeError::ForeignModel {
                stream_id: header.stream_id,
                session: header.session,
                found: header.model_id,
                expected: self.model_id,
                model_name: self.model_name.clone(),
            });
        }
        let l = &header.layout;
        // What the model sends, at the frames' length the header declares.
        let sent = stream_layout(&self.blob.encoder(), l.windows_per_frame);
        let (codes, entropy_coded, bounded) = (usize::from(sent.codes_per_window), sent.entropy_coded, sent.bounded);
        if *l != sent {
            return Err(DecodeError::Layout {
                model_id: header.model_id,
                window: l.window,
                channels: l.channels,
                codes: l.codes_per_window,
                entropy_coded: l.entropy_coded,
                bounded: l.bounded,
                blob_window: self.blob.window(),
                blob_channels: self.blob.channels(),
                blob_codes: codes,
                blob_entropy_coded: entropy_coded,
                blob_bounded: bounded,
            });
        }
        Ok(())
    }

    fn header(&mut self, header: &StreamHeader, lock: LockChange) -> Result<(), DecodeError> {
        let followed = *self.stream_id.get_or_insert(header.stream_id);
        if followed != header.stream_id {
            self.report.other_streams.entry(header.stream_id).or_default();
            return Ok(());
        }
        // The followed stream's first header: refused loudly if it is not of this model.
        if !self.checked {
            self.check_header(header)?;
            self.checked = true;
        }
        self.report.headers += 1;
        match lock {
            LockChange::Ignored => self.report.ignored_headers += 1,
            LockChange::NewSession { .. } => {
                self.report.restarts += 1;
                // A session of another model on this stream mid-way: skipped and counted.
                self.foreign_session = self.check_header(header).is_err();
            }
            LockChange::Joined | LockChange::Continued => {}
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
    use crate::runtime::RepeatLatents;
    use funnel_shared::stream::StreamConfig;
    use funnel_shared::wire::{encode_frame, StreamLayout, CHECK_LEN, MAX_FRAME_LEN};

    const WINDOW: usize = 16;
    const LATENT: usize = 4;

    const DECODER: RepeatLatents = RepeatLatents { latent: LATENT, window: WINDOW };

    fn model() -> (Blob, Normalization) {
        dense_blob(WINDOW, LATENT)
    }

    /// [`model`] with one weight changed: same structure, another model id.
    fn other_model() -> Blob {
        Blob::from_bytes(crate::quantize::with_one_weight_changed(&model().0, true)).unwrap()
    }

    /// The items (stream headers and frames) a device sends for `n` windows, one `Vec` each.
    fn items(blob: &Blob, n: usize, config: StreamConfig) -> Vec<Vec<u8>> {
        let counts: Vec<i16> = (0..n * WINDOW).map(|i| (((i as f32) * 0.21).sin() * 300.0) as i16).collect();
        let bytes = simulate(blob, &counts, config).unwrap().bytes;
        // Entropy-coded frames start with their payload's length.
        let raw_len = usize::from(config.windows_per_frame) * LATENT + CHECK_LEN;
        let frame_len = |rest: &[u8]| match blob.code_tables() {
            Some(_) => 1 + usize::from(rest[0]) + CHECK_LEN,
            None => raw_len,
        };
        let mut rest = bytes.as_slice();
        let mut out = Vec::new();
        for f in 0..n / usize::from(config.windows_per_frame) {
            if f % usize::from(config.header_interval) == 0 {
                // The header's length less 16 is in its flags byte's bits 3 to 7.
                let len = 16 + usize::from(rest[3] >> 3);
                out.push(rest[..len].to_vec());
                rest = &rest[len..];
            }
            let len = frame_len(rest);
            out.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        assert!(rest.is_empty());
        out
    }

    const EVERY_4: StreamConfig = StreamConfig { header_interval: 4, ..StreamConfig::DEFAULT };

    fn decode(blob: &Blob, norm: &Normalization, stream: &[u8], chunk: usize) -> (CollectSink, DecodeReport) {
        decode_with(blob, norm, stream, chunk, None)
    }

    fn decode_with(
        blob: &Blob,
        norm: &Normalization,
        stream: &[u8],
        chunk: usize,
        seams: Option<SeamFilter>,
    ) -> (CollectSink, DecodeReport) {
        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut d = StreamDecoder::new(blob, norm, &DECODER, "test").unwrap().with_batch(3).with_seam_filter(seams);
        for c in stream.chunks(chunk) {
            d.feed(c, &mut sink).unwrap();
        }
        let report = d.finish(&mut sink).unwrap();
        (sink, report)
    }

    /// The seam filter changes values near window boundaries only, and only where two decoded
    /// windows meet: every sample is still written once, gaps and their accounting unchanged.
    #[test]
    fn the_seam_filter_keeps_every_sample_and_every_gap() {
        let (blob, norm) = model();
        let items = items(&blob, 12, EVERY_4);
        // Frame 5 lost: a gap between windows 4 and 6.
        let at = |f: usize| f + f / 4 + 1;
        let stream: Vec<u8> =
            items.iter().enumerate().filter(|&(i, _)| i != at(5)).flat_map(|(_, item)| item.clone()).collect();
        let filter = Some(SeamFilter { samples: 2, strength: 1.0 });
        for chunk in [1, 5, 4096] {
            let (plain, plain_report) = decode(&blob, &norm, &stream, chunk);
            let (smoothed, report) = decode_with(&blob, &norm, &stream, chunk, filter);
            assert_eq!(report.summary(), plain_report.summary(), "chunk {chunk}");
            assert_eq!((smoothed.status.clone(), smoothed.first_sample), (plain.status.clone(), plain.first_sample));
            assert_eq!(smoothed.values.len(), plain.values.len());
            for (t, (a, b)) in smoothed.values.iter().zip(&plain.values).enumerate() {
                let from_boundary = (t % WINDOW).min(WINDOW - t % WINDOW);
                // Only the 2 samples on each side of a boundary between two decoded windows move.
                let lost = (5 * WINDOW..6 * WINDOW).contains(&t);
                let near_gap = t.abs_diff(5 * WINDOW) <= 2 || t.abs_diff(6 * WINDOW) <= 2;
                if from_boundary > 2 || lost || near_gap || t < 2 || t + 2 >= 12 * WINDOW {
                    assert!(a == b || (a.is_nan() && b.is_nan()), "sample {t}: {a} vs {b}");
                }
            }
            let moved = smoothed.values.iter().zip(&plain.values).filter(|(a, b)| a != b && !a.is_nan()).count();
            assert!(moved > 0, "the filter smoothed the boundaries between decoded windows");
        }
    }

    #[test]
    fn damage_is_reported_exactly_and_everything_else_recovered() {
        let (blob, norm) = model();
        let items = items(&blob, 20, EVERY_4);
        let (clean, clean_report) = decode(&blob, &norm, &items.concat(), 1000);
        assert_eq!((clean_report.frames, clean_report.missing_samples, clean_report.corrupt_runs()), (20, 0, 0));
        assert_eq!(clean_report.headers, 5);
        assert_eq!(clean.status.len(), 20 * WINDOW);

        // Item index of frame f: one header before every 4 frames.
        let at = |f: usize| f + f / 4 + 1;
        let mut damaged = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let mut item = item.clone();
            if i == at(3) {
                item.drain(1..4); // deleted bytes
            } else if i == at(5) {
                damaged.extend_from_slice(&item); // sent twice
            } else if i == at(8) {
                item[2] ^= 0x40; // flipped bits
            } else if i == at(19) {
                item.truncate(item.len() - 3); // cut off at the end of the stream
            }
            damaged.extend(item);
        }
        for chunk in [1, 7, 4096] {
            let (got, report) = decode(&blob, &norm, &damaged, chunk);
            assert_eq!(report.frames, 17, "chunk {chunk}"); // 20 sent, 3 damaged; the repeat is refused
            assert_eq!(report.frames_lost, 2);
            assert_eq!(
                report.gaps,
                vec![
                    Gap { first_sample: 3 * WINDOW as u64, samples: WINDOW as u64, filled: true },
                    Gap { first_sample: 8 * WINDOW as u64, samples: WINDOW as u64, filled: true }
                ]
            );
            assert_eq!(report.corrupt_runs(), 4, "{:?}", report.corrupt);
            assert_eq!(report.corrupt.get(&CorruptKind::Crc), Some(&1)); // the flip
            assert_eq!(report.corrupt.get(&CorruptKind::Repeated), Some(&1));
            assert_eq!(report.corrupt.get(&CorruptKind::Truncated), Some(&1));
            assert_eq!(report.bytes as usize, damaged.len());
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
    fn claimed_gaps_become_rows_only_as_far_as_the_stream_can_prove() {
        let (blob, norm) = model();
        let layout = StreamLayout {
            channels: 1,
            codes_per_window: LATENT as u8,
            window: WINDOW as u16,
            windows_per_frame: 1,
            entropy_coded: true,
            bounded: false,
        };
        let header = StreamHeader {
            stream_id: 0,
            restart: true,
            model_id: blob.model_id(),
            session: 0,
            layout,
            header_interval: 1,
            frame: 0,
            start_sample: 0,
        };
        // 20 frames, each behind a valid header that claims 2^18 − 1 frames lost (2^22 samples).
        let mut stream = Vec::new();
        let mut buf = [0u8; MAX_FRAME_LEN];
        for k in 0..20u32 {
            let h = StreamHeader { frame: k << 18, restart: k == 0, ..header };
            stream.extend(h.encode());
            let n = encode_frame(&h, h.frame, false, &[0; 2 * LATENT], &mut buf).unwrap();
            stream.extend(&buf[..n]);
        }
        let (got, report) = decode(&blob, &norm, &stream, 100);
        assert_eq!((report.frames, report.gaps.len(), report.missing_rows), (20, 19, 0));
        assert_eq!(report.missing_samples, 19 * ((1 << 18) - 1) * WINDOW as u64);
        assert!(report.gaps.iter().all(|g| !g.filled));
        assert_eq!(got.status.len(), 20 * WINDOW, "only the decoded windows are written");
    }

    #[test]
    fn a_frame_that_checks_but_does_not_decode_is_a_gap() {
        let (blob, norm) = model();
        let mut items = items(&blob, 6, EVERY_4);
        // Frame 2 (item 3) replaced by a frame that checks under its number but whose payload
        // is no output of the coder (a zero top word): what a check collision would deliver.
        let header = StreamHeader {
            stream_id: 0,
            restart: true,
            model_id: blob.model_id(),
            session: 0,
            layout: StreamLayout {
                channels: 1,
                codes_per_window: LATENT as u8,
                window: WINDOW as u16,
                windows_per_frame: 1,
                entropy_coded: true,
                bounded: false,
            },
            header_interval: 4,
            frame: 0,
            start_sample: 0,
        };
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = encode_frame(&header, 2, false, &[0, 0], &mut buf).unwrap();
        items[3] = buf[..n].to_vec();
        let (got, report) = decode(&blob, &norm, &items.concat(), 9);
        assert_eq!((report.frames, report.undecodable_frames, report.frames_lost), (5, 1, 1));
        assert_eq!(report.gaps, vec![Gap { first_sample: 2 * WINDOW as u64, samples: WINDOW as u64, filled: true }]);
        assert!(got.status[2 * WINDOW..3 * WINDOW].iter().all(|&s| s == SampleStatus::Missing));
        assert!(report.summary().contains("did not decode"));
    }

    /// A stream that ends inside a frame, and inside a window, decodes to every sample it had:
    /// the device's last frame carries the rest, its padding is not written.
    #[test]
    fn the_end_of_a_stream_decodes_to_every_last_sample() {
        let (blob, norm) = model();
        assert!(blob.code_tables().is_some(), "the last frame needs an entropy-coded session");
        let samples = 10 * WINDOW + 5;
        let counts: Vec<i16> = (0..samples).map(|i| (((i as f32) * 0.21).sin() * 300.0) as i16).collect();
        let config = StreamConfig { windows_per_frame: 3, ..EVERY_4 };
        let sent = simulate(&blob, &counts, config).unwrap();
        assert_eq!((sent.windows, sent.frames, sent.dropped_samples), (11, 4, 0));
        // The same samples cut at the last whole window: the same values for those.
        let whole = simulate(&blob, &counts[..10 * WINDOW], config).unwrap();
        for filter in [None, Some(SeamFilter { samples: 2, strength: 1.0 })] {
            let (got, report) = decode_with(&blob, &norm, &sent.bytes, 7, filter);
            assert_eq!((report.frames, report.windows, report.missing_samples), (4, 11, 0));
            assert_eq!((got.values.len(), got.first_sample), (samples, Some(0)));
            assert!(got.status.iter().all(|&s| s == SampleStatus::Ok));
            let (cut, _) = decode_with(&blob, &norm, &whole.bytes, 7, filter);
            let smoothed = filter.map_or(0, |f| f.samples);
            let unchanged = 10 * WINDOW - smoothed;
            assert_eq!(got.values[..unchanged], cut.values[..unchanged]);
        }
    }

    #[test]
    fn several_windows_per_frame_decode_to_the_same_samples() {
        let (blob, norm) = model();
        let one = items(&blob, 12, StreamConfig::DEFAULT).concat();
        let three = items(&blob, 12, StreamConfig { windows_per_frame: 3, ..EVERY_4 }).concat();
        let (a, ra) = decode(&blob, &norm, &one, 5);
        let (b, rb) = decode(&blob, &norm, &three, 5);
        assert_eq!((ra.frames, rb.frames, rb.windows), (12, 4, 12));
        assert_eq!(a.values, b.values);
        assert_eq!(a.status, b.status);
    }

    #[test]
    fn frames_of_another_model_are_refused_naming_both_ids() {
        let (blob, norm) = model();
        let other_blob = other_model();
        let id = other_blob.model_id();
        let foreign = items(&other_blob, 2, StreamConfig::DEFAULT).concat();

        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut d = StreamDecoder::new(&blob, &norm, &DECODER, "models/x").unwrap();
        let err = d.feed(&foreign, &mut sink).unwrap_err();
        assert!(matches!(err, DecodeError::ForeignModel { .. }), "{err}");
        let err = err.to_string();
        let ours = blob.model_id().to_string();
        assert!(err.contains(&id.to_string()) && err.contains(&ours) && err.contains("models/x"), "{err}");
    }

    #[test]
    fn a_restarted_device_is_reported_and_its_frames_kept() {
        let (blob, norm) = model();
        let first = items(&blob, 3, EVERY_4).concat();
        let rebooted = items(&blob, 3, StreamConfig { session: 1, ..EVERY_4 }).concat();
        let (got, report) = decode(&blob, &norm, &[first, rebooted].concat(), 64);
        assert_eq!((report.frames, report.restarts, report.frames_lost), (6, 1, 0));
        assert_eq!(got.status.len(), 6 * WINDOW);
        assert_eq!(got.first_sample, Some(0));
    }

    #[test]
    fn a_session_of_another_model_mid_stream_is_skipped_and_counted() {
        let (blob, norm) = model();
        let other_blob = other_model();
        // Our model, then the same stream id restarted with another model, then ours again.
        let stream = [
            items(&blob, 4, EVERY_4).concat(),
            items(&other_blob, 4, StreamConfig { session: 1, ..EVERY_4 }).concat(),
            items(&blob, 4, StreamConfig { session: 2, ..EVERY_4 }).concat(),
        ]
        .concat();
        let (got, report) = decode(&blob, &norm, &stream, 16);
        assert_eq!((report.frames, report.foreign_frames, report.restarts), (8, 4, 2));
        assert_eq!(got.status.len(), 8 * WINDOW);
    }

    #[test]
    fn frames_of_another_stream_are_counted_not_mixed_in() {
        let (blob, norm) = model();
        let ours = items(&blob, 8, EVERY_4);
        let theirs = items(&blob, 8, StreamConfig { stream_id: 5, ..EVERY_4 });
        let stream: Vec<u8> = ours.iter().zip(&theirs).flat_map(|(a, b)| [a.clone(), b.clone()]).flatten().collect();
        let (got, report) = decode(&blob, &norm, &stream, 33);
        assert_eq!((report.frames, report.corrupt_runs()), (8, 0));
        assert_eq!(report.other_streams, BTreeMap::from([(5, 8)]));
        let (alone, _) = decode(&blob, &norm, &ours.concat(), 33);
        assert_eq!(got.values, alone.values);
        // The other stream, chosen, decodes on its own.
        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut d = StreamDecoder::new(&blob, &norm, &DECODER, "test").unwrap().with_stream(5);
        d.feed(&stream, &mut sink).unwrap();
        let report = d.finish(&mut sink).unwrap();
        assert_eq!((report.frames, report.other_streams.get(&0)), (8, Some(&8)));
        let (theirs_alone, _) = decode(&blob, &norm, &theirs.concat(), 33);
        assert_eq!(sink.values, theirs_alone.values);
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
