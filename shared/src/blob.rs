//! Model blob format (`encoder.fq8`): the quantized encoder as the firmware reads it, in place,
//! from flash.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "FNQ8"
//! 4       2     format version, u16 LE (BLOB_VERSION)
//! 6       4     model id: first 4 bytes of SHA-256(payload)
//! 10      4     payload length n, u32 LE
//! 14      n     payload: postcard-serialized `EncoderSpec` (the int8 encoder, the optional
//!               entropy-coding tables of its codes, the optional error-bounded coder, then
//!               the optional integer decoder as a byte string holding its own postcard
//!               `DecoderSpec`, parsed when it is used)
//! 14+n    4     CRC-32/ISO-HDLC of bytes 0..14+n, u32 LE
//! ```
//!
//! Arrays inside the payload are postcard byte strings (varint length + raw bytes) that the
//! parsed [`EncoderSpec`] borrows: int8 arrays as-is, int32 arrays little-endian. Nothing is
//! copied to RAM. Validation checks the header, the checksum, then every shape, so the kernels
//! can index without further checks.

use crate::entropy::CodeTables;
use crate::kernels::{Conv1dShape, DEAD_ZONE_BITS, INPUT_LIMIT};
use crate::residual::{ResidualError, ResidualSpec};
use crate::wire::{ModelId, CRC32, MAX_BOUNDED_SAMPLES, MAX_CODES, MODEL_ID_LEN};
use serde::{Deserialize, Serialize};

pub const BLOB_MAGIC: [u8; 4] = *b"FNQ8";
/// Version 13 reads the device's counts at their full 16 bits ([`crate::kernels::INPUT_LIMIT`])
/// and gives each layer its accumulator's width ([`QuantLayer::accumulator`]); version 12 gave
/// each code its own dead zone ([`CodeQuant::dead_zones`]); version 11 added
/// [`Layer::UpsampledConv1d`] and the residual coder's block length ([`ResidualSpec::block`]).
/// An older blob is refused (`funnel quantize` makes it again).
pub const BLOB_VERSION: u16 = 13;
pub const HEADER_LEN: usize = 14;
pub const TRAILER_LEN: usize = 4;
/// Most layers an encoder may have.
pub const MAX_LAYERS: usize = 8;
/// Most input channels (sensor axes) per window.
pub const MAX_CHANNELS: usize = 16;
/// Bound on a layer's accumulator that validation proves for every input: the largest bias plus
/// the taps of one output times the largest weight and input magnitudes stays within i32, so
/// the kernels' wrapping sums are exact.
pub const MAX_ACCUMULATOR: i64 = i32::MAX as i64;
/// The same bound for a 64-bit accumulator ([`AccumulatorWidth::Bits64`]), with room to spare.
pub const MAX_WIDE_ACCUMULATOR: i64 = 1 << 62;

/// A borrowed int8 array (stored as raw bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I8s<'a>(&'a [u8]);

impl<'a> I8s<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        I8s(bytes)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    #[inline(always)]
    pub fn get(&self, i: usize) -> i8 {
        self.0[i] as i8
    }
    /// The raw bytes of elements `start..start + len` (reinterpret each with `as i8`).
    #[inline(always)]
    pub fn slice(&self, start: usize, len: usize) -> &'a [u8] {
        &self.0[start..start + len]
    }
    pub fn iter(&self) -> impl Iterator<Item = i8> + 'a {
        self.0.iter().map(|&b| b as i8)
    }
}

/// Borrowed little-endian arrays of a fixed-size integer, read in place from the blob.
macro_rules! borrowed_le_array {
    ($(#[$doc:meta])* $t:ident, $int:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $t<'a>(&'a [u8]);

        impl<'a> $t<'a> {
            const SIZE: usize = core::mem::size_of::<$int>();
            /// The array of no elements.
            pub const EMPTY: Self = $t(&[]);

            /// `None` when the byte length is not a multiple of the element size.
            #[allow(clippy::modulo_one, reason = "for U8s every length is whole elements")]
            pub fn new(bytes: &'a [u8]) -> Option<Self> {
                (bytes.len() % Self::SIZE == 0).then_some($t(bytes))
            }
            pub fn len(&self) -> usize {
                self.0.len() / Self::SIZE
            }
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
            #[inline(always)]
            pub fn get(&self, i: usize) -> $int {
                let mut b = [0u8; core::mem::size_of::<$int>()];
                b.copy_from_slice(&self.0[Self::SIZE * i..Self::SIZE * (i + 1)]);
                <$int>::from_le_bytes(b)
            }
            /// The raw bytes of elements `start..start + len`.
            #[inline(always)]
            pub fn slice(&self, start: usize, len: usize) -> &'a [u8] {
                &self.0[Self::SIZE * start..Self::SIZE * (start + len)]
            }
            pub fn iter(&self) -> impl Iterator<Item = $int> + 'a {
                self.0.chunks_exact(Self::SIZE).map(|c| {
                    let mut b = [0u8; core::mem::size_of::<$int>()];
                    b.copy_from_slice(c);
                    <$int>::from_le_bytes(b)
                })
            }
        }
    };
}
borrowed_le_array!(
    /// A borrowed u8 array.
    U8s, u8
);
borrowed_le_array!(
    /// A borrowed little-endian u16 array.
    U16s, u16
);
borrowed_le_array!(
    /// A borrowed little-endian i16 array.
    I16s, i16
);
borrowed_le_array!(
    /// A borrowed little-endian int32 array.
    I32s, i32
);

macro_rules! borrowed_bytes_serde {
    ($t:ident, $check:expr, $what:literal) => {
        impl Serialize for $t<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        impl<'de: 'a, 'a> Deserialize<'de> for $t<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = <&'a [u8]>::deserialize(d)?;
                let check: fn(&'a [u8]) -> Option<$t<'a>> = $check;
                check(bytes).ok_or_else(|| serde::de::Error::custom($what))
            }
        }
    };
}
borrowed_bytes_serde!(I8s, |b| Some(I8s(b)), "");
borrowed_bytes_serde!(U8s, U8s::new, "");
borrowed_bytes_serde!(U16s, U16s::new, "u16 array length not a multiple of 2");
borrowed_bytes_serde!(I16s, I16s::new, "i16 array length not a multiple of 2");
borrowed_bytes_serde!(I32s, I32s::new, "int32 array length not a multiple of 4");

/// Per-output-channel fixed-point requantization parameters (see [`crate::kernels`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequantParams<'a> {
    /// Q31 multipliers in `[2^30, 2^31)`, or 0 for a channel whose output is constant.
    #[serde(borrow)]
    pub multipliers: I32s<'a>,
    /// Power-of-two exponents, positive = left shift, in `-31..=30`.
    #[serde(borrow)]
    pub shifts: I8s<'a>,
}

/// Fields every int8 layer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantLayer<'a> {
    /// Symmetric weights, layout given by the layer kind.
    #[serde(borrow)]
    pub weights: Weights<'a>,
    /// int32 biases at scale `s_in · s_w[o]`, one per output channel.
    #[serde(borrow)]
    pub bias: I32s<'a>,
    #[serde(borrow)]
    pub requant: RequantParams<'a>,
    pub input_zero_point: i8,
    pub output_zero_point: i8,
    /// ReLU fused into the requantization clamp.
    pub relu: bool,
    pub accumulator: AccumulatorWidth,
}

/// What a layer sums its products in. i32 (gemmlowp's, and SMLAD's on Cortex-M4) wherever
/// validation can bound the sums within it; i64 for a layer that reads the device's full 16-bit
/// counts with i16 weights, whose sums reach 2^40 (`funnel quantize` chooses the narrowest that
/// holds them; see [`MAX_ACCUMULATOR`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccumulatorWidth {
    Bits32,
    Bits64,
}

impl AccumulatorWidth {
    /// The largest sum validation lets a layer with this accumulator reach.
    pub fn max_sum(self) -> i64 {
        match self {
            AccumulatorWidth::Bits32 => MAX_ACCUMULATOR,
            AccumulatorWidth::Bits64 => MAX_WIDE_ACCUMULATOR,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layer<'a> {
    /// Weights `[out_features][in_features]`.
    Dense {
        in_features: u16,
        out_features: u16,
        #[serde(borrow)]
        q: QuantLayer<'a>,
    },
    /// Channels-first `[C][T]` in and out; weights `[out][in][kernel]`; zero padding.
    Conv1d {
        in_channels: u16,
        out_channels: u16,
        in_len: u16,
        kernel: u8,
        stride: u8,
        padding: u8,
        #[serde(borrow)]
        q: QuantLayer<'a>,
    },
    /// Nearest-neighbour ×2 upsampling of its `[C][in_len]` input (`u[c][t] = x[c][t / 2]`),
    /// then a [`Layer::Conv1d`] over `[C][2·in_len]`: a conv decoder's upsampling and the
    /// convolution after it, one layer because upsampling keeps the quantization.
    UpsampledConv1d {
        in_channels: u16,
        out_channels: u16,
        in_len: u16,
        kernel: u8,
        stride: u8,
        padding: u8,
        #[serde(borrow)]
        q: QuantLayer<'a>,
    },
}

impl<'a> Layer<'a> {
    pub fn quant(&self) -> &QuantLayer<'a> {
        match self {
            Layer::Dense { q, .. } | Layer::Conv1d { q, .. } | Layer::UpsampledConv1d { q, .. } => q,
        }
    }

    /// The convolution's geometry, over the upsampled input for [`Layer::UpsampledConv1d`].
    pub fn conv_shape(&self) -> Option<Conv1dShape> {
        match *self {
            Layer::Dense { .. } => None,
            Layer::Conv1d { in_channels, out_channels, in_len, kernel, stride, padding, .. }
            | Layer::UpsampledConv1d { in_channels, out_channels, in_len, kernel, stride, padding, .. } => {
                Some(Conv1dShape {
                    in_channels: in_channels.into(),
                    out_channels: out_channels.into(),
                    in_len: usize::from(in_len) * if self.upsamples() { 2 } else { 1 },
                    kernel: kernel.into(),
                    stride: stride.into(),
                    padding: padding.into(),
                })
            }
        }
    }

    /// Whether the layer upsamples its input before its kernel runs.
    pub fn upsamples(&self) -> bool {
        matches!(self, Layer::UpsampledConv1d { .. })
    }

    /// Number of output channels (= biases, = requantization entries).
    pub fn out_channels(&self) -> usize {
        match *self {
            Layer::Dense { out_features, .. } => out_features.into(),
            Layer::Conv1d { out_channels, .. } | Layer::UpsampledConv1d { out_channels, .. } => out_channels.into(),
        }
    }

    pub fn input_len(&self) -> usize {
        match *self {
            Layer::Dense { in_features, .. } => in_features.into(),
            Layer::Conv1d { in_channels, in_len, .. } | Layer::UpsampledConv1d { in_channels, in_len, .. } => {
                usize::from(in_channels) * usize::from(in_len)
            }
        }
    }

    /// Values the layer's kernel reads: its input, upsampled for [`Layer::UpsampledConv1d`].
    pub fn read_len(&self) -> usize {
        self.input_len() * if self.upsamples() { 2 } else { 1 }
    }

    /// Output length, `None` for an impossible convolution geometry.
    pub fn output_len(&self) -> Option<usize> {
        match self.conv_shape() {
            None => Some(self.out_channels()),
            Some(shape) => shape.out_len().map(|t| t * shape.out_channels),
        }
    }

    /// Multiply-accumulates per window.
    pub fn macs(&self) -> u64 {
        self.quant().weights.len() as u64 * self.conv_shape().and_then(|s| s.out_len()).unwrap_or(1) as u64
    }
}

/// A layer's symmetric weights: int8, or i16 where int8 would limit the codes (`funnel
/// quantize` gives the layer that makes the codes as many bits as its accumulator allows: at
/// high rates int8 weights put codes a step off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Weights<'a> {
    Int8(#[serde(borrow)] I8s<'a>),
    Int16(#[serde(borrow)] I16s<'a>),
}

impl<'a> Weights<'a> {
    pub fn len(&self) -> usize {
        match self {
            Weights::Int8(w) => w.len(),
            Weights::Int16(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Largest |weight|.
    pub fn max_abs(&self) -> i64 {
        match self {
            Weights::Int8(w) => w.iter().map(|v| i64::from(v).abs()).max().unwrap_or(0),
            Weights::Int16(w) => w.iter().map(|v| i64::from(v).abs()).max().unwrap_or(0),
        }
    }

    /// Weights `start..start + len`, as the kernels read them.
    #[inline(always)]
    pub fn row(&self, start: usize, len: usize) -> WeightRow<'a> {
        match self {
            Weights::Int8(w) => WeightRow::Int8(w.slice(start, len)),
            Weights::Int16(w) => WeightRow::Int16(w.slice(start, len)),
        }
    }
}

/// A run of weights as raw bytes: one per int8 weight, two (little-endian) per i16 weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightRow<'a> {
    Int8(&'a [u8]),
    Int16(&'a [u8]),
}

impl<'a> WeightRow<'a> {
    /// Weights `start..start + len` of this run.
    #[inline(always)]
    pub fn slice(self, start: usize, len: usize) -> WeightRow<'a> {
        match self {
            WeightRow::Int8(w) => WeightRow::Int8(&w[start..start + len]),
            WeightRow::Int16(w) => WeightRow::Int16(&w[2 * start..2 * (start + len)]),
        }
    }
}

/// Input quantization: device samples are i16 counts in `[T][C]` order (as sampled). For
/// channel `c`, `q = clamp(MBQM(x − offsets[c], multipliers[c], shifts[c]), ±INPUT_LIMIT)`:
/// the normalization `(x/counts_per_unit − mean)/std` and the input scale folded into one
/// fixed-point multiplier. The zero point is 0 (see [`crate::kernels::INPUT_LIMIT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputQuant<'a> {
    #[serde(borrow)]
    pub offsets: I32s<'a>,
    #[serde(borrow)]
    pub requant: RequantParams<'a>,
}

/// How i16 codes map back to real latent values: `z = scale · (code − zero_point)`, and how
/// the last layer rounds to them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeQuant<'a> {
    pub scale: f32,
    pub zero_point: i8,
    /// Empty (every code rounded half away from zero), or one dead zone per output channel of
    /// the last layer (per code of a dense one), each in 1/256 of a step and below 128 (see
    /// [`crate::kernels::Requantize::with_dead_zones`]).
    #[serde(borrow)]
    pub dead_zones: U8s<'a>,
}

/// Output stage of the integer decoder: the last layer's i16 output `q` (channels-first
/// `[C][T]`, at its own scale, zero point 0) to device counts `[T][C]`, for channel `c`
/// `x = clamp(MBQM(q, multipliers[c], shifts[c]) + offsets[c], i16)`: the output scale, the
/// normalization's standard deviation and the counts per unit folded into one fixed-point
/// multiplier, the mean in counts into the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputQuant<'a> {
    #[serde(borrow)]
    pub offsets: I32s<'a>,
    #[serde(borrow)]
    pub requant: RequantParams<'a>,
}

/// The quantized decoder (see [`crate::decoder`]): the codes of a window in, the window in
/// device counts out. Its first layer reads the i16 codes with the codes' zero point, hidden
/// layers output int8 as the encoder's do, the last layer i16 (zero point 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderSpec<'a> {
    #[serde(borrow)]
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
    #[serde(borrow)]
    pub output: OutputQuant<'a>,
}

/// The quantized encoder: what the blob payload holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec<'a> {
    /// Samples per window per channel.
    pub window: u16,
    pub channels: u8,
    /// Device sample units per physical unit (the host converts recordings with it).
    pub counts_per_unit: f32,
    #[serde(borrow)]
    pub input: InputQuant<'a>,
    #[serde(borrow)]
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
    #[serde(borrow)]
    pub codes: CodeQuant<'a>,
    /// How the codes are entropy coded on the link; `None`: sent as raw int8.
    #[serde(borrow)]
    pub tables: Option<CodeTables<'a>>,
    /// The error-bounded coder: with it the device sends every sample within
    /// `residual.max_error` counts (0: exactly) instead of latent codes (a *bounded* stream,
    /// `docs/wire-format.md`); `None`: latent codes.
    #[serde(borrow)]
    pub residual: Option<ResidualSpec<'a>>,
    /// The integer decoder, with which device and host rebuild the same counts from the codes
    /// (`None`: only the host's float decoder rebuilds them): the postcard bytes of its
    /// [`DecoderSpec`], validated with the blob and parsed when used ([`Self::decoder`]). Held as
    /// bytes because a parsed spec is the size of the encoder's: the firmware moves the
    /// encoder's spec around, and its peak stack grew by 3.9 KB with the decoder parsed in it.
    #[serde(borrow)]
    pub decoder: Option<U8s<'a>>,
}

/// Why a blob was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobError {
    /// Shorter than its header says (`needed` bytes, `found` present).
    Truncated {
        needed: usize,
        found: usize,
    },
    BadMagic,
    UnsupportedVersion {
        found: u16,
        supported: u16,
    },
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    /// Bytes after the trailer.
    TrailingBytes,
    /// The payload is not a postcard `EncoderSpec` of this version.
    Malformed,
    /// Well-formed but inconsistent: the field that is wrong.
    Invalid(&'static str),
    /// The output buffer given to [`write_blob`] is too small.
    BufferTooSmall,
}

impl core::fmt::Display for BlobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BlobError::Truncated { needed, found } => {
                write!(f, "model blob truncated: {found} bytes, header needs {needed}")
            }
            BlobError::BadMagic => write!(f, "not a Funnel model blob (magic is not \"FNQ8\")"),
            BlobError::UnsupportedVersion { found, supported } => {
                write!(f, "model blob format version {found} is not supported (this build reads {supported})")
            }
            BlobError::ChecksumMismatch { stored, computed } => {
                write!(f, "model blob corrupted: CRC {stored:08x} stored, {computed:08x} computed")
            }
            BlobError::TrailingBytes => write!(f, "model blob has bytes after its checksum"),
            BlobError::Malformed => write!(f, "model blob payload is malformed"),
            BlobError::Invalid(what) => write!(f, "model blob is inconsistent: {what}"),
            BlobError::BufferTooSmall => write!(f, "buffer too small for the model blob"),
        }
    }
}

impl core::error::Error for BlobError {}

/// A validated blob: its id and the encoder it describes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelBlob<'a> {
    pub model_id: ModelId,
    pub spec: EncoderSpec<'a>,
}

impl<'a> ModelBlob<'a> {
    /// Checks header, checksum and every shape; borrows the arrays from `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BlobError> {
        if bytes.len() < HEADER_LEN + TRAILER_LEN {
            return Err(BlobError::Truncated { needed: HEADER_LEN + TRAILER_LEN, found: bytes.len() });
        }
        if bytes[0..4] != BLOB_MAGIC {
            return Err(BlobError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != BLOB_VERSION {
            return Err(BlobError::UnsupportedVersion { found: version, supported: BLOB_VERSION });
        }
        let mut model_id = [0u8; MODEL_ID_LEN];
        model_id.copy_from_slice(&bytes[6..10]);
        let payload_len = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
        let total = HEADER_LEN.saturating_add(payload_len).saturating_add(TRAILER_LEN);
        if bytes.len() < total {
            return Err(BlobError::Truncated { needed: total, found: bytes.len() });
        }
        if bytes.len() > total {
            return Err(BlobError::TrailingBytes);
        }
        let body_end = HEADER_LEN + payload_len;
        let t = &bytes[body_end..];
        let stored = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let computed = CRC32.checksum(&bytes[..body_end]);
        if stored != computed {
            return Err(BlobError::ChecksumMismatch { stored, computed });
        }
        let spec = match postcard::take_from_bytes::<EncoderSpec<'a>>(&bytes[HEADER_LEN..body_end]) {
            Ok((spec, [])) => spec,
            _ => return Err(BlobError::Malformed),
        };
        spec.validate()?;
        Ok(ModelBlob { model_id: ModelId(model_id), spec })
    }
}

/// Writes a blob for `spec` into `buf`, returning its length. The model id is
/// `model_id_of(payload)` (the host passes the first bytes of SHA-256; `no_std` has no hasher).
pub fn write_blob(
    spec: &EncoderSpec<'_>,
    buf: &mut [u8],
    model_id_of: impl FnOnce(&[u8]) -> ModelId,
) -> Result<usize, BlobError> {
    spec.validate()?;
    if buf.len() < HEADER_LEN + TRAILER_LEN {
        return Err(BlobError::BufferTooSmall);
    }
    let room = buf.len() - TRAILER_LEN;
    let payload_len =
        postcard::to_slice(spec, &mut buf[HEADER_LEN..room]).map_err(|_| BlobError::BufferTooSmall)?.len();
    let id = model_id_of(&buf[HEADER_LEN..HEADER_LEN + payload_len]);
    buf[0..4].copy_from_slice(&BLOB_MAGIC);
    buf[4..6].copy_from_slice(&BLOB_VERSION.to_le_bytes());
    buf[6..10].copy_from_slice(&id.0);
    buf[10..14].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let body_end = HEADER_LEN + payload_len;
    let crc = CRC32.checksum(&buf[..body_end]);
    buf[body_end..body_end + TRAILER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(body_end + TRAILER_LEN)
}

impl EncoderSpec<'_> {
    /// Samples per window over all channels.
    pub fn input_len(&self) -> usize {
        usize::from(self.window) * usize::from(self.channels)
    }

    /// Number of latent codes per window.
    pub fn code_len(&self) -> usize {
        self.layers.last().and_then(Layer::output_len).unwrap_or(0)
    }

    /// Largest tensor a layer reads: the input, a hidden layer's output or an upsampled input
    /// (valid specs only).
    pub fn max_activation_len(&self) -> usize {
        largest_activation(&self.layers, self.input_len())
    }

    /// i16 scratch the encoder needs: the input, and with hidden layers or upsampling a second
    /// buffer to ping-pong with (the last layer writes straight into the codes).
    pub fn scratch_len(&self) -> usize {
        match self.layers.len() > 1 || self.layers.iter().any(Layer::upsamples) {
            false => self.input_len(),
            true => 2 * self.max_activation_len(),
        }
    }

    /// Multiply-accumulates per window.
    pub fn macs(&self) -> u64 {
        self.layers.iter().map(Layer::macs).sum()
    }

    /// Checks that every array has the length its shape implies and that layers chain.
    pub fn validate(&self) -> Result<(), BlobError> {
        use BlobError::Invalid;
        let channels = usize::from(self.channels);
        if self.window == 0 || channels == 0 || channels > MAX_CHANNELS {
            return Err(Invalid("window and channels must be non-zero (at most 16 channels)"));
        }
        if !(self.counts_per_unit.is_finite() && self.counts_per_unit > 0.0) {
            return Err(Invalid("counts_per_unit must be a positive number"));
        }
        if !(self.codes.scale.is_finite() && self.codes.scale > 0.0) {
            return Err(Invalid("code scale must be a positive number"));
        }
        if self.input.offsets.len() != channels {
            return Err(Invalid("input offsets: one per channel"));
        }
        validate_requant(&self.input.requant, channels, "input requantization: one per channel")?;
        if self.layers.first().is_some_and(|first| first.input_len() != self.input_len()) {
            return Err(Invalid("first layer input length != window * channels"));
        }
        // The samples, normalized, are at most INPUT_LIMIT from their zero point 0.
        let (len, zero_point) = validate_layers(&self.layers, self.input_len(), 0, i64::from(INPUT_LIMIT))?;
        if len > MAX_CODES {
            return Err(Invalid("more latent codes than a frame carries (64)"));
        }
        if self.codes.zero_point != zero_point {
            return Err(Invalid("code zero point != last layer output zero point"));
        }
        let zones = self.codes.dead_zones;
        if !zones.is_empty() {
            let last = self.layers.last().map(|l| l.quant().requant.shifts);
            if last.is_none_or(|s| s.len() != zones.len()) {
                return Err(Invalid("code dead zones: none, or one per output channel of the last layer"));
            }
            let room = 30 - DEAD_ZONE_BITS as i8;
            if zones.iter().any(|z| z >= 1 << (DEAD_ZONE_BITS - 1)) || last.is_some_and(|s| s.iter().any(|s| s > room))
            {
                return Err(Invalid("code dead zones must be below half a step, with room in their layer's shifts"));
            }
        }
        if let Some(tables) = &self.tables {
            tables.validate(len).map_err(Invalid)?;
        }
        if let Some(residual) = &self.residual {
            residual.validate().map_err(|e| match e {
                ResidualError::Invalid(why) => Invalid(why),
                _ => Invalid("residual spec"),
            })?;
            if self.input_len() > MAX_BOUNDED_SAMPLES {
                return Err(Invalid("a bounded stream's window holds at most 1024 samples over all channels"));
            }
        }
        if let Some(bytes) = self.decoder {
            self.validate_decoder(bytes)?;
            if self.residual.is_some() && self.tables.is_none() {
                return Err(Invalid("a bounded model with a decoder sends its codes: it needs their tables"));
            }
        }
        Ok(())
    }
}

impl<'a> EncoderSpec<'a> {
    /// Parses and checks the decoder's `bytes` against this encoder.
    // Not inlined: a parsed decoder takes half a kilobyte of stack, which a model without one
    // (the default) should not pay while its blob is checked.
    #[inline(never)]
    fn validate_decoder(&self, bytes: U8s<'a>) -> Result<(), BlobError> {
        let decoder =
            DecoderSpec::parse(bytes).ok_or(BlobError::Invalid("the decoder is not a postcard DecoderSpec"))?;
        decoder.validate(self)
    }

    /// The integer decoder, parsed from its bytes (valid specs only: `None` when there is none).
    pub fn decoder(&self) -> Option<DecoderSpec<'a>> {
        self.decoder.and_then(DecoderSpec::parse)
    }
}

impl<'a> DecoderSpec<'a> {
    /// The decoder whose postcard bytes are `bytes`, all of them.
    fn parse(bytes: U8s<'a>) -> Option<DecoderSpec<'a>> {
        match postcard::take_from_bytes::<DecoderSpec<'a>>(bytes.slice(0, bytes.len())) {
            Ok((spec, [])) => Some(spec),
            _ => None,
        }
    }

    /// Writes the bytes an [`EncoderSpec`] holds the decoder as into `buf`; returns their length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, BlobError> {
        postcard::to_slice(self, buf).map(|b| b.len()).map_err(|_| BlobError::BufferTooSmall)
    }

    /// Largest tensor a layer reads: the codes, a hidden layer's output or an upsampled input
    /// (valid specs only).
    pub fn max_activation_len(&self) -> usize {
        largest_activation(&self.layers, self.layers.first().map_or(0, Layer::input_len))
    }

    /// i16 scratch the decoder needs: two buffers to ping-pong the layers between, and the last
    /// layer's output.
    pub fn scratch_len(&self) -> usize {
        2 * self.max_activation_len() + self.layers.last().and_then(Layer::output_len).unwrap_or(0)
    }

    /// Multiply-accumulates per window.
    pub fn macs(&self) -> u64 {
        self.layers.iter().map(Layer::macs).sum()
    }

    /// Checks that the layers chain from `encoder`'s codes to its window and that the output
    /// stage has one entry per channel.
    fn validate(&self, encoder: &EncoderSpec<'_>) -> Result<(), BlobError> {
        use BlobError::Invalid;
        if self.layers.first().is_some_and(|first| first.input_len() != encoder.code_len()) {
            return Err(Invalid("the decoder's first layer does not read the codes"));
        }
        // A code is any i16, read against the codes' zero point.
        let magnitude = i64::from(i16::MAX) + 1 + i64::from(encoder.codes.zero_point).abs();
        let (len, zero_point) = validate_layers(&self.layers, encoder.code_len(), encoder.codes.zero_point, magnitude)?;
        if len != encoder.input_len() || zero_point != 0 {
            return Err(Invalid("the decoder's last layer must make a window of values, zero point 0"));
        }
        let channels = usize::from(encoder.channels);
        if self.output.offsets.len() != channels {
            return Err(Invalid("decoder output offsets: one per channel"));
        }
        validate_requant(&self.output.requant, channels, "decoder output requantization: one per channel")
    }
}

/// The longest of `input_len`, the hidden layers' outputs and every layer's upsampled input:
/// what each of the two buffers the layers ping-pong between must hold.
fn largest_activation(layers: &[Layer<'_>], input_len: usize) -> usize {
    let hidden = &layers[..layers.len().saturating_sub(1)];
    let outputs = hidden.iter().filter_map(Layer::output_len);
    outputs.chain(layers.iter().map(Layer::read_len)).fold(input_len, usize::max)
}

/// Checks that `layers` chain from an input of `len` values at `zero_point`, each at most
/// `input_magnitude` from it (later layers read int8 activations), and that no accumulator can
/// overflow; returns the last layer's output length and zero point.
fn validate_layers(
    layers: &[Layer<'_>],
    mut len: usize,
    mut zero_point: i8,
    mut input_magnitude: i64,
) -> Result<(usize, i8), BlobError> {
    use BlobError::Invalid;
    if layers.is_empty() {
        return Err(Invalid("no layers"));
    }
    for layer in layers {
        if layer.input_len() != len {
            return Err(Invalid("layer input length != previous layer output length"));
        }
        let q = layer.quant();
        if q.input_zero_point != zero_point {
            return Err(Invalid("layer input zero point != previous output zero point"));
        }
        let out = layer.out_channels();
        if out == 0 {
            return Err(Invalid("layer with no outputs"));
        }
        let weights_per_out = match layer.conv_shape() {
            None => len,
            Some(shape) => {
                if shape.out_len().is_none() {
                    return Err(Invalid("conv1d kernel/stride/padding do not fit its input"));
                }
                if shape.padding >= shape.kernel {
                    return Err(Invalid("conv1d padding must be smaller than its kernel"));
                }
                shape.in_channels * shape.kernel
            }
        };
        if q.weights.len() != out * weights_per_out {
            return Err(Invalid("weight count does not match the layer shape"));
        }
        if q.bias.len() != out {
            return Err(Invalid("bias count != output channels"));
        }
        validate_requant(&q.requant, out, "requantization: one multiplier and shift per output channel")?;
        let largest_bias = q.bias.iter().map(|b| i64::from(b).abs()).max().unwrap_or(0);
        let taps = i64::try_from(weights_per_out.min(layer.read_len())).unwrap_or(i64::MAX);
        let products = taps.saturating_mul(q.weights.max_abs()).saturating_mul(input_magnitude);
        if largest_bias.saturating_add(products) > q.accumulator.max_sum() {
            return Err(Invalid(
                "a layer's sums could overflow its accumulator (too many inputs or too large weights)",
            ));
        }
        input_magnitude = 255;
        len = layer.output_len().ok_or(Invalid("layer output length"))?;
        zero_point = q.output_zero_point;
    }
    Ok((len, zero_point))
}

fn validate_requant(r: &RequantParams<'_>, n: usize, what: &'static str) -> Result<(), BlobError> {
    if r.multipliers.len() != n || r.shifts.len() != n {
        return Err(BlobError::Invalid(what));
    }
    let multipliers_ok = r.multipliers.iter().all(|m| m == 0 || m >= 1 << 30);
    let shifts_ok = r.shifts.iter().all(|s| (-31..=30).contains(&s));
    if !(multipliers_ok && shifts_ok) {
        return Err(BlobError::Invalid("requantization multiplier outside [2^30, 2^31) or shift outside -31..=30"));
    }
    Ok(())
}
