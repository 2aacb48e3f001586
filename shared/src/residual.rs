//! Error-bounded coding of samples against a prediction of them (see `docs/bounded-mode.md`).
//!
//! Each sample's prediction is a given **base** (the decoder's reconstruction, or 0) plus a
//! closed-loop linear prediction from the residuals already rebuilt (`x′ − base`, most recent
//! first, Q12 coefficients). The sample's difference from its prediction is quantized in bins of
//! `2E′ + 1` counts, so that the rebuilt sample is never more than `E′` counts from the input
//! (`E′ = 0`: the input exactly, differences wrapping in i16). The bins are rANS coded with the
//! coder of [`crate::entropy`]: the samples go in blocks of [`BLOCK`], each block with the table
//! of its **class** (its mean |bin|, against the spec's class bounds), the class coded ahead of
//! the block with a table of its own, so a busy stretch does not pay a calm one's table. A bin
//! of magnitude [`DIRECT`] or more is coded as the symbol of its octave followed by the bits
//! below its leading one ([`symbol_of`]): 55 symbols cover every bin, however wide the
//! residuals spread.
//!
//! The encoder and the decoder run the same integer arithmetic ([`residual_bins`] and
//! [`ResidualSpec::decode`]), so a sender knows exactly what a receiver rebuilds. Every segment
//! coded starts from an empty history: it decodes without the segments before it.

use crate::blob::{I16s, U16s};
use crate::entropy::{CodeTables, EntropyError, ValueReader, ValueWriter};
use serde::{Deserialize, Serialize};

/// Most prediction coefficients.
pub const MAX_PREDICTION_ORDER: usize = 4;
/// Fractional bits of the prediction coefficients.
pub const PREDICTION_BITS: u32 = 12;
/// Samples per block; each block's class is chosen by the encoder and sent ahead of it.
pub const BLOCK: usize = 32;
/// Most block classes.
pub const MAX_CLASSES: usize = 16;
/// Largest `E′`: bins of up to 65,535 counts.
pub const MAX_BOUND: u16 = i16::MAX as u16;
/// A block's level is its mean |bin| in units of 1/`LEVEL_SCALE`.
pub const LEVEL_SCALE: u32 = 16;
/// Bins of smaller magnitude are their own symbol.
pub const DIRECT: i16 = 16;
/// The octave of the smallest magnitude coded by octave: `DIRECT = 2^FIRST_OCTAVE`.
const FIRST_OCTAVE: u32 = 4;

/// The symbol of bin `q` and the raw bits that follow it, `(symbol, bits, how many)`: below
/// [`DIRECT`] in magnitude the bin itself and none; else `±(DIRECT + octave − 4)` (the sign of
/// `q`; octave = ⌊log2 |q|⌋, 4 to 15) and the `octave` bits of |q| below its leading one.
pub fn symbol_of(q: i16) -> (i16, u32, u32) {
    let magnitude = u32::from(q.unsigned_abs());
    if magnitude < DIRECT as u32 {
        return (q, 0, 0);
    }
    let octave = 31 - magnitude.leading_zeros();
    // Octaves 4 to 15: symbols 16 to 27.
    let symbol = DIRECT + (octave - FIRST_OCTAVE) as i16;
    (if q < 0 { -symbol } else { symbol }, magnitude - (1 << octave), octave)
}

/// Puts bin `q` (its symbol with table `table`, then its raw bits) in stack order.
fn put_bin(writer: &mut ValueWriter<'_, '_>, table: usize, q: i16) -> Result<(), EntropyError> {
    let (symbol, value, bits) = symbol_of(q);
    // Read back as: the symbol, the bits above the low 8, the low 8.
    if bits > 8 {
        writer.put_bits(value & 0xFF, 8)?;
        writer.put_bits(value >> 8, bits - 8)?;
    } else if bits > 0 {
        writer.put_bits(value, bits)?;
    }
    writer.put(table, symbol)
}

/// Takes a bin that [`put_bin`] put.
fn take_bin(reader: &mut ValueReader<'_, '_>, table: usize) -> Result<i16, EntropyError> {
    let symbol = reader.take(table)?;
    let size = i32::from(symbol).abs();
    if size < i32::from(DIRECT) {
        return Ok(symbol);
    }
    let octave = (size - i32::from(DIRECT)) as u32 + FIRST_OCTAVE;
    if octave > 15 {
        return Err(EntropyError::Inconsistent);
    }
    let below = match octave {
        9.. => {
            let high = reader.take_bits(octave - 8);
            (high << 8) | reader.take_bits(8)
        }
        _ => reader.take_bits(octave),
    };
    let magnitude = (1i32 << octave) + below as i32;
    // i16 holds −32768 but not +32768.
    i16::try_from(if symbol < 0 { -magnitude } else { magnitude }).map_err(|_| EntropyError::Inconsistent)
}

/// How residuals are bounded, predicted and coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidualSpec<'a> {
    /// `E′` (at most [`MAX_BOUND`]): no rebuilt count differs from the input by more.
    pub max_error: u16,
    /// Closed-loop prediction coefficients, Q12, for the last rebuilt residuals (most recent
    /// first); at most [`MAX_PREDICTION_ORDER`], none for no prediction.
    #[serde(borrow)]
    pub prediction: I16s<'a>,
    /// Ascending: a block whose level ([`LEVEL_SCALE`] × mean |bin|, rounded down) is at most
    /// `class_bounds[c]`, and above the bounds before it, is of class `c`; above them all, of
    /// the last class. There are `class_bounds.len() + 1` classes.
    #[serde(borrow)]
    pub class_bounds: U16s<'a>,
    /// Table 0 codes the blocks' classes, table `1 + c` the bins' symbols ([`symbol_of`]) in
    /// class `c` (no lags).
    #[serde(borrow)]
    pub tables: CodeTables<'a>,
}

/// Why residuals could not be coded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResidualError {
    /// The spec breaks a rule (the message says which).
    Invalid(&'static str),
    /// The base and the samples differ in length, or the segment is empty.
    Length,
    /// The coder's output does not fit, or a payload is not what the encoder writes.
    Entropy(EntropyError),
}

impl core::fmt::Display for ResidualError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResidualError::Invalid(why) => write!(f, "residual spec: {why}"),
            ResidualError::Length => f.write_str("the base and the samples differ in length, or the segment is empty"),
            ResidualError::Entropy(e) => write!(f, "residuals: {e}"),
        }
    }
}

impl core::error::Error for ResidualError {}

impl From<EntropyError> for ResidualError {
    fn from(e: EntropyError) -> Self {
        ResidualError::Entropy(e)
    }
}

/// The closed-loop quantizer alone (what the tables are fitted to): `E′` and the prediction.
#[derive(Clone, Copy, Debug)]
pub struct Quantizer<'a> {
    pub max_error: u16,
    pub prediction: I16s<'a>,
}

impl Quantizer<'_> {
    fn check(&self) -> Result<(), ResidualError> {
        if self.max_error > MAX_BOUND {
            return Err(ResidualError::Invalid("the bound is at most 32767 counts"));
        }
        if self.prediction.len() > MAX_PREDICTION_ORDER {
            return Err(ResidualError::Invalid("at most 4 prediction coefficients"));
        }
        Ok(())
    }

    /// The prediction of the next sample: `base` plus the linear prediction from `history`,
    /// within i16.
    fn predict(&self, base: i16, history: &[i32; MAX_PREDICTION_ORDER]) -> i16 {
        let acc: i64 = self.prediction.iter().zip(history).map(|(c, &h)| i64::from(c) * i64::from(h)).sum();
        // |acc| < 4 · 2^15 · 2^17: the shift brings it well inside i32.
        let linear = (acc + (1 << (PREDICTION_BITS - 1))) >> PREDICTION_BITS;
        (i64::from(base) + linear).clamp(i16::MIN.into(), i16::MAX.into()) as i16
    }

    /// The sample rebuilt from bin `q` against prediction `p`.
    fn rebuild(&self, q: i16, p: i16) -> i16 {
        if self.max_error == 0 {
            return p.wrapping_add(q);
        }
        let width = 2 * i32::from(self.max_error) + 1;
        // Within E′ of an i16 input: clamping to i16 moves it towards the input.
        (i32::from(p) + i32::from(q) * width).clamp(i16::MIN.into(), i16::MAX.into()) as i16
    }

    /// The bin of `x` against prediction `p`: the rebuilt sample is within `E′` of `x`.
    fn bin(&self, x: i16, p: i16) -> i16 {
        if self.max_error == 0 {
            return x.wrapping_sub(p);
        }
        let e = i32::from(self.max_error);
        let d = i32::from(x) - i32::from(p);
        // |d| ≤ 65,535 and the width is at least 3: the bin fits i16.
        (d.signum() * ((d.abs() + e) / (2 * e + 1))) as i16
    }

    fn push(history: &mut [i32; MAX_PREDICTION_ORDER], residual: i32) {
        history.copy_within(0..MAX_PREDICTION_ORDER - 1, 1);
        history[0] = residual;
    }
}

/// The prediction base of sample `t`: `base[t]`, or 0 without a base.
fn base_at(base: Option<&[i16]>, t: usize) -> i16 {
    base.map_or(0, |b| b[t])
}

/// Checks that `base` (if any) covers `n` samples and that `segment` is not 0.
fn check_lengths(base: Option<&[i16]>, n: usize, segment: usize) -> Result<(), ResidualError> {
    if base.is_some_and(|b| b.len() != n) || segment == 0 {
        return Err(ResidualError::Length);
    }
    Ok(())
}

/// Replaces `values` (samples) by their bins against `base` (none: 0), in segments of
/// `segment` samples (the last may be shorter), each from an empty history: what
/// [`ResidualSpec::encode`] codes, and what the tables are fitted to.
pub fn residual_bins(
    quantizer: Quantizer<'_>,
    base: Option<&[i16]>,
    values: &mut [i16],
    segment: usize,
) -> Result<(), ResidualError> {
    quantizer.check()?;
    check_lengths(base, values.len(), segment)?;
    for (s, chunk) in values.chunks_mut(segment).enumerate() {
        let mut history = [0i32; MAX_PREDICTION_ORDER];
        for (i, v) in chunk.iter_mut().enumerate() {
            let b = base_at(base, s * segment + i);
            let p = quantizer.predict(b, &history);
            let q = quantizer.bin(*v, p);
            *v = q;
            Quantizer::push(&mut history, i32::from(quantizer.rebuild(q, p)) - i32::from(b));
        }
    }
    Ok(())
}

/// A block's level: [`LEVEL_SCALE`] × its mean |bin|, rounded down.
pub fn block_level(bins: &[i16]) -> u32 {
    // At most BLOCK bins of at most 32,768: the sum fits.
    let sum: u32 = bins.iter().map(|q| u32::from(q.unsigned_abs())).sum();
    sum * LEVEL_SCALE / bins.len().max(1) as u32
}

/// The class of a block of bins under ascending `class_bounds` (see
/// [`ResidualSpec::class_bounds`]): the first bound its level does not exceed, or one past the
/// last.
pub fn block_class(bins: &[i16], class_bounds: impl IntoIterator<Item = u16>) -> usize {
    let level = block_level(bins);
    let mut class = 0;
    for bound in class_bounds {
        if level <= u32::from(bound) {
            break;
        }
        class += 1;
    }
    class
}

impl<'a> ResidualSpec<'a> {
    pub fn quantizer(&self) -> Quantizer<'a> {
        Quantizer { max_error: self.max_error, prediction: self.prediction }
    }

    pub fn classes(&self) -> usize {
        self.class_bounds.len() + 1
    }

    /// Checks every rule of the fields' documentation.
    pub fn validate(&self) -> Result<(), ResidualError> {
        self.quantizer().check()?;
        if self.classes() > MAX_CLASSES {
            return Err(ResidualError::Invalid("at most 16 block classes"));
        }
        let bounds = &self.class_bounds;
        if (1..bounds.len()).any(|i| bounds.get(i) <= bounds.get(i - 1)) {
            return Err(ResidualError::Invalid("class bounds must rise"));
        }
        if !self.tables.lags.is_empty() {
            return Err(ResidualError::Invalid("residual tables are not predicted"));
        }
        self.tables.validate(self.classes() + 1).map_err(ResidualError::Invalid)
    }

    /// The class of a block of bins.
    pub fn class_of(&self, bins: &[i16]) -> usize {
        block_class(bins, self.class_bounds.iter())
    }

    /// Codes `values` (samples, replaced by their bins) against `base` (none: 0), in segments
    /// of `segment` samples each from an empty history (the last may be shorter), into `out`
    /// (valid spec only: see [`Self::validate`]). Returns the bytes written.
    pub fn encode(
        &self,
        base: Option<&[i16]>,
        values: &mut [i16],
        segment: usize,
        out: &mut [u8],
    ) -> Result<usize, ResidualError> {
        residual_bins(self.quantizer(), base, values, segment)?;
        let mut writer = ValueWriter::new(self.tables, out);
        // Last to first, so that the decoder reads each block's class, then its bins. Blocks
        // do not cross segments.
        for chunk in values.chunks(segment).rev() {
            for block in chunk.chunks(BLOCK).rev() {
                let class = self.class_of(block);
                for &q in block.iter().rev() {
                    put_bin(&mut writer, 1 + class, q)?;
                }
                // At most 16 classes.
                writer.put(0, class as i16)?;
            }
        }
        Ok(writer.finish()?)
    }

    /// Rebuilds `out.len()` samples from `payload` (what [`Self::encode`] wrote with the same
    /// `base` and `segment`; valid spec only).
    pub fn decode(
        &self,
        payload: &[u8],
        base: Option<&[i16]>,
        segment: usize,
        out: &mut [i16],
    ) -> Result<(), ResidualError> {
        check_lengths(base, out.len(), segment)?;
        let mut reader = ValueReader::new(self.tables, payload)?;
        for chunk in out.chunks_mut(segment) {
            for block in chunk.chunks_mut(BLOCK) {
                let class = usize::try_from(reader.take(0)?)
                    .ok()
                    .filter(|&c| c < self.classes())
                    .ok_or(ResidualError::Entropy(EntropyError::Inconsistent))?;
                for q in block.iter_mut() {
                    *q = take_bin(&mut reader, 1 + class)?;
                }
            }
        }
        reader.finish()?;
        self.rebuild(base, out, segment)
    }

    /// Replaces `values` (bins, as [`residual_bins`] made them) by the samples a receiver
    /// rebuilds from them: within `max_error` of the samples they were made from.
    pub fn rebuild(&self, base: Option<&[i16]>, values: &mut [i16], segment: usize) -> Result<(), ResidualError> {
        check_lengths(base, values.len(), segment)?;
        let quantizer = self.quantizer();
        for (s, chunk) in values.chunks_mut(segment).enumerate() {
            let mut history = [0i32; MAX_PREDICTION_ORDER];
            for (i, v) in chunk.iter_mut().enumerate() {
                let b = base_at(base, s * segment + i);
                let p = quantizer.predict(b, &history);
                *v = quantizer.rebuild(*v, p);
                Quantizer::push(&mut history, i32::from(*v) - i32::from(b));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use crate::entropy::tests::OwnedTables;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A table of `n` codes from `lo`, peaked at its middle.
    fn peaked(lo: i16, n: usize) -> (i16, Vec<u16>) {
        let mut f: Vec<u16> = (0..n).map(|j| 1 + (64 / (1 + j.abs_diff(n / 2))) as u16).collect();
        let rest = crate::entropy::TOTAL as u16 - f.iter().sum::<u16>();
        f[n / 2] += rest;
        (lo, f)
    }

    /// A residual spec's arrays, owned.
    pub(crate) struct Owned {
        prediction: Vec<u8>,
        bounds: Vec<u8>,
        tables: OwnedTables,
    }

    impl Owned {
        fn new(prediction: &[i16], bounds: &[u16], spans: &[(i16, usize)]) -> Owned {
            let classes = bounds.len() + 1;
            let mut tables = std::vec![peaked(-1, classes + 2)];
            tables.extend(spans.iter().cycle().take(classes).map(|&(lo, n)| peaked(lo, n)));
            Owned::with_tables(prediction, bounds, &tables)
        }

        /// The classes' table, then one per class, as `(lowest code, frequencies)`.
        pub(crate) fn with_tables(prediction: &[i16], bounds: &[u16], tables: &[(i16, Vec<u16>)]) -> Owned {
            Owned {
                prediction: prediction.iter().flat_map(|c| c.to_le_bytes()).collect(),
                bounds: bounds.iter().flat_map(|c| c.to_le_bytes()).collect(),
                tables: OwnedTables::new(tables),
            }
        }

        pub(crate) fn spec(&self, max_error: u16) -> ResidualSpec<'_> {
            ResidualSpec {
                max_error,
                prediction: I16s::new(&self.prediction).unwrap(),
                class_bounds: U16s::new(&self.bounds).unwrap(),
                tables: self.tables.tables(),
            }
        }
    }

    /// The base a test passes: none for all zeros (what a stream without latent codes uses).
    fn base_of(base: &[i16]) -> Option<&[i16]> {
        base.iter().any(|&b| b != 0).then_some(base)
    }

    /// Signals with what breaks coders: steps, spikes, constant runs, full scale, clipping.
    fn signal() -> impl Strategy<Value = Vec<i16>> {
        let piece = prop_oneof![
            (any::<i16>(), 1usize..40).prop_map(|(v, n)| std::vec![v; n]),
            (any::<i16>(), -300i16..300, 1usize..60)
                .prop_map(|(v, step, n)| (0..n).map(|i| v.saturating_add(step.saturating_mul(i as i16))).collect()),
            prop::collection::vec(any::<i16>(), 1..20),
            (1usize..20).prop_map(|n| (0..n).map(|i| [i16::MAX, i16::MIN][i % 2]).collect()),
            (-50i16..50, 1usize..50).prop_map(|(v, n)| (0..n).map(|i| v + (i as i16 * 7) % 13 - 6).collect()),
        ];
        prop::collection::vec(piece, 1..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// The bound holds on every sample whatever the signal, base, prediction and tables;
        /// E′ = 0 gives the input back; the receiver rebuilds what the sender says it will.
        #[test]
        fn every_sample_is_within_the_bound(
            samples in signal(),
            base_kind in 0u8..3,
            max_error in prop_oneof![Just(0u16), Just(1), Just(2), 3u16..200, Just(MAX_BOUND)],
            prediction in prop::collection::vec(-9000i16..9000, 0..=MAX_PREDICTION_ORDER),
            bounds in prop::collection::btree_set(0u16..400, 0..4),
            spans in prop::collection::vec((-40i16..10, 3usize..60), 1..4),
            segment in prop_oneof![Just(usize::MAX), 1usize..100],
        ) {
            let n = samples.len();
            let base: Vec<i16> = match base_kind {
                0 => std::vec![0; n],
                1 => samples.iter().map(|v| v.saturating_add(37)).collect(),
                _ => samples.iter().rev().copied().collect(),
            };
            let bounds: Vec<u16> = bounds.into_iter().collect();
            let owned = Owned::new(&prediction, &bounds, &spans);
            let spec = owned.spec(max_error);
            prop_assert_eq!(spec.validate(), Ok(()));
            let mut bins = samples.clone();
            let mut out = std::vec![0u8; 8 * n + 64];
            let len = spec.encode(base_of(&base), &mut bins, segment, &mut out).unwrap();
            let mut rebuilt = std::vec![0i16; n];
            spec.decode(&out[..len], base_of(&base), segment, &mut rebuilt).unwrap();
            for (x, r) in samples.iter().zip(&rebuilt) {
                prop_assert!(x.abs_diff(*r) <= max_error, "{} rebuilt as {}, bound {}", x, r, max_error);
            }
            if max_error == 0 {
                prop_assert_eq!(&rebuilt, &samples);
            }
        }

        /// Any bytes: the decoder answers, never panics.
        #[test]
        fn arbitrary_payloads_decode_or_are_refused(payload in prop::collection::vec(any::<u8>(), 0..80), n in 0usize..100) {
            let owned = Owned::new(&[4096, -1024], &[8, 40], &[(-8, 17)]);
            let spec = owned.spec(2);
            let mut out = std::vec![0i16; n];
            let _ = spec.decode(&payload, None, 37, &mut out);
        }
    }

    /// A calm stretch costs little: its bins fall in the narrow class's table, the busy one's in
    /// the wide table.
    #[test]
    fn blocks_take_the_table_of_their_class() {
        let owned = Owned::new(&[4096], &[8], &[(-2, 5), (-100, 201)]);
        let spec = owned.spec(4);
        let calm: Vec<i16> = (0..64).map(|i| (i % 5) as i16).collect();
        let busy: Vec<i16> = (0..64).map(|i| ((i * 7919) % 2001) as i16 - 1000).collect();
        let mut out = [0u8; 512];
        let mut bins = calm.clone();
        let calm_bytes = spec.encode(None, &mut bins, 64, &mut out).unwrap();
        assert_eq!(spec.class_of(&bins[..32]), 0);
        let mut bins = busy.clone();
        let busy_bytes = spec.encode(None, &mut bins, 64, &mut out).unwrap();
        assert_eq!(spec.class_of(&bins[..32]), 1);
        assert!(calm_bytes * 8 < 64 && busy_bytes > 4 * calm_bytes, "{calm_bytes} and {busy_bytes} bytes");
    }

    /// Every bin travels, the ends of the i16 range and both sides of each octave included.
    #[test]
    fn bins_of_every_size_round_trip() {
        let owned = Owned::new(&[], &[], &[(-28, 57)]);
        let spec = owned.spec(0);
        let mut edges: Vec<i16> = std::vec![i16::MIN, i16::MIN + 1, i16::MAX, 0, 15, -15, 16, -16];
        edges.extend((4..15).flat_map(|o| [(1i16 << o) - 1, 1 << o, -(1 << o), 1 - (1 << o)]));
        let mut out = [0u8; 1024];
        let mut writer = ValueWriter::new(spec.tables, &mut out);
        for &q in edges.iter().rev() {
            put_bin(&mut writer, 1, q).unwrap();
        }
        let n = writer.finish().unwrap();
        let mut reader = ValueReader::new(spec.tables, &out[..n]).unwrap();
        for &q in &edges {
            assert_eq!(take_bin(&mut reader, 1), Ok(q));
        }
        assert_eq!(reader.finish(), Ok(()));
        assert_eq!(symbol_of(-32768), (-27, 0, 15));
        assert_eq!(symbol_of(300), (20, 300 - 256, 8));
    }

    #[test]
    fn invalid_specs_are_refused() {
        let owned = Owned::new(&[1, 2, 3, 4, 5], &[3], &[(-2, 5)]);
        assert_eq!(owned.spec(1).validate(), Err(ResidualError::Invalid("at most 4 prediction coefficients")));
        let owned = Owned::new(&[], &[9, 3], &[(-2, 5)]);
        assert_eq!(owned.spec(1).validate(), Err(ResidualError::Invalid("class bounds must rise")));
        let owned = Owned::new(&[], &[], &[(-2, 5)]);
        assert_eq!(
            owned.spec(MAX_BOUND + 1).validate(),
            Err(ResidualError::Invalid("the bound is at most 32767 counts"))
        );
        let mut more = Owned::new(&[], &[], &[(-2, 5)]);
        more.bounds = 7u16.to_le_bytes().to_vec();
        assert!(matches!(more.spec(0).validate(), Err(ResidualError::Invalid(_))), "two classes, one table");
        let mut out = [0u8; 8];
        let spec = Owned::new(&[], &[], &[(-2, 5)]);
        let e = spec.spec(0).encode(Some(&[0]), &mut [1, 2], 2, &mut out);
        assert_eq!(e, Err(ResidualError::Length));
        assert_eq!(spec.spec(0).encode(None, &mut [1, 2], 0, &mut out), Err(ResidualError::Length));
    }
}
