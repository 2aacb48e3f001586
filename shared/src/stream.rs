//! From a stream of samples to the bytes on the link: the part of the device loop that decides
//! what is sent when (stream headers, frame numbers, flags, several windows per frame). The
//! firmware and `funnel encode` both go through [`StreamEncoder`], which is why their byte
//! streams are identical.

use crate::encoder::{EncodeError, QuantizedEncoder};
use crate::entropy::CodeTables;
use crate::residual::{residual_bins, ResidualSpec};
use crate::wire::{
    encode_frame_in_place, StreamHeader, StreamLayout, MAX_BOUNDED_SAMPLES, MAX_FRAME_BODY, MAX_FRAME_CODES,
    MAX_FRAME_LEN, MAX_HEADER_LEN, MAX_START_SAMPLE, PAYLOAD_IN_PLACE_AT,
};

/// Converts a physical value (e.g. mV) to device counts, the way the device's ADC scaling is
/// described by the blob's `counts_per_unit`: rounded half away from zero, saturating at the
/// i16 range, NaN → 0. Only the host uses it (to replay recordings); the device reads counts.
pub fn to_counts(value: f32, counts_per_unit: f32) -> i16 {
    let scaled = value * counts_per_unit;
    let rounded = if scaled >= 0.0 { scaled + 0.5 } else { scaled - 0.5 };
    // `as` saturates at the i16 bounds and maps NaN to 0.
    rounded as i16
}

/// How a device sends one stream (see `docs/wire-format.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Which stream of the device this is.
    pub stream_id: u8,
    /// Identifies this run of the device; change it at every restart.
    pub session: u16,
    /// Windows sent together in one data frame (one check for all).
    pub windows_per_frame: u8,
    /// A stream header precedes every frame whose number is a multiple of this.
    pub header_interval: u8,
    /// Sample index of the first sample of the session.
    pub start_sample: u64,
}

impl StreamConfig {
    /// Stream 0, session 0, one window per frame, a header every 64 frames, from sample 0.
    pub const DEFAULT: StreamConfig =
        StreamConfig { stream_id: 0, session: 0, windows_per_frame: 1, header_interval: 64, start_sample: 0 };
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a [`StreamConfig`] does not fit a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamConfigError {
    /// `windows_per_frame` is 0 or makes a frame of more than [`MAX_FRAME_CODES`] codes (a
    /// bounded stream: [`MAX_BOUNDED_SAMPLES`] samples).
    WindowsPerFrame { requested: u8, max: usize },
    /// `header_interval` is 0.
    HeaderInterval,
    /// `start_sample` is above [`MAX_START_SAMPLE`].
    StartSample,
    /// The model is bounded and the encoder was built without the bounded path.
    Bounded,
    /// The model's stream carries codes and the encoder was built without the network.
    Codes,
}

impl core::fmt::Display for StreamConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StreamConfigError::WindowsPerFrame { requested, max } => {
                write!(f, "{requested} windows per frame: this model allows 1 to {max}")
            }
            StreamConfigError::HeaderInterval => f.write_str("the header interval must be at least 1 frame"),
            StreamConfigError::StartSample => write!(f, "the start sample must be at most {MAX_START_SAMPLE}"),
            StreamConfigError::Bounded => {
                f.write_str("the model is bounded, and this encoder was built without bounded streams")
            }
            StreamConfigError::Codes => f.write_str(
                "the model's stream carries codes, and this encoder was built for bounded streams of samples alone",
            ),
        }
    }
}

impl core::error::Error for StreamConfigError {}

/// Writes the payload of a data frame holding `codes` (whole windows, at most
/// [`MAX_FRAME_CODES`]) into `out`; returns its length and whether a code was clipped. With
/// `tables` (an entropy-coded session) the payload is the codes entropy coded when that is
/// shorter than their raw form (the receiver tells the two apart by the length), else the raw
/// codes as i16 little-endian: every code travels as it is, one beyond its table escaped. A
/// session without tables sends the raw codes one int8 byte each: a code outside the int8
/// range is clipped to it, and the caller flags the frame saturated.
pub fn frame_payload(tables: Option<CodeTables<'_>>, codes: &[i16], out: &mut [u8; MAX_FRAME_BODY]) -> (usize, bool) {
    let n = codes.len().min(MAX_FRAME_CODES);
    let Some(tables) = tables else {
        let mut clipped = false;
        for (o, &c) in out.iter_mut().zip(&codes[..n]) {
            let raw = c.clamp(i8::MIN.into(), i8::MAX.into());
            clipped |= raw != c;
            *o = raw as i8 as u8;
        }
        return (n, clipped);
    };
    let raw = 2 * n;
    let coded = tables.encode(&codes[..n], &mut out[..raw.saturating_sub(1)]).ok();
    let len = coded.unwrap_or_else(|| {
        for (o, &c) in out.chunks_exact_mut(2).zip(&codes[..n]) {
            o.copy_from_slice(&c.to_le_bytes());
        }
        raw
    });
    (len, false)
}

/// What a bounded frame of a model with an integer decoder sends besides its bins: the codes
/// of its windows (window after window), with the tables that code them, and the decoder's
/// rebuild of those codes (channel after channel, as the samples), the base its residuals are
/// taken against.
#[derive(Clone, Copy, Debug)]
pub struct LatentBase<'t, 'v> {
    pub tables: CodeTables<'t>,
    pub codes: &'v [i16],
    pub base: &'v [i16],
}

/// Writes the payload of a bounded frame of `values` (its samples, channel after channel, in
/// segments of `segment` samples; replaced by what the receiver rebuilds when the coded form is
/// not shorter) into `out`; returns its length: the samples coded with `residual` (behind the
/// latent codes, against their rebuild, with `latent`), or, when that is not shorter than their
/// raw form, the rebuilt samples as i16 little-endian (within the bound as well).
pub fn bounded_payload(
    residual: &ResidualSpec<'_>,
    values: &mut [i16],
    segment: usize,
    latent: Option<LatentBase<'_, '_>>,
    out: &mut [u8; MAX_FRAME_BODY],
) -> usize {
    let n = values.len().min(MAX_BOUNDED_SAMPLES);
    let values = &mut values[..n];
    let raw = 2 * n;
    let base = latent.map(|l| l.base);
    // Making the bins fails only for a spec or layout a validated blob cannot have: the samples
    // then go raw as they are.
    // `out` holds the adaptive stage's bins while they are chosen: the payload comes after.
    if let Ok(adapted) = residual_bins(residual.quantizer(), base, values, segment, &mut out[..]) {
        let codes = latent.map(|l| (l.tables, l.codes));
        if let Ok(len) = residual.code_bins(values, adapted, segment, codes, &mut out[..raw.saturating_sub(1)]) {
            return len;
        }
        // Coding fails only for want of room: rebuilding the bins cannot fail.
        let _ = residual.rebuild(base, values, segment, adapted);
    }
    write_raw(values, out)
}

/// Writes `values` as i16 little-endian into `out`; returns the length.
fn write_raw(values: &[i16], out: &mut [u8]) -> usize {
    for (o, v) in out.chunks_exact_mut(2).zip(values) {
        o.copy_from_slice(&v.to_le_bytes());
    }
    2 * values.len()
}

/// The codes of the windows of a bounded frame's samples (`values`, channel `c`'s `m` samples
/// at `c × span`; a last window that `m` cuts short is completed with copies of each channel's
/// last sample, as a stream's last window is) into `codes`, window after window; `scratch`
/// holds a window and the encoder's scratch.
fn frame_codes(
    encoder: &QuantizedEncoder<'_>,
    values: &[i16],
    span: usize,
    m: usize,
    scratch: &mut [i16],
    codes: &mut [i16],
) -> Result<(), EncodeError> {
    let (window, channels, k) = (encoder.window(), encoder.channels(), encoder.code_len());
    let (samples, scratch) = scratch.split_at_mut(window * channels);
    for (w, codes) in codes.chunks_exact_mut(k).enumerate() {
        for (i, sample) in samples.iter_mut().enumerate() {
            let (t, c) = (i / channels, i % channels);
            *sample = values[c * span + (w * window + t).min(m - 1)];
        }
        encoder.encode(samples, scratch, codes)?;
    }
    Ok(())
}

/// The integer decoder's rebuild of a bounded frame's windows from their `codes` (window after
/// window), `m` samples per channel, into `base` (`m × channels`, channel after channel, as the
/// samples travel); `scratch` holds a window and the decoder's scratch. The sender and the
/// receiver both call it: that is what makes their bases equal.
pub fn latent_base(
    encoder: &QuantizedEncoder<'_>,
    codes: &[i16],
    m: usize,
    scratch: &mut [i16],
    base: &mut [i16],
) -> Result<(), EncodeError> {
    let (window, channels, k) = (encoder.window(), encoder.channels(), encoder.code_len());
    let decoder = encoder.decoder().ok_or(EncodeError::CodesLength { expected: 0, found: codes.len() })?;
    if codes.len() != m.div_ceil(window) * k {
        return Err(EncodeError::CodesLength { expected: m.div_ceil(window) * k, found: codes.len() });
    }
    if base.len() != m * channels {
        return Err(EncodeError::WindowLength { expected: m * channels, found: base.len() });
    }
    let Some((rebuilt, scratch)) = scratch.split_at_mut_checked(window * channels) else {
        return Err(EncodeError::ScratchTooSmall { needed: window * channels, found: scratch.len() });
    };
    for (w, codes) in codes.chunks_exact(k).enumerate() {
        decoder.decode(codes, scratch, rebuilt)?;
        for (i, &x) in rebuilt.iter().enumerate() {
            let (t, c) = (w * window + i / channels, i % channels);
            if t < m {
                base[c * m + t] = x;
            }
        }
    }
    Ok(())
}

/// The layout of the streams `encoder`'s model sends, `windows_per_frame` windows to a frame:
/// what its stream headers declare, and what a receiver holding the model expects of them.
pub fn stream_layout(encoder: &QuantizedEncoder<'_>, windows_per_frame: u8) -> StreamLayout {
    let bounded = encoder.spec().residual.is_some();
    // A bounded stream sends codes only when the model rebuilds them in integers.
    let codes = if bounded && encoder.spec().decoder.is_none() { 0 } else { encoder.code_len() };
    // Blob validation bounds these: at most 16 channels, 64 codes, a u16 window.
    StreamLayout {
        channels: encoder.channels() as u8,
        codes_per_window: codes as u8,
        window: encoder.window() as u16,
        windows_per_frame,
        entropy_coded: bounded || encoder.spec().tables.is_some(),
        bounded,
    }
}

/// Most bytes one [`StreamEncoder::encode_window`] call writes: a header and a frame.
pub const MAX_WINDOW_OUTPUT: usize = MAX_HEADER_LEN + MAX_FRAME_LEN;
// `send` makes the payload in the output, behind a header, where the frame will move it from.
const _: () = assert!(MAX_HEADER_LEN + PAYLOAD_IN_PLACE_AT + MAX_FRAME_BODY <= MAX_WINDOW_OUTPUT);

/// What one [`StreamEncoder::encode_window`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Bytes written to send: 0 while a frame is still filling.
    pub len: usize,
    /// A sample of this window saturated the input quantizer, or a code of the frame it
    /// completes had to be clipped to travel raw (see [`frame_payload`]).
    pub saturated: bool,
}

/// What a frame of either kind of stream buffers: its windows' codes, or a bounded frame's
/// samples.
const FRAME_VALUES: usize = crate::wire::max(MAX_FRAME_CODES, MAX_BOUNDED_SAMPLES);

/// Encodes consecutive windows of one stream into headers and data frames: the windows' latent
/// codes, or, when the model has a residual coder (a bounded stream), the samples themselves
/// coded within its bound.
///
/// `BOUNDED = false` builds an encoder without the bounded path, which then costs no flash (a
/// firmware whose model has no residual coder needs none: 3 KB on a Cortex-M); it refuses a
/// bounded model ([`StreamConfigError::Bounded`]). `CODES = false` builds one without the
/// network and the codes' coder, for a bounded model that sends its samples alone
/// ([`stream_layout`] gives it no codes per window), which is then all it accepts
/// ([`StreamConfigError::Codes`]).
#[derive(Clone, Debug)]
pub struct StreamEncoder<'m, const BOUNDED: bool = true, const CODES: bool = true> {
    encoder: QuantizedEncoder<'m>,
    /// The session's header; `frame` is the number of the frame being filled.
    header: StreamHeader,
    /// The frame's codes, window after window; in a bounded stream its samples, channel after
    /// channel (channel `c`'s at `c × frame_span`).
    values: heapless::Vec<i16, FRAME_VALUES>,
    /// Windows in the frame being filled.
    pending: usize,
    saturated: bool,
    next_sample_index: u64,
    /// The scratch the stream's windows need ([`stream_scratch_len`]: worked out once, not
    /// per window).
    scratch_len: usize,
}

/// The i16 scratch a stream of `encoder`'s model needs: the encoder's
/// ([`QuantizedEncoder::scratch_len`], which parses the decoder of a bounded model that sends
/// codes), or none for a bounded stream of samples alone, which runs no network.
pub fn stream_scratch_len(encoder: &QuantizedEncoder<'_>) -> usize {
    match stream_layout(encoder, 1).codes_per_window {
        0 => 0,
        _ => encoder.scratch_len(),
    }
}

impl<'m, const BOUNDED: bool, const CODES: bool> StreamEncoder<'m, BOUNDED, CODES> {
    /// A session starting at frame 0 (its first header flagged `RESTART`).
    pub fn new(encoder: QuantizedEncoder<'m>, config: StreamConfig) -> Result<Self, StreamConfigError> {
        let bounded = encoder.spec().residual.is_some();
        if bounded && !BOUNDED {
            return Err(StreamConfigError::Bounded);
        }
        let layout = stream_layout(&encoder, config.windows_per_frame);
        let codes = usize::from(layout.codes_per_window);
        if codes > 0 && !CODES {
            return Err(StreamConfigError::Codes);
        }
        let header = StreamHeader {
            stream_id: config.stream_id,
            restart: true,
            model_id: encoder.model_id(),
            session: config.session,
            layout,
            header_interval: config.header_interval,
            frame: 0,
            start_sample: config.start_sample,
        };
        let most_codes = MAX_FRAME_CODES / codes.max(1);
        let max = match bounded {
            true => (MAX_BOUNDED_SAMPLES / (encoder.window() * encoder.channels()).max(1)).min(most_codes),
            false => most_codes,
        }
        .min(u8::MAX.into());
        if config.windows_per_frame == 0 || usize::from(config.windows_per_frame) > max {
            return Err(StreamConfigError::WindowsPerFrame { requested: config.windows_per_frame, max });
        }
        if config.header_interval == 0 {
            return Err(StreamConfigError::HeaderInterval);
        }
        if config.start_sample > MAX_START_SAMPLE {
            return Err(StreamConfigError::StartSample);
        }
        debug_assert!(header.is_valid());
        let scratch_len = stream_scratch_len(&encoder);
        Ok(StreamEncoder {
            encoder,
            header,
            values: heapless::Vec::new(),
            pending: 0,
            saturated: false,
            next_sample_index: config.start_sample,
            scratch_len,
        })
    }

    pub fn encoder(&self) -> &QuantizedEncoder<'m> {
        &self.encoder
    }

    /// The i16 scratch [`Self::encode_window`] and [`Self::finish`] need ([`stream_scratch_len`],
    /// worked out when the stream was made: in a bounded stream with codes it parses the
    /// decoder, so a device sizes its scratch with this).
    pub fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// The current session's header (its `frame`: the frame being filled).
    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    /// Sample index (per channel) of the next window.
    pub fn next_sample_index(&self) -> u64 {
        self.next_sample_index
    }

    /// Windows encoded but not sent yet: they wait for their frame to fill.
    pub fn pending_windows(&self) -> usize {
        self.pending
    }

    /// Whether this stream sends samples within a bound (known false at compile time without
    /// `BOUNDED`, so that the bounded path is not linked, and true without `CODES`, so that
    /// the network is not: `new` accepts only a bounded model then).
    fn bounded(&self) -> bool {
        !CODES || (BOUNDED && self.header.layout.bounded)
    }

    /// Puts the first `samples` samples of `window` (`[T][C]` counts) at the place of the
    /// frame's window `self.pending` (bounded streams); returns whether one is at an end of the
    /// i16 range.
    fn put_samples(&mut self, window: &[i16], samples: usize) -> bool {
        let layout = self.header.layout;
        let (span, channels) = (layout.frame_span() as usize, usize::from(layout.channels));
        if self.values.is_empty() {
            // Fits: the layout holds at most MAX_BOUNDED_SAMPLES.
            let _ = self.values.resize(span * channels, 0);
        }
        let at = self.pending * usize::from(layout.window);
        let mut extreme = false;
        for (t, sample) in window.chunks_exact(channels).take(samples).enumerate() {
            for (c, &v) in sample.iter().enumerate() {
                self.values[c * span + at + t] = v;
                extreme |= v == i16::MIN || v == i16::MAX;
            }
        }
        extreme
    }

    /// Encodes the next window (`[T][C]` counts). When it completes a frame, writes the frame to
    /// `out`, behind a stream header when one is due, and returns their length.
    pub fn encode_window(
        &mut self,
        samples: &[i16],
        scratch: &mut [i16],
        out: &mut [u8; MAX_WINDOW_OUTPUT],
    ) -> Result<Encoded, EncodeError> {
        let saturated = if self.bounded() {
            let expected = self.encoder.window() * self.encoder.channels();
            if samples.len() != expected {
                return Err(EncodeError::WindowLength { expected, found: samples.len() });
            }
            let needed = self.scratch_len;
            if scratch.len() < needed {
                return Err(EncodeError::ScratchTooSmall { needed, found: scratch.len() });
            }
            self.put_samples(samples, self.encoder.window())
        } else {
            self.push_codes(samples, scratch)?
        };
        self.pending += 1;
        self.saturated |= saturated;
        self.next_sample_index += self.encoder.window() as u64;
        let encoded = Encoded { len: 0, saturated };
        if self.pending < usize::from(self.header.layout.windows_per_frame) {
            return Ok(encoded);
        }
        let (len, clipped) = self.send(None, scratch, out);
        Ok(Encoded { len, saturated: encoded.saturated || clipped })
    }

    /// Ends the stream (entropy-coded sessions): sends the windows still waiting for their frame
    /// and the first `samples` samples of `partial` (`[T][C]` counts of a window that the stream
    /// ended in, `samples` below the window; the rest of it is overwritten with copies of each
    /// channel's last sample) as the session's last frame, behind a header when one is due.
    /// Writes nothing when nothing is left, or when the session is not entropy coded (it has no
    /// last frame: what is left is not sent, see [`StreamEncoder::pending_windows`]). A window
    /// encoded after this starts a new session.
    pub fn finish(
        &mut self,
        partial: &mut [i16],
        samples: usize,
        scratch: &mut [i16],
        out: &mut [u8; MAX_WINDOW_OUTPUT],
    ) -> Result<Encoded, EncodeError> {
        let (window, channels) = (self.encoder.window(), self.encoder.channels());
        let nothing = Encoded { len: 0, saturated: false };
        if samples >= window {
            return Err(EncodeError::PartialWindow { samples, window });
        }
        if !self.header.layout.entropy_coded {
            return Ok(nothing);
        }
        let needed = self.scratch_len;
        if self.bounded() && scratch.len() < needed {
            return Err(EncodeError::ScratchTooSmall { needed, found: scratch.len() });
        }
        let mut report_saturated = false;
        if samples > 0 {
            let Some(partial) = partial.get_mut(..window * channels) else {
                return Err(EncodeError::WindowLength { expected: window * channels, found: partial.len() });
            };
            if self.bounded() {
                report_saturated = self.put_samples(partial, samples);
            } else {
                report_saturated = self.encode_partial(partial, samples, scratch)?;
            }
            self.pending += 1;
            self.saturated |= report_saturated;
        }
        let whole = (self.pending - usize::from(samples > 0)) * window;
        if whole + samples == 0 {
            return Ok(nothing);
        }
        self.next_sample_index += samples as u64;
        // At most a frame's span, which a u24 holds (a u16 window, at most 255 windows).
        let (len, clipped) = self.send(Some((whole + samples) as u32), scratch, out);
        // Nothing follows a last frame in its session (`send` began a new one after frame 2^32 − 1).
        if !self.header.restart {
            self.next_session();
        }
        Ok(Encoded { len, saturated: report_saturated || clipped })
    }

    /// Encodes the first `samples` samples of `partial` (one window's length), completed with
    /// copies of each channel's last sample, as the frame's next window; returns whether its
    /// input saturated.
    fn encode_partial(
        &mut self,
        partial: &mut [i16],
        samples: usize,
        scratch: &mut [i16],
    ) -> Result<bool, EncodeError> {
        let channels = self.encoder.channels();
        {
            let (kept, padding) = partial.split_at_mut(samples * channels);
            let last = &kept[kept.len() - channels..];
            padding.chunks_exact_mut(channels).for_each(|p| p.copy_from_slice(last));
        }
        self.push_codes(partial, scratch)
    }

    /// Encodes `window` and puts its codes behind the frame's; returns whether its input
    /// saturated. On an error the frame is as it was.
    fn push_codes(&mut self, window: &[i16], scratch: &mut [i16]) -> Result<bool, EncodeError> {
        let filled = self.values.len();
        // Fits: new() checked windows_per_frame × code_len <= MAX_FRAME_CODES, and a frame is
        // sent as soon as it fills.
        let _ = self.values.resize(filled + self.encoder.code_len(), 0);
        match self.encoder.encode(window, scratch, &mut self.values[filled..]) {
            Ok(report) => Ok(report.input_saturated),
            Err(e) => {
                self.values.truncate(filled);
                Err(e)
            }
        }
    }

    /// The payload of the frame being filled, `samples` samples per channel (its span unless it
    /// is the last), into `out`; returns its length and whether a code was clipped.
    fn payload(&mut self, samples: usize, scratch: &mut [i16], out: &mut [u8; MAX_FRAME_BODY]) -> (usize, bool) {
        let spec = self.encoder.spec();
        let residual = match spec.residual.filter(|_| BOUNDED) {
            Some(residual) => residual,
            None if CODES => return frame_payload(spec.tables, &self.values, out),
            // Never: without `CODES`, `new` accepted a bounded model only (and so that the
            // codes' coder is not linked, its frames are not made as codes here).
            None => return (self.raw_samples(samples, out), false),
        };
        if let (Some(tables), 1.., true) = (self.encoder.spec().tables, self.header.layout.codes_per_window, CODES) {
            return (self.latent_payload(&residual, tables, samples, scratch, out), false);
        }
        self.gather(samples);
        let n = samples * usize::from(self.header.layout.channels);
        (bounded_payload(&residual, &mut self.values[..n], samples, None, out), false)
    }

    /// [`Self::payload`] of a bounded frame that carries its windows' codes: the codes, their
    /// integer rebuild, then the payload.
    // A function of its own, never inlined, so that its 3 KB of codes and base take stack only
    // in a firmware whose model sends codes in bounded frames (measured with `cargo xtask
    // bench`: inlined, the default model's peak stack grew from 12.6 to 16.5 KB).
    #[inline(never)]
    fn latent_payload(
        &mut self,
        residual: &ResidualSpec<'_>,
        tables: CodeTables<'_>,
        samples: usize,
        scratch: &mut [i16],
        out: &mut [u8; MAX_FRAME_BODY],
    ) -> usize {
        let layout = self.header.layout;
        let span = layout.frame_span() as usize;
        let n = samples * usize::from(layout.channels);
        let mut codes = [0i16; MAX_FRAME_CODES];
        let mut base = [0i16; MAX_BOUNDED_SAMPLES];
        let windows = samples.div_ceil(usize::from(layout.window));
        let codes = &mut codes[..windows * usize::from(layout.codes_per_window)];
        let made = frame_codes(&self.encoder, &self.values, span, samples, scratch, codes)
            .and_then(|()| latent_base(&self.encoder, codes, samples, scratch, &mut base[..n]));
        if made.is_err() {
            // Only for a scratch shorter than the encoder checked it was: send raw.
            return self.raw_samples(samples, out);
        }
        self.gather(samples);
        let latent = LatentBase { tables, codes, base: &base[..n] };
        bounded_payload(residual, &mut self.values[..n], samples, Some(latent), out)
    }

    /// Moves a last frame's `samples` samples per channel up behind each other, channel after
    /// channel (a whole frame's already are).
    fn gather(&mut self, samples: usize) {
        let layout = self.header.layout;
        let span = layout.frame_span() as usize;
        for c in 1..usize::from(layout.channels) {
            self.values.copy_within(c * span..c * span + samples, c * samples);
        }
    }

    /// The frame's samples raw, `samples` per channel, into `out`; returns the length.
    fn raw_samples(&mut self, samples: usize, out: &mut [u8; MAX_FRAME_BODY]) -> usize {
        self.gather(samples);
        let n = samples * usize::from(self.header.layout.channels);
        write_raw(&self.values[..n], out)
    }

    /// Sends the codes waiting as the frame being filled (the last one, with its sample count,
    /// when `end` has it) behind a header when one is due; returns the bytes written and whether
    /// a code was clipped. The payload is made in `out`, where the frame goes (a buffer of its
    /// own was 2 KB of a device's stack).
    fn send(&mut self, end: Option<u32>, scratch: &mut [i16], out: &mut [u8; MAX_WINDOW_OUTPUT]) -> (usize, bool) {
        let frame = self.header.frame;
        let mut len = 0;
        if frame % u32::from(self.header.header_interval) == 0 {
            let header = self.header.encode();
            out[..header.len()].copy_from_slice(&header);
            len = header.len();
        }
        let samples = end.map_or(self.header.layout.frame_span() as usize, |n| n as usize);
        let payload = out[len + PAYLOAD_IN_PLACE_AT..]
            .first_chunk_mut()
            .expect("MAX_WINDOW_OUTPUT holds a header and a payload at PAYLOAD_IN_PLACE_AT");
        let (payload_len, clipped) = self.payload(samples, scratch, payload);
        self.saturated |= clipped;
        len += encode_frame_in_place(&self.header, frame, self.saturated, end, payload_len, &mut out[len..])
            .expect("a frame fits MAX_WINDOW_OUTPUT behind a header");
        self.values.clear();
        self.pending = 0;
        self.saturated = false;
        self.header.restart = false;
        match frame.checked_add(1) {
            Some(next) => self.header.frame = next,
            // 2^32 frames: a new session goes on where this one stopped.
            None => self.next_session(),
        }
        (len, clipped)
    }

    /// Starts a new session where this one stopped.
    fn next_session(&mut self) {
        self.header.session = self.header.session.wrapping_add(1);
        self.header.start_sample = self.next_sample_index.min(MAX_START_SAMPLE);
        self.header.frame = 0;
        self.header.restart = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::tests::tiny_blob;

    proptest::proptest! {
        /// A bounded stream, from windows through the link to the receiver's samples: every
        /// sample sent comes back within the bound (E′ = 0: exactly), the end of the stream
        /// included, at its sample index; frames with a sample at an end of the i16 range are
        /// flagged; with the samples alone or with latent codes and a dense or a conv decoder.
        #[test]
        fn a_bounded_stream_rebuilds_every_sample_within_its_bound(
            samples in proptest::collection::vec(
                proptest::prop_oneof![proptest::prelude::any::<i16>(), -40i16..40, proptest::prelude::Just(i16::MAX)],
                0..200,
            ),
            max_error in proptest::prop_oneof![proptest::prelude::Just(0u16), 1u16..300],
            windows_per_frame in 1u8..=4,
            prediction in proptest::collection::vec(-6000i16..6000, 0..=2),
            // 0: the samples alone; 1: codes and a dense decoder; 2: codes and a conv decoder.
            decoding in 0u8..3,
        ) {
            use crate::blob::EncoderSpec;
            use crate::decoder::tests::{decoder_bytes, TinyConvDecoder, TinyDecoder};
            use crate::encoder::tests::{blob_bytes, TinyModel};
            use crate::entropy::tests::OwnedTables;
            use crate::residual::tests::Owned;
            let owned = Owned::with_tables(
                &prediction,
                &[8],
                &[(-1, std::vec![100, 3000, 900, 96]), (-3, std::vec![16, 200, 800, 2064, 800, 200, 16]), (-10, std::vec![186; 21].into_iter().chain([190]).collect())],
            );
            // With `latent`, the frames carry the codes (most of them escaped by these narrow
            // tables) and the residuals are taken against the integer decoder's rebuild.
            let (model, latent) = (TinyModel::new(), decoding > 0);
            let code_tables = OwnedTables::new(&[(-2, std::vec![1000, 2096, 1000]), (3, std::vec![2000, 96, 2000])]);
            let spec = EncoderSpec { residual: Some(owned.spec(max_error)), ..model.spec() };
            let (dense, conv) = (TinyDecoder::new(), TinyConvDecoder::new());
            let decoder = decoder_bytes(&if decoding == 2 { conv.spec() } else { dense.spec() });
            let spec = match latent {
                true => EncoderSpec { tables: Some(code_tables.tables()), decoder: Some(crate::blob::U8s::new(&decoder).unwrap()), ..spec },
                false => spec,
            };
            let blob = blob_bytes(&spec);
            let encoder = QuantizedEncoder::from_blob(&blob).unwrap();
            let (window, channels) = (encoder.window(), encoder.channels());
            let config = StreamConfig { windows_per_frame, header_interval: 3, start_sample: 1000, ..StreamConfig::DEFAULT };
            let mut stream = StreamEncoder::<true>::new(encoder.clone(), config).unwrap();
            let k = if latent { 2 } else { 0 };
            proptest::prop_assert!(stream.header().layout.bounded && stream.header().layout.codes_per_window == k);
            // Samples alone, the stream runs no network and needs no scratch.
            let needed = stream.scratch_len();
            proptest::prop_assert_eq!(needed, if latent { encoder.scratch_len() } else { 0 });
            let mut scratch = std::vec![0i16; needed];
            if latent {
                proptest::prop_assert_eq!(
                    stream.encode_window(&[0; 16], &mut scratch[..needed - 1], &mut [0; MAX_WINDOW_OUTPUT]).unwrap_err(),
                    EncodeError::ScratchTooSmall { needed, found: needed - 1 }
                );
            }
            // An encoder built without the network (`CODES = false`, what a firmware of a
            // model that sends its samples alone links) sends the same bytes, and refuses a
            // model whose stream carries codes.
            let without_codes = StreamEncoder::<true, false>::new(encoder.clone(), config);
            proptest::prop_assert_eq!(without_codes.as_ref().err(), latent.then_some(&StreamConfigError::Codes));
            let mut without_codes = without_codes.ok();
            let mut out = [0u8; MAX_WINDOW_OUTPUT];
            let mut other_out = [0u8; MAX_WINDOW_OUTPUT];
            let mut bytes = std::vec::Vec::new();
            let whole = samples.len() / (window * channels) * window * channels;
            for w in samples[..whole].chunks(window * channels) {
                let encoded = stream.encode_window(w, &mut scratch, &mut out).unwrap();
                proptest::prop_assert_eq!(encoded.saturated, w.iter().any(|&v| v == i16::MIN || v == i16::MAX));
                bytes.extend_from_slice(&out[..encoded.len]);
                if let Some(s) = without_codes.as_mut() {
                    let other = s.encode_window(w, &mut [], &mut other_out).unwrap();
                    proptest::prop_assert_eq!((other, &other_out[..other.len]), (encoded, &out[..encoded.len]));
                }
            }
            let rest = (samples.len() - whole) / channels;
            let mut partial = std::vec![0i16; window * channels];
            partial[..rest * channels].copy_from_slice(&samples[whole..whole + rest * channels]);
            let mut other_partial = partial.clone();
            let encoded = stream.finish(&mut partial, rest, &mut scratch, &mut out).unwrap();
            bytes.extend_from_slice(&out[..encoded.len]);
            if let Some(s) = without_codes.as_mut() {
                let other = s.finish(&mut other_partial, rest, &mut [], &mut other_out).unwrap();
                proptest::prop_assert_eq!((other, &other_out[..other.len]), (encoded, &out[..encoded.len]));
            }
            let sent = &samples[..whole + rest * channels];
            let mut rebuilt = std::vec::Vec::new();
            let residual = owned.spec(max_error);
            for frame in received(&bytes) {
                let m = frame.samples() as usize;
                proptest::prop_assert_eq!(frame.sample_index, 1000 + (rebuilt.len() / channels) as u64);
                let mut values = std::vec![0i16; m * channels];
                if frame.entropy_coded && latent {
                    let mut codes = std::vec![0i16; m.div_ceil(window) * 2];
                    let adapted = residual.read_bins(&frame.payload, Some((code_tables.tables(), &mut codes)), m, &mut values).unwrap();
                    let mut base = std::vec![0i16; m * channels];
                    latent_base(&encoder, &codes, m, &mut scratch, &mut base).unwrap();
                    residual.rebuild(Some(&base), &mut values, m, adapted).unwrap();
                } else if frame.entropy_coded {
                    residual.decode(&frame.payload, None, m, &mut values).unwrap();
                } else {
                    values.iter_mut().zip(frame.payload.chunks(2)).for_each(|(v, p)| *v = i16::from_le_bytes([p[0], p[1]]));
                }
                let interleaved: std::vec::Vec<i16> = (0..m * channels).map(|i| values[(i % channels) * m + i / channels]).collect();
                let input = &sent[rebuilt.len()..rebuilt.len() + m * channels];
                proptest::prop_assert_eq!(frame.saturated, input.iter().any(|&v| v == i16::MIN || v == i16::MAX));
                rebuilt.extend(interleaved);
            }
            proptest::prop_assert_eq!(rebuilt.len(), sent.len());
            for (x, r) in sent.iter().zip(&rebuilt) {
                proptest::prop_assert!(x.abs_diff(*r) <= max_error, "{} rebuilt as {}, bound {}", x, r, max_error);
            }
        }
    }

    #[test]
    fn counts_round_half_away_and_saturate() {
        assert_eq!(to_counts(0.0125, 200.0), 3); // 2.5 -> 3
        assert_eq!(to_counts(-0.0125, 200.0), -3);
        assert_eq!(to_counts(1.0e9, 200.0), i16::MAX);
        assert_eq!(to_counts(-1.0e9, 200.0), i16::MIN);
        assert_eq!(to_counts(f32::NAN, 200.0), 0);
    }

    /// Decodes `bytes` with the receiver: the data frames, checking nothing was corrupt.
    fn received(bytes: &[u8]) -> std::vec::Vec<crate::wire::DataFrame> {
        use crate::wire::{DecodeEvent, FrameDecoder};
        let mut d = FrameDecoder::new();
        let mut events: std::vec::Vec<DecodeEvent> = d.feed(bytes).collect();
        events.extend(d.finish());
        assert!(!events.iter().any(|e| matches!(e, DecodeEvent::Corrupt { .. } | DecodeEvent::Gap(_))), "{events:?}");
        events.into_iter().filter_map(|e| if let DecodeEvent::Frame(f) = e { Some(f) } else { None }).collect()
    }

    extern crate std;

    #[test]
    fn windows_become_frames_with_headers_where_due_and_saturation_flagged() {
        let blob = tiny_blob();
        let encoder = QuantizedEncoder::from_blob(&blob).unwrap();
        let (window, channels) = (encoder.window(), encoder.channels());
        let config =
            StreamConfig { stream_id: 7, session: 3, windows_per_frame: 2, header_interval: 2, start_sample: 1000 };
        let mut stream = StreamEncoder::<true>::new(encoder.clone(), config).unwrap();
        let mut scratch = [0i16; 256];
        let mut out = [0u8; MAX_WINDOW_OUTPUT];
        let n = window * channels;
        let (quiet, loud) = ([0i16; 64], [i16::MAX; 64]);
        let mut bytes = std::vec::Vec::new();
        let mut lens = std::vec::Vec::new();
        for w in 0..9 {
            let samples = if w == 3 { &loud[..n] } else { &quiet[..n] };
            let e = stream.encode_window(samples, &mut scratch, &mut out).unwrap();
            assert_eq!(e.saturated, w == 3);
            bytes.extend_from_slice(&out[..e.len]);
            lens.push(e.len);
        }
        let frame_len = 2 * encoder.code_len() + 2;
        // Frames 0..4 complete at windows 1, 3, 5, 7; headers before frames 0 and 2, of 16
        // bytes, the frame number in one varint byte, the start sample (1000) in two, the CRC.
        let header = 16 + 1 + 2 + 4;
        assert_eq!(lens, [0, header + frame_len, 0, frame_len, 0, header + frame_len, 0, frame_len, 0]);
        assert_eq!(stream.pending_windows(), 1);
        assert_eq!(stream.next_sample_index(), 1000 + 9 * window as u64);
        let frames = received(&bytes);
        let got: std::vec::Vec<_> =
            frames.iter().map(|f| (f.stream_id, f.session, f.frame, f.sample_index, f.saturated)).collect();
        let span = 2 * window as u64;
        assert_eq!(
            got,
            [
                (7, 3, 0, 1000, false),
                (7, 3, 1, 1000 + span, true),
                (7, 3, 2, 1000 + 2 * span, false),
                (7, 3, 3, 1000 + 3 * span, false)
            ]
        );
        let mut codes = [0i16; 64];
        encoder.encode(&quiet[..n], &mut scratch, &mut codes[..encoder.code_len()]).unwrap();
        let raw: std::vec::Vec<u8> = codes[..encoder.code_len()].iter().map(|&c| c as i8 as u8).collect();
        assert_eq!(&frames[0].payload[..encoder.code_len()], &raw[..]);
        assert_eq!(frames[0].model_id, encoder.model_id());
    }

    #[test]
    fn entropy_coded_frames_carry_every_code_as_it_is_escaped_or_raw() {
        use crate::encoder::tests::tiny_blob_coded;
        use crate::entropy::tests::OwnedTables;
        let plain = tiny_blob();
        let encoder = QuantizedEncoder::from_blob(&plain).unwrap();
        let (window, channels) = (encoder.window(), encoder.channels());
        let n = window * channels;
        let mut scratch = [0i16; 256];
        // Six quiet windows, then six busy ones.
        let windows: std::vec::Vec<std::vec::Vec<i16>> = (0..12)
            .map(|w| (0..n).map(|i| if w < 6 { 0 } else { ((w * 97 + i * 31) % 400) as i16 - 200 }).collect())
            .collect();
        let (mut codes, mut input_saturated) = (std::vec::Vec::new(), std::vec::Vec::new());
        for w in &windows {
            let mut c = [0i16; 2];
            input_saturated.push(encoder.encode(w, &mut scratch, &mut c).unwrap().input_saturated);
            codes.extend_from_slice(&c);
        }
        // Latent 0's table ends below its largest code (which is escaped, or its frame raw);
        // both favour the quiet window's codes, so that quiet frames code short.
        let max0 = codes.iter().step_by(2).copied().max().unwrap();
        let lo0 = codes.iter().step_by(2).copied().min().unwrap().min(max0 - 3);
        let span0 = (max0 - lo0) as usize;
        let favour = |f: &mut std::vec::Vec<u16>, at: usize| {
            let spare = (crate::entropy::TOTAL as usize - f.len()) as u16;
            let last = f.len() - 1;
            f[at.min(last)] += spare;
        };
        let mut f0 = std::vec![1u16; span0];
        favour(&mut f0, (codes[0] - lo0) as usize);
        // Latent 1's table is the quiet code and its two escapes: every other code is escaped.
        let owned = OwnedTables::new(&[(lo0, f0), (codes[1] - 1, std::vec![1, 4094, 1])]);
        let coded = tiny_blob_coded(owned.tables());
        let encoder = QuantizedEncoder::from_blob(&coded).unwrap();
        let config = StreamConfig { windows_per_frame: 3, ..StreamConfig::DEFAULT };
        let mut stream = StreamEncoder::<true>::new(encoder.clone(), config).unwrap();
        assert!(stream.header().layout.entropy_coded);
        let mut out = [0u8; MAX_WINDOW_OUTPUT];
        let mut bytes = std::vec::Vec::new();
        for (w, samples) in windows.iter().enumerate() {
            let e = stream.encode_window(samples, &mut scratch, &mut out).unwrap();
            assert_eq!(e.saturated, input_saturated[w], "window {w}");
            bytes.extend_from_slice(&out[..e.len]);
        }
        let frames = received(&bytes);
        assert_eq!(frames.len(), 4);
        for (f, frame) in frames.iter().enumerate() {
            let want = &codes[6 * f..6 * f + 6];
            let mut got = [0i16; 6];
            if frame.entropy_coded {
                owned.tables().decode(&frame.payload, &mut got).unwrap();
            } else {
                assert_eq!(frame.payload.len(), 12);
                got.iter_mut().zip(frame.payload.chunks(2)).for_each(|(g, p)| *g = i16::from_le_bytes([p[0], p[1]]));
            }
            assert_eq!(got, want, "frame {f}: every code as the encoder made it");
            assert_eq!(frame.saturated, (0..3).any(|w| input_saturated[3 * f + w]));
        }
        assert!(codes.iter().step_by(2).any(|&c| c == max0), "a code beyond its table was sent");
        assert!(frames.iter().any(|f| !f.entropy_coded), "busy frames do not code shorter: raw");
        assert!(frames.iter().any(|f| f.entropy_coded), "quiet ones are entropy coded");
    }

    #[test]
    fn the_end_of_a_stream_goes_in_a_last_frame_and_a_new_session_follows() {
        use crate::encoder::tests::tiny_blob_coded;
        use crate::entropy::tests::OwnedTables;
        let owned = OwnedTables::new(&[(-40, std::vec![16; 256]), (-40, std::vec![16; 256])]);
        let coded = tiny_blob_coded(owned.tables());
        let encoder = QuantizedEncoder::from_blob(&coded).unwrap();
        let (window, channels) = (encoder.window(), encoder.channels());
        let n = window * channels;
        let mut scratch = [0i16; 256];
        let mut out = [0u8; MAX_WINDOW_OUTPUT];
        let sample = |t: usize, c: usize| ((t * 37 + c * 11) % 300) as i16 - 150;
        let config = StreamConfig { windows_per_frame: 3, session: 9, ..StreamConfig::DEFAULT };
        // 4 windows and 5 samples: one whole frame, then a last frame of 2 windows, 13 samples.
        let samples: std::vec::Vec<i16> =
            (0..4 * window + 5).flat_map(|t| (0..channels).map(move |c| sample(t, c))).collect();
        let mut stream = StreamEncoder::<true>::new(encoder.clone(), config).unwrap();
        let mut bytes = std::vec::Vec::new();
        let mut want = std::vec::Vec::new();
        for w in samples.chunks_exact(n) {
            let e = stream.encode_window(w, &mut scratch, &mut out).unwrap();
            bytes.extend_from_slice(&out[..e.len]);
            let mut c = [0i16; 2];
            encoder.encode(w, &mut scratch, &mut c).unwrap();
            want.extend_from_slice(&c);
        }
        let rest = samples.chunks_exact(n).remainder();
        let mut partial = std::vec![0i16; n];
        partial[..rest.len()].copy_from_slice(rest);
        let e = stream.finish(&mut partial, 5, &mut scratch, &mut out).unwrap();
        assert!(e.len > 0);
        bytes.extend_from_slice(&out[..e.len]);
        // The padding repeats the last sample of each channel.
        let mut padded = rest.to_vec();
        (5..window).for_each(|_| padded.extend_from_slice(&rest[rest.len() - channels..]));
        assert_eq!(partial, padded);
        let mut c = [0i16; 2];
        encoder.encode(&padded, &mut scratch, &mut c).unwrap();
        want.extend_from_slice(&c);
        // Nothing is left: finishing again sends nothing.
        assert_eq!(stream.finish(&mut partial, 0, &mut scratch, &mut out).unwrap().len, 0);
        // A window after the end starts a new session where the stream stopped.
        assert_eq!(stream.next_sample_index(), (4 * window + 5) as u64);
        assert!(stream.header().restart);
        assert_eq!((stream.header().session, stream.header().start_sample), (10, (4 * window + 5) as u64));

        let frames = received(&bytes);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].end_samples, frames[0].windows()), (None, 3));
        let last = &frames[1];
        assert_eq!((last.end_samples, last.windows(), last.samples()), (Some(window as u32 + 5), 2, window as u64 + 5));
        let mut got = std::vec![0i16; 10];
        let (head, tail) = got.split_at_mut(6);
        for (frame, into) in frames.iter().zip([head, tail]) {
            if frame.entropy_coded {
                owned.tables().decode(&frame.payload, into).unwrap();
            } else {
                into.iter_mut().zip(frame.payload.chunks(2)).for_each(|(g, p)| *g = i16::from_le_bytes([p[0], p[1]]));
            }
        }
        assert_eq!(got, want, "every window, the padded one last");

        // Without tables a session has no last frame: the end stays behind.
        let plain = tiny_blob();
        let mut stream = StreamEncoder::<true>::new(QuantizedEncoder::from_blob(&plain).unwrap(), config).unwrap();
        stream.encode_window(&samples[..n], &mut scratch, &mut out).unwrap();
        assert_eq!(stream.finish(&mut partial, 5, &mut scratch, &mut out).unwrap().len, 0);
        assert_eq!(stream.pending_windows(), 1);
        // A partial window shorter than a window is refused, not read past.
        let mut stream = StreamEncoder::<true>::new(encoder, config).unwrap();
        let refused = stream.finish(&mut partial[..n - 1], 5, &mut scratch, &mut out);
        assert_eq!(refused, Err(EncodeError::WindowLength { expected: n, found: n - 1 }));
        // So is a "partial" window as long as a window: it is not the end of a stream.
        let refused = stream.finish(&mut partial, window, &mut scratch, &mut out);
        assert_eq!(refused, Err(EncodeError::PartialWindow { samples: window, window }));
        assert_eq!(stream.pending_windows(), 0);
    }

    #[test]
    fn raw_frames_clip_to_int8_only_without_tables() {
        use crate::entropy::tests::OwnedTables;
        let mut out = [0u8; MAX_FRAME_BODY];
        assert_eq!(frame_payload(None, &[300, -5, -129], &mut out), (3, true));
        assert_eq!(out[..3], [127, (-5i8) as u8, (-128i8) as u8]);
        assert_eq!(frame_payload(None, &[127, -128], &mut out), (2, false));
        // With tables, codes that do not code shorter go raw as i16: nothing is clipped.
        let owned = OwnedTables::new(&[(-1, std::vec![1, 4094, 1])]);
        let codes = [30000, -30000, 300];
        assert_eq!(frame_payload(Some(owned.tables()), &codes, &mut out), (6, false));
        let back: std::vec::Vec<i16> = out[..6].chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        assert_eq!(back, codes);
    }

    #[test]
    fn configurations_the_format_cannot_carry_are_refused() {
        let blob = tiny_blob();
        let encoder = QuantizedEncoder::from_blob(&blob).unwrap();
        let per_window = encoder.code_len();
        let with = |c: StreamConfig| StreamEncoder::<true>::new(encoder.clone(), c).err();
        assert_eq!(
            with(StreamConfig { windows_per_frame: 0, ..StreamConfig::DEFAULT }),
            Some(StreamConfigError::WindowsPerFrame { requested: 0, max: (MAX_FRAME_CODES / per_window).min(255) })
        );
        // Two codes a window: any u8 count of windows fits a frame.
        assert!(with(StreamConfig { windows_per_frame: u8::MAX, ..StreamConfig::DEFAULT }).is_none());
        // Eight codes a window: 64 windows fill a frame.
        let eight = crate::encoder::tests::dense_blob(16, 8);
        let eight = QuantizedEncoder::from_blob(&eight).unwrap();
        let with_eight = |windows_per_frame| {
            StreamEncoder::<true>::new(eight.clone(), StreamConfig { windows_per_frame, ..StreamConfig::DEFAULT }).err()
        };
        assert_eq!(with_eight(64), None);
        assert_eq!(with_eight(65), Some(StreamConfigError::WindowsPerFrame { requested: 65, max: 64 }));
        assert_eq!(
            with(StreamConfig { header_interval: 0, ..StreamConfig::DEFAULT }),
            Some(StreamConfigError::HeaderInterval)
        );
        assert_eq!(
            with(StreamConfig { start_sample: u64::MAX, ..StreamConfig::DEFAULT }),
            Some(StreamConfigError::StartSample)
        );
    }

    #[test]
    fn a_short_window_is_an_error_and_does_not_advance_the_stream() {
        let blob = tiny_blob();
        let encoder = QuantizedEncoder::from_blob(&blob).unwrap();
        let mut stream = StreamEncoder::<true>::new(encoder, StreamConfig::DEFAULT).unwrap();
        let mut scratch = [0i16; 256];
        let mut out = [0u8; MAX_WINDOW_OUTPUT];
        assert!(matches!(stream.encode_window(&[0; 3], &mut scratch, &mut out), Err(EncodeError::WindowLength { .. })));
        assert_eq!((stream.next_sample_index(), stream.pending_windows()), (0, 0));
    }
}
