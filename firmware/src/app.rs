//! The device loop: samples into a window buffer, full windows into frames (behind a stream
//! header when one is due).

use core::fmt;

use embedded_io::Write;
use funnel_shared::blob::MAX_CHANNELS;
use funnel_shared::encoder::{EncodeError, QuantizedEncoder};
use funnel_shared::stream::{StreamConfig, StreamConfigError, StreamEncoder, MAX_WINDOW_OUTPUT};

use crate::bench_mark;

/// Where samples come from: one i16 count per channel per call, in the channel order the
/// model was trained on.
pub trait SampleSource {
    type Error: fmt::Debug;
    /// Fills `sample` (one value per channel). `Ok(false)` means the source is exhausted
    /// (a replayed recording ended); live sensors never return it.
    fn read(&mut self, sample: &mut [i16]) -> Result<bool, Self::Error>;
}

impl<T: SampleSource + ?Sized> SampleSource for &mut T {
    type Error = T::Error;
    fn read(&mut self, sample: &mut [i16]) -> Result<bool, Self::Error> {
        (**self).read(sample)
    }
}

/// Why the application refused to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The window buffer cannot hold one window (`needed` samples over all channels).
    BufferTooSmall { needed: usize, capacity: usize },
    /// The scratch buffer is smaller than the encoder needs.
    ScratchTooSmall { needed: usize, capacity: usize },
    /// The stream configuration does not fit this model.
    Stream(StreamConfigError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::BufferTooSmall { needed, capacity } => {
                write!(f, "window buffer holds {capacity} samples, a window of this model needs {needed}")
            }
            StartError::ScratchTooSmall { needed, capacity } => {
                write!(f, "scratch has {capacity} entries, this model needs {needed}")
            }
            StartError::Stream(e) => write!(f, "bad stream configuration: {e}"),
        }
    }
}

/// What went wrong while running.
#[derive(Debug)]
pub enum AppError<S, W> {
    Source(S),
    Sink(W),
    Encode(EncodeError),
}

// Display, not Debug, of the source's and sink's errors: derived `Debug` formatting costs a
// Cortex-M0 image kilobytes of flash.
impl<S: fmt::Display, W: fmt::Display> fmt::Display for AppError<S, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Source(e) => write!(f, "sample source failed: {e}"),
            AppError::Sink(e) => write!(f, "writing a frame failed: {e}"),
            AppError::Encode(e) => write!(f, "encoding failed: {e}"),
        }
    }
}

/// What one [`App::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Took a sample; the window is not full yet.
    Sampled,
    /// Took a sample that completed a window and encoded it; `bytes` were sent (0 while a
    /// frame of several windows is still filling).
    Encoded { bytes: usize },
    /// The source is exhausted; the windows of an unfilled frame and a partial window left in
    /// the buffer were sent as the session's last frame (entropy-coded sessions; the others have
    /// none and drop them, as `funnel encode` does).
    Finished,
}

/// Counters for the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub samples: u64,
    pub windows: u32,
    pub frames: u32,
    pub bytes: u64,
    /// Samples (time steps) read but not sent: in a session that is not entropy coded, those
    /// after the last full window and in windows of a frame that did not fill.
    pub dropped_tail: usize,
}

/// The application: `BUF` is the window buffer's capacity in i16 samples (at least one window
/// of all channels), `SCRATCH` the stream's i16 scratch, `BOUNDED` whether it can send a
/// bounded model's stream (without, the bounded path is not linked: see [`StreamEncoder`]),
/// `CODES` whether it can send codes (without, for a bounded model that sends its samples
/// alone, the network and the codes' coder are not linked).
/// Everything lives inside the struct: no heap, no statics.
pub struct App<'m, S, W, const BUF: usize, const SCRATCH: usize, const BOUNDED: bool = true, const CODES: bool = true> {
    source: S,
    sink: W,
    stream: StreamEncoder<'m, BOUNDED, CODES>,
    /// The window being filled: sent and emptied as soon as it is whole.
    buffer: heapless::Vec<i16, BUF>,
    scratch: [i16; SCRATCH],
    out: [u8; MAX_WINDOW_OUTPUT],
    window_samples: usize,
    channels: usize,
    summary: Summary,
}

impl<'m, S: SampleSource, W: Write, const BUF: usize, const SCRATCH: usize, const BOUNDED: bool, const CODES: bool>
    App<'m, S, W, BUF, SCRATCH, BOUNDED, CODES>
{
    /// Checks `config` and the buffer sizes against `encoder` (the model blob, validated by
    /// [`QuantizedEncoder::from_blob`]); the session starts at frame 0.
    ///
    /// The caller parses the blob, not `new`: parsing takes kilobytes of stack, and under
    /// `new`'s frame it made the peak of a device's stack (measured with `cargo xtask bench`
    /// and a bounded model, 15.6 KB; never inlined, so that what `new` builds its app from is
    /// not in its caller's frame either).
    #[inline(never)]
    pub fn new(encoder: QuantizedEncoder<'m>, config: StreamConfig, source: S, sink: W) -> Result<Self, StartError> {
        let window_samples = encoder.window() * encoder.channels();
        if window_samples > BUF {
            return Err(StartError::BufferTooSmall { needed: window_samples, capacity: BUF });
        }
        let channels = encoder.channels();
        let stream = StreamEncoder::new(encoder, config).map_err(StartError::Stream)?;
        let scratch = stream.scratch_len();
        if scratch > SCRATCH {
            return Err(StartError::ScratchTooSmall { needed: scratch, capacity: SCRATCH });
        }
        Ok(App {
            source,
            sink,
            stream,
            buffer: heapless::Vec::new(),
            scratch: [0; SCRATCH],
            out: [0; MAX_WINDOW_OUTPUT],
            window_samples,
            channels,
            summary: Summary::default(),
        })
    }

    pub fn encoder(&self) -> &QuantizedEncoder<'m> {
        self.stream.encoder()
    }

    /// The scratch the model needs, of the `SCRATCH` the app has.
    pub fn scratch_len(&self) -> usize {
        self.stream.scratch_len()
    }

    pub fn summary(&self) -> Summary {
        let unsent = self.stream.pending_windows() * self.stream.encoder().window();
        Summary { dropped_tail: self.buffer.len() / self.channels.max(1) + unsent, ..self.summary }
    }

    /// Reads one sample (all channels); when that completes a window, encodes and sends it.
    pub fn step(&mut self) -> Result<Step, AppError<S::Error, W::Error>> {
        let mut sample = [0i16; MAX_CHANNELS];
        let sample = &mut sample[..self.channels];
        if !self.source.read(sample).map_err(AppError::Source)? {
            self.send_end()?;
            return Ok(Step::Finished);
        }
        self.summary.samples += 1;
        for &v in sample.iter() {
            // Cannot fail: the buffer is emptied whenever it holds a window, and BUF >= window.
            let _ = self.buffer.push(v);
        }
        if self.buffer.len() < self.window_samples {
            return Ok(Step::Sampled);
        }
        let bytes = self.send_window()?;
        Ok(Step::Encoded { bytes })
    }

    /// Runs until the source is exhausted (forever for live sensors).
    pub fn run(&mut self) -> Result<Summary, AppError<S::Error, W::Error>> {
        while self.step()? != Step::Finished {}
        self.sink.flush().map_err(AppError::Sink)?;
        Ok(self.summary())
    }

    fn send_window(&mut self) -> Result<usize, AppError<S::Error, W::Error>> {
        let n = self.window_samples;
        bench_mark();
        let encoded =
            self.stream.encode_window(&self.buffer[..n], &mut self.scratch, &mut self.out).map_err(AppError::Encode)?;
        bench_mark();
        let len = encoded.len;
        self.sink.write_all(&self.out[..len]).map_err(AppError::Sink)?;
        self.buffer.clear();
        self.summary.windows += 1;
        self.summary.frames += u32::from(len > 0);
        self.summary.bytes += len as u64;
        bench_mark();
        Ok(len)
    }

    /// Sends what is left when the source ends (windows of an unfilled frame, a partial window
    /// in the buffer) as the session's last frame, if the session has one.
    fn send_end(&mut self) -> Result<(), AppError<S::Error, W::Error>> {
        if !self.stream.header().layout.entropy_coded {
            return Ok(());
        }
        let samples = self.buffer.len() / self.channels.max(1);
        // The buffer holds less than a window and BUF >= window: the padding fits.
        let _ = self.buffer.resize(self.window_samples, 0);
        let partial = &mut self.buffer[..self.window_samples];
        let encoded =
            self.stream.finish(partial, samples, &mut self.scratch, &mut self.out).map_err(AppError::Encode)?;
        self.buffer.clear();
        self.sink.write_all(&self.out[..encoded.len]).map_err(AppError::Sink)?;
        self.summary.windows += u32::from(samples > 0);
        self.summary.frames += u32::from(encoded.len > 0);
        self.summary.bytes += encoded.len as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::test_support::*;
    use std::vec::Vec;

    #[test]
    fn frames_match_the_host_stream_encoder_byte_for_byte() {
        let blob = tiny_blob(16, 2);
        let samples: Vec<i16> = (0..16 * 2 * 5 + 2 * 7).map(|i| ((i * 7919) % 4001) as i16 - 2000).collect();
        let mut sink = Vec::new();
        let mut app: App<'_, _, _, 64, 256> =
            App::new(encoder(&blob), StreamConfig::DEFAULT, VecSource::new(&samples, 2), &mut sink).unwrap();
        let summary = app.run().unwrap();
        assert_eq!(
            summary,
            Summary { samples: 16 * 5 + 7, windows: 5, frames: 5, bytes: sink.len() as u64, dropped_tail: 7 }
        );
        assert_eq!(sink, host_frames(&blob, StreamConfig::DEFAULT, &samples));
    }

    #[test]
    fn several_windows_per_frame_and_frequent_headers_match_the_host_too() {
        let blob = tiny_blob(16, 1);
        let samples: Vec<i16> = (0..16 * 11 + 3).map(|i| ((i * 7919) % 4001) as i16 - 2000).collect();
        let config =
            StreamConfig { stream_id: 2, session: 99, windows_per_frame: 3, header_interval: 2, start_sample: 5 };
        let mut sink = Vec::new();
        let mut app: App<'_, _, _, 16, 256> =
            App::new(encoder(&blob), config, VecSource::new(&samples, 1), &mut sink).unwrap();
        let summary = app.run().unwrap();
        // 11 windows: 3 frames of 3, two windows and 3 samples left over.
        assert_eq!((summary.windows, summary.frames, summary.dropped_tail), (11, 3, 2 * 16 + 3));
        assert_eq!(sink, host_frames(&blob, config, &samples));
    }

    #[test]
    fn the_end_of_the_source_goes_out_in_a_last_frame_as_funnel_encode_sends_it() {
        let blob = tiny_blob_coded(16, 2);
        // 7 windows and 5 samples: two frames of 3 windows, then a last frame of one window and
        // 5 samples.
        let samples: Vec<i16> = (0..(16 * 7 + 5) * 2).map(|i| ((i * 7919) % 4001) as i16 - 2000).collect();
        let config = StreamConfig { windows_per_frame: 3, ..StreamConfig::DEFAULT };
        let mut sink = Vec::new();
        let mut app: App<'_, _, _, 64, 256> =
            App::new(encoder(&blob), config, VecSource::new(&samples, 2), &mut sink).unwrap();
        let summary = app.run().unwrap();
        assert_eq!((summary.windows, summary.frames, summary.dropped_tail), (8, 3, 0));
        // A source that is asked again after its end sends nothing more.
        assert_eq!(app.step().unwrap(), Step::Finished);
        assert_eq!(app.summary(), summary);
        drop(app);
        assert_eq!(sink, host_frames(&blob, config, &samples));
        // The receiver reads the last frame's sample count: nothing of the source is lost.
        let mut dec = funnel_shared::wire::FrameDecoder::new();
        let mut events: Vec<_> = dec.feed(&sink).collect();
        events.extend(dec.finish());
        let samples_sent: u64 = events
            .iter()
            .filter_map(|e| if let funnel_shared::wire::DecodeEvent::Frame(f) = e { Some(f.samples()) } else { None })
            .sum();
        assert_eq!(samples_sent, 16 * 7 + 5);
    }

    #[test]
    fn a_buffer_larger_than_a_window_gives_the_same_bytes() {
        let blob = tiny_blob(16, 1);
        let samples: Vec<i16> = (0..16 * 9).map(|i| (i * 37 % 300) as i16).collect();
        let mut sink = Vec::new();
        let mut app: App<'_, _, _, 48, 256> =
            App::new(encoder(&blob), StreamConfig::DEFAULT, VecSource::new(&samples, 1), &mut sink).unwrap();
        app.run().unwrap();
        assert_eq!(sink, host_frames(&blob, StreamConfig::DEFAULT, &samples));
    }

    #[test]
    fn extreme_samples_never_panic_and_are_flagged() {
        let blob = tiny_blob(16, 1);
        let samples: Vec<i16> = (0..16 * 4).map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
        let mut sink = Vec::new();
        let mut app: App<'_, _, _, 16, 256> =
            App::new(encoder(&blob), StreamConfig::DEFAULT, VecSource::new(&samples, 1), &mut sink).unwrap();
        assert_eq!(app.run().unwrap().frames, 4);
        let mut dec = funnel_shared::wire::FrameDecoder::new();
        let mut events: Vec<_> = dec.feed(&sink).collect();
        events.extend(dec.finish());
        let frames: Vec<_> = events
            .iter()
            .filter_map(|e| if let funnel_shared::wire::DecodeEvent::Frame(f) = e { Some(f) } else { None })
            .collect();
        assert_eq!(frames.len(), 4);
        assert!(frames.iter().all(|f| f.saturated));
        assert!(matches!(events[0], funnel_shared::wire::DecodeEvent::Header { header, .. } if header.restart));
    }

    #[test]
    fn small_buffers_and_bad_stream_configurations_refuse_to_start() {
        let blob = tiny_blob(16, 1);
        let sink: Vec<u8> = Vec::new();
        assert!(matches!(
            App::<_, _, 8, 256>::new(encoder(&blob), StreamConfig::DEFAULT, VecSource::new(&[], 1), sink.clone()),
            Err(StartError::BufferTooSmall { needed: 16, capacity: 8 })
        ));
        assert!(matches!(
            App::<_, _, 16, 4>::new(encoder(&blob), StreamConfig::DEFAULT, VecSource::new(&[], 1), sink.clone()),
            Err(StartError::ScratchTooSmall { capacity: 4, .. })
        ));
        let config = StreamConfig { windows_per_frame: 0, ..StreamConfig::DEFAULT };
        let err = App::<_, _, 16, 256>::new(encoder(&blob), config, VecSource::new(&[], 1), sink).err().unwrap();
        assert!(matches!(err, StartError::Stream(StreamConfigError::WindowsPerFrame { requested: 0, .. })));
        assert!(std::format!("{err}").starts_with("bad stream configuration: "));
    }

    #[test]
    fn sink_errors_are_reported() {
        let blob = tiny_blob(16, 1);
        let samples = [0i16; 16];
        let mut app: App<'_, _, _, 16, 256> =
            App::new(encoder(&blob), StreamConfig::DEFAULT, VecSource::new(&samples, 1), FailingSink).unwrap();
        assert!(matches!(app.run(), Err(AppError::Sink(_))));
    }
}
