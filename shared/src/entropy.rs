//! Entropy coding of latent codes, on the device and on the host: static per-latent tables,
//! fitted to the training part of the recording and stored in the model blob, and an rANS coder
//! (16-bit words, 32-bit state, 12-bit probabilities) that needs no heap.
//!
//! The coder is the stack-semantics ANS of the `constriction` crate (`SmallAnsCoder` with a
//! `SmallContiguousCategoricalEntropyModel`), written out so that it runs on a Cortex-M0 with
//! nothing but a caller's buffer: the tests check that constriction decodes what
//! [`CodeTables::encode`] writes and that [`CodeTables::decode`] reads what constriction writes.
//! It starts from state 0 and drops leading zero words of the final state, so a frame costs its
//! information content rounded up to 16 bits, not a fixed 32-bit flush.
//!
//! Payload bytes: the coder's words in the order they are written, then the final state (low
//! word, then high word; a zero high word is left out), each word little-endian. A decoder reads
//! words from the end. Codes are encoded last to first so that they decode first to last.
//!
//! Every i16 code can be coded, whatever the tables: a table's lowest and highest codes are
//! **escapes**. A code at or beyond an escape travels as that end followed by its distance
//! beyond it, `d`: a uniform 8-bit symbol `min(d, 255)` and, when that is 255, `d − 255` as two
//! more (high byte, then low byte). A signal that leaves the range seen in training costs 8 or
//! 24 more bits for those codes instead of being clipped or sending its frame raw.
//!
//! A latent may be **predicted** with a lag `L`: in every window of a frame but its first `L`,
//! it is coded as its difference from the same latent `L` windows before (wrapping in i16), with
//! a second table of its own. A slowly moving component (a level, a baseline; `L` = 1) then
//! costs what its changes cost, also when the signal's level leaves the range seen in training;
//! a daily cycle sampled a few windows a day is predicted from the same time the day before.
//! Prediction stays inside a frame, so every frame decodes without the frames before it.
//!
//! Tables may come in **window classes** (2 to [`MAX_CLASSES`]): one set of tables per class,
//! with the same codes (lowest and highest) in every class, and a class table. Each window is
//! sent as its class, coded with the class table, then its codes (and differences) with that
//! class's tables. A quiet window and a busy one then each pay for what they are, not for the
//! average of both: one set of tables per window is the discrete form of the "scale
//! hyperprior" of learned compression, its side information a class of a bit or two. The
//! encoder picks the class whose tables code the window in the fewest bits (by
//! [`class_cost`], an integer estimate, so host and device pick alike); the decoder reads it,
//! so the rule may change without changing the format.

use crate::blob::{I16s, U16s, U8s};
use crate::wire::MAX_CODES;
use serde::{Deserialize, Serialize};

/// Probabilities are multiples of `2^-PRECISION`.
pub const PRECISION: u32 = 12;
/// The sum of each table's frequencies.
pub const TOTAL: u32 = 1 << PRECISION;
const WORD_BITS: u32 = 16;
/// Below this the decoder refills its state from the next word.
const REFILL_BELOW: u32 = 1 << (32 - WORD_BITS);
/// Fewest codes a table has: its two escapes and one code that is itself.
pub const MIN_TABLE_CODES: usize = 3;
/// Most codes a table has (its frequencies take 2 bytes each of the blob).
pub const MAX_TABLE_CODES: usize = 256;
/// Most window classes a set of tables has.
pub const MAX_CLASSES: usize = 4;
/// Frequency of each value of the uniform 8-bit symbols after an escape.
const ESCAPED_FREQUENCY: u32 = TOTAL >> 8;
/// The 8-bit distance symbol that says "255 or more; two more bytes follow".
const LONG_DISTANCE: u32 = 255;

/// Static probability tables: one per latent, then one more per predicted latent (in latent
/// order) for its differences. Table `t` has the codes `lowest[t] ..= highest[t]` (at least
/// [`MIN_TABLE_CODES`], at most [`MAX_TABLE_CODES`]), each with a frequency of at least 1 out of
/// [`TOTAL`]; the two ends are escapes (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeTables<'a> {
    #[serde(borrow)]
    pub lowest: I16s<'a>,
    #[serde(borrow)]
    pub highest: I16s<'a>,
    /// For each table in turn, for each of its codes from the lowest: the sum of the
    /// frequencies of the codes below it. Each table's run starts at 0 and rises strictly
    /// below [`TOTAL`]; a code's frequency is the step to the next entry (or to `TOTAL`).
    #[serde(borrow)]
    pub cumulative: U16s<'a>,
    /// Empty, or one lag per latent: latent `i` is predicted from the window `lags[i]` before
    /// in its frame, or not at all when that is 0 (see the module documentation).
    #[serde(borrow)]
    pub lags: U8s<'a>,
    /// Empty (one class), or the cumulative frequencies of the window classes (2 to
    /// [`MAX_CLASSES`], starting at 0 and rising strictly below [`TOTAL`]); then `cumulative`
    /// holds one run of every table per class, class after class (see the module
    /// documentation).
    #[serde(borrow)]
    pub classes: U16s<'a>,
}

/// Where each table's run starts in `cumulative`, and each predicted latent's difference table.
struct Layout {
    offsets: [u16; 2 * MAX_CODES + 1],
    /// The difference table of each latent; 0 (a latent's own table, never a difference
    /// table) when it is not predicted.
    difference: [u8; MAX_CODES],
    /// How many codes back each latent's prediction lies (its lag × the latent count).
    back: [u16; MAX_CODES],
    /// Entries of `cumulative` per class: every table's run once.
    span: usize,
}

impl Layout {
    /// The table of the code at `position` (window after window of `k` latents) and, when that
    /// code is sent as a difference, the position of the code it is predicted from.
    #[inline(always)]
    fn table_of(&self, position: usize, k: usize) -> (usize, Option<usize>) {
        let latent = position % k;
        let back = usize::from(self.back[latent]);
        match self.difference[latent] {
            d if d != 0 && position >= back => (usize::from(d), Some(position - back)),
            _ => (latent, None),
        }
    }

    /// The table of the code at `position` of `codes` and the value it is coded as: the code,
    /// or its difference from the code it is predicted from (wrapping in i16).
    #[inline(always)]
    fn value_at(&self, codes: &[i16], position: usize, k: usize) -> (usize, i16) {
        let (table, from) = self.table_of(position, k);
        let code = codes[position];
        (table, from.map_or(code, |from| code.wrapping_sub(codes[from])))
    }
}

/// Why codes could not be entropy coded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntropyError {
    /// The output does not have room for the coded codes.
    BufferTooSmall,
    /// The number of codes is not a multiple of the number of latents.
    CodeCount,
    /// The payload is not what this coder writes for that many codes.
    Inconsistent,
}

impl core::fmt::Display for EntropyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EntropyError::BufferTooSmall => f.write_str("entropy-coded codes do not fit the buffer"),
            EntropyError::CodeCount => f.write_str("code count is not a multiple of the latent count"),
            EntropyError::Inconsistent => f.write_str("entropy-coded payload is inconsistent with the model's tables"),
        }
    }
}

impl core::error::Error for EntropyError {}

impl<'a> CodeTables<'a> {
    /// Number of latents (tables less difference tables).
    pub fn latents(&self) -> usize {
        self.lowest.len().saturating_sub(self.predicted())
    }

    /// Number of predicted latents (difference tables).
    fn predicted(&self) -> usize {
        self.lags.iter().filter(|&lag| lag != 0).count()
    }

    /// The lag of `latent`: 0 when it is not predicted.
    pub fn lag(&self, latent: usize) -> u8 {
        if self.lags.is_empty() {
            0
        } else {
            self.lags.get(latent)
        }
    }

    /// Number of window classes (1 when the tables have none).
    pub fn class_count(&self) -> usize {
        self.classes.len().max(1)
    }

    /// Checks that there is one table per latent and one per predicted latent, in every class,
    /// and that every table and the class table are valid distributions.
    pub fn validate(&self, latents: usize) -> Result<(), &'static str> {
        if latents > MAX_CODES || !(self.lags.is_empty() || self.lags.len() == latents) {
            return Err("code tables: no lags, or one per latent");
        }
        let tables = latents + self.predicted();
        if self.lowest.len() != tables || self.highest.len() != tables {
            return Err("code tables: one per latent and one more per predicted latent");
        }
        if self.classes.len() == 1 || self.classes.len() > MAX_CLASSES {
            return Err("code tables: no classes, or 2 to 4");
        }
        if !rises_from_zero(self.classes.iter()) {
            return Err("code tables: class frequencies must start at 0 and rise strictly below 4096");
        }
        let mut offset = 0usize;
        for i in (0..self.class_count()).flat_map(|_| 0..tables) {
            let (lo, hi) = (i32::from(self.lowest.get(i)), i32::from(self.highest.get(i)));
            if hi - lo + 1 < MIN_TABLE_CODES as i32 || hi - lo + 1 > MAX_TABLE_CODES as i32 {
                return Err("code tables: a table has 3 to 256 codes (two escapes and at least one more)");
            }
            let n = (hi - lo + 1) as usize;
            let Some(run) = offset.checked_add(n).filter(|&end| end <= self.cumulative.len()) else {
                return Err("code tables: fewer frequencies than codes");
            };
            if !rises_from_zero((offset..run).map(|j| self.cumulative.get(j))) {
                return Err("code tables: cumulative frequencies must start at 0 and rise strictly below 4096");
            }
            offset = run;
        }
        if offset != self.cumulative.len() {
            return Err("code tables: more frequencies than codes");
        }
        Ok(())
    }

    /// Where each table's run starts and which tables are difference tables (valid tables
    /// only).
    fn layout(&self) -> Layout {
        let mut layout = Layout {
            offsets: [0u16; 2 * MAX_CODES + 1],
            difference: [0u8; MAX_CODES],
            back: [0u16; MAX_CODES],
            span: 0,
        };
        let k = self.latents();
        for i in 0..self.lowest.len() {
            // At most 128 tables of 256 codes: the sums fit.
            let n = (i32::from(self.highest.get(i)) - i32::from(self.lowest.get(i)) + 1) as u16;
            layout.offsets[i + 1] = layout.offsets[i] + n;
        }
        layout.span = usize::from(layout.offsets[self.lowest.len()]);
        // Difference tables follow the latents' own, in latent order; at most 128 tables: the
        // index fits.
        // The lag is at most 255 windows of at most 64 latents: the distance fits.
        for (table, latent) in (k..).zip((0..k).filter(|&i| self.lag(i) != 0)) {
            layout.difference[latent] = table as u8;
            layout.back[latent] = u16::from(self.lag(latent)) * k as u16;
        }
        layout
    }

    /// Left cumulative frequency and frequency of `code` for the table whose run spans
    /// `start..end` of `cumulative`.
    fn interval(&self, start: usize, end: usize, j: usize) -> (u32, u32) {
        interval_in(&self.cumulative, start, end, j)
    }

    /// How often table `table` of window class `class` expects `value`, out of [`TOTAL`], and
    /// whether `value` is escaped (its distance beyond the table's end follows: 8 more bits, or
    /// 24). Valid tables, `class` below [`Self::class_count`] and `table` below the table count
    /// only (a caller bug panics).
    pub fn frequency(&self, class: usize, table: usize, value: i16) -> (u32, bool) {
        let layout = self.layout();
        let start = class * layout.span + usize::from(layout.offsets[table]);
        let end = class * layout.span + usize::from(layout.offsets[table + 1]);
        let (lo, hi) = (self.lowest.get(table), self.highest.get(table));
        let symbol = value.clamp(lo, hi);
        (self.interval(start, end, (symbol - lo) as usize).1, symbol == lo || symbol == hi)
    }

    /// How often `class` occurs, out of [`TOTAL`] (all of it without classes).
    pub fn class_frequency(&self, class: usize) -> u32 {
        match self.classes.is_empty() {
            true => TOTAL,
            false => class_interval(&self.classes, class).1,
        }
    }

    /// Entropy codes `codes` (a frame's whole windows, latent after latent) into `out`; returns
    /// the number of bytes written (always even).
    pub fn encode(&self, codes: &[i16], out: &mut [u8]) -> Result<usize, EntropyError> {
        let mut writer = ValueWriter::new(*self, out);
        self.put_codes(&mut writer, codes)?;
        writer.finish()
    }

    /// Puts `codes` (whole windows) into `writer`, last to first, so that
    /// [`CodeTables::take_codes`] takes them out first to last; `writer` may hold values of
    /// other tables put before (they come out after the codes). Each window goes with the
    /// class whose tables code it in the fewest bits, put after its codes so that it comes out
    /// before them.
    pub(crate) fn put_codes(&self, writer: &mut ValueWriter<'a, '_>, codes: &[i16]) -> Result<(), EntropyError> {
        let k = self.latents();
        if k == 0 || k > MAX_CODES || codes.len() % k != 0 {
            return Err(EntropyError::CodeCount);
        }
        let mut values = [(0usize, 0i16); MAX_CODES];
        for start in (0..codes.len()).step_by(k).rev() {
            for (i, slot) in values[..k].iter_mut().enumerate() {
                *slot = writer.layout.value_at(codes, start + i, k);
            }
            let class = writer.cheapest_class(&values[..k]);
            writer.class_base = class * writer.layout.span;
            for &(table, value) in values[..k].iter().rev() {
                writer.put(table, value)?;
            }
            if !self.classes.is_empty() {
                writer.symbol(class_interval(&self.classes, class))?;
            }
        }
        Ok(())
    }

    /// What each of a frame's `codes` (whole windows) is coded as, with its table: the code, or
    /// a predicted latent's difference from the code `lag` windows before (see the module
    /// documentation). The same in every window class.
    pub fn coded_values<'c>(&self, codes: &'c [i16]) -> impl Iterator<Item = (usize, i16)> + 'c {
        let (layout, k) = (self.layout(), self.latents().max(1));
        (0..codes.len()).map(move |position| layout.value_at(codes, position, k))
    }

    /// Decodes `payload` (what [`CodeTables::encode`] wrote) into `codes`, whose length says
    /// how many codes it holds.
    pub fn decode(&self, payload: &[u8], codes: &mut [i16]) -> Result<(), EntropyError> {
        let mut reader = ValueReader::new(*self, payload)?;
        self.take_codes(&mut reader, codes)?;
        reader.finish()
    }

    /// Takes `codes.len()` codes (whole windows, each after its class) out of `reader`.
    pub(crate) fn take_codes(&self, reader: &mut ValueReader<'a, '_>, codes: &mut [i16]) -> Result<(), EntropyError> {
        let k = self.latents();
        if k == 0 || codes.len() % k != 0 {
            return Err(EntropyError::CodeCount);
        }
        for position in 0..codes.len() {
            if position % k == 0 && !self.classes.is_empty() {
                let quantile = reader.state & (TOTAL - 1);
                // The last class whose cumulative frequency is at most `quantile` (the first is
                // 0, so there is one).
                let class = (1..self.classes.len()).take_while(|&c| u32::from(self.classes.get(c)) <= quantile).count();
                reader.take_symbol(quantile, class_interval(&self.classes, class));
                reader.class_base = class * reader.layout.span;
            }
            let (table, from) = reader.layout.table_of(position, k);
            let value = reader.take(table)?;
            codes[position] = from.map_or(value, |from| value.wrapping_add(codes[from]));
        }
        Ok(())
    }
}

/// Whether the cumulative frequencies `run` start at 0 and rise strictly below [`TOTAL`] (every
/// frequency at least 1).
fn rises_from_zero(mut run: impl Iterator<Item = u16>) -> bool {
    let mut previous = match run.next() {
        None => return true,
        Some(first) => u32::from(first),
    };
    previous == 0
        && run.all(|c| {
            let c = u32::from(c);
            let ok = c > previous && c < TOTAL;
            previous = c;
            ok
        })
}

/// Left cumulative frequency and frequency of entry `j` of the run of cumulative frequencies
/// that spans `start..end` of `cumulative`.
fn interval_in(cumulative: &U16s<'_>, start: usize, end: usize, j: usize) -> (u32, u32) {
    let left = u32::from(cumulative.get(start + j));
    let right = if start + j + 1 < end { u32::from(cumulative.get(start + j + 1)) } else { TOTAL };
    (left, right - left)
}

/// Left cumulative frequency and frequency of `class` in the class table `classes`.
fn class_interval(classes: &U16s<'_>, class: usize) -> (u32, u32) {
    interval_in(classes, 0, classes.len(), class)
}

/// What a symbol of frequency `freq` (1 to [`TOTAL`]) costs, in sixteenths of a bit:
/// `16 · (PRECISION − log2 freq)`, the logarithm from the four bits below the leading one
/// (within 1.05 sixteenths). Integer, so that host and device choose a window's class alike.
pub fn class_cost(freq: u32) -> u32 {
    /// `round(16 · log2(1 + (m + ½)/16))`: the middle of the mantissas `m` stands for.
    const FRACTION: [u8; 16] = [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 13, 14, 15, 16];
    let whole = 31 - freq.max(1).leading_zeros();
    let mantissa = if whole >= 4 { freq >> (whole - 4) } else { freq << (4 - whole) } & 15;
    (16 * PRECISION).saturating_sub(16 * whole + u32::from(FRACTION[mantissa as usize]))
}

/// The encoding half of the coder: values go in last to first (each with its table, escapes
/// included), so that [`ValueReader`] takes them out first to last.
pub(crate) struct ValueWriter<'a, 'o> {
    tables: CodeTables<'a>,
    layout: Layout,
    /// Where the current window's class's runs start in `cumulative`.
    class_base: usize,
    state: u32,
    out: &'o mut [u8],
    written: usize,
}

impl<'a, 'o> ValueWriter<'a, 'o> {
    /// A coder from state 0 writing into `out` (valid tables only).
    pub(crate) fn new(tables: CodeTables<'a>, out: &'o mut [u8]) -> Self {
        ValueWriter { layout: tables.layout(), tables, class_base: 0, state: 0, out, written: 0 }
    }

    /// The same coder, its next values put with `tables` (one rANS stream may mix tables: a
    /// bounded frame's residual bins and its latent codes).
    pub(crate) fn with_tables<'b>(self, tables: CodeTables<'b>) -> ValueWriter<'b, 'o> {
        ValueWriter {
            layout: tables.layout(),
            tables,
            class_base: 0,
            state: self.state,
            out: self.out,
            written: self.written,
        }
    }

    fn push(&mut self, word: u16) -> Result<(), EntropyError> {
        let slot = self.out.get_mut(self.written..self.written + 2).ok_or(EntropyError::BufferTooSmall)?;
        slot.copy_from_slice(&word.to_le_bytes());
        self.written += 2;
        Ok(())
    }

    fn symbol(&mut self, (left, freq): (u32, u32)) -> Result<(), EntropyError> {
        if (self.state >> (32 - PRECISION)) >= freq {
            self.push(self.state as u16)?;
            self.state >>= WORD_BITS;
        }
        self.state = ((self.state / freq) << PRECISION) | (left + self.state % freq);
        Ok(())
    }

    /// Puts `value` with table `table`: its symbol, and its distance beyond an escape.
    pub(crate) fn put(&mut self, table: usize, value: i16) -> Result<(), EntropyError> {
        let (lo, hi) = (self.tables.lowest.get(table), self.tables.highest.get(table));
        let symbol = value.clamp(lo, hi);
        // Stack order: the distance goes in first (its last byte first) so that it comes out
        // after its escape.
        if symbol == lo || symbol == hi {
            let distance = u32::from(value.abs_diff(symbol));
            if distance >= LONG_DISTANCE {
                let rest = distance - LONG_DISTANCE;
                self.symbol(uniform_byte(rest & 0xFF))?;
                self.symbol(uniform_byte(rest >> 8))?;
            }
            self.symbol(uniform_byte(distance.min(LONG_DISTANCE)))?;
        }
        let j = (symbol - lo) as usize;
        let (start, end) = self.run(table);
        self.symbol(self.tables.interval(start, end, j))
    }

    /// Where the run of `table` of the current class lies in `cumulative`.
    fn run(&self, table: usize) -> (usize, usize) {
        let at = |i: usize| self.class_base + usize::from(self.layout.offsets[i]);
        (at(table), at(table + 1))
    }

    /// The class whose tables code `values` (each with its table) and the class itself in the
    /// fewest bits, by [`class_cost`] (the lowest such class on a tie; 0 without classes).
    /// Escapes are left out: every class has the same ends, so they cost the same in each.
    fn cheapest_class(&mut self, values: &[(usize, i16)]) -> usize {
        let classes = self.tables.classes;
        let mut best = (u32::MAX, 0);
        for class in 0..classes.len() {
            self.class_base = class * self.layout.span;
            let mut cost = class_cost(class_interval(&classes, class).1);
            for &(table, value) in values {
                cost += self.symbol_cost(table, value);
            }
            best = best.min((cost, class));
        }
        best.1
    }

    /// What the symbol of `value` costs with `table` (of the current class), by [`class_cost`];
    /// an escape's distance left out.
    fn symbol_cost(&self, table: usize, value: i16) -> u32 {
        self.pricing(table).symbol_cost(value)
    }

    /// `table` (of the current class), to price values with.
    pub(crate) fn pricing(&self, table: usize) -> Pricing<'_, 'a> {
        let (start, end) = self.run(table);
        let (lo, hi) = (self.tables.lowest.get(table), self.tables.highest.get(table));
        Pricing { cumulative: &self.tables.cumulative, lo, hi, start, end }
    }

    /// Puts `bits` (at most 8) raw bits of `value`, each value equally likely.
    pub(crate) fn put_bits(&mut self, value: u32, bits: u32) -> Result<(), EntropyError> {
        self.symbol(raw_bits(value, bits))
    }

    /// Writes the final state; returns the bytes written (always even).
    pub(crate) fn finish(mut self) -> Result<usize, EntropyError> {
        if self.state >= REFILL_BELOW {
            self.push(self.state as u16)?;
            self.push((self.state >> WORD_BITS) as u16)?;
        } else if self.state != 0 {
            self.push(self.state as u16)?;
        }
        Ok(self.written)
    }
}

/// One table, to price many values with ([`ValueWriter::pricing`]): its bounds looked up once.
pub(crate) struct Pricing<'t, 'a> {
    cumulative: &'t U16s<'a>,
    lo: i16,
    hi: i16,
    start: usize,
    end: usize,
}

impl Pricing<'_, '_> {
    /// What the symbol of `value` costs, by [`class_cost`]; an escape's distance left out.
    pub(crate) fn symbol_cost(&self, value: i16) -> u32 {
        let j = (value.clamp(self.lo, self.hi) - self.lo) as usize;
        class_cost(interval_in(self.cumulative, self.start, self.end, j).1)
    }

    /// What `value` costs, in sixteenths of a bit: its symbol's [`class_cost`], and 8 bits for
    /// each byte of its distance beyond an escape.
    pub(crate) fn cost(&self, value: i16) -> u32 {
        let distance = value.abs_diff(value.clamp(self.lo, self.hi));
        let escaped = match (value <= self.lo || value >= self.hi, u32::from(distance) >= LONG_DISTANCE) {
            (false, _) => 0,
            (true, false) => 16 * 8,
            (true, true) => 16 * 24,
        };
        escaped + self.symbol_cost(value)
    }
}

/// The decoding half: takes out what [`ValueWriter`] put in, first to last.
pub(crate) struct ValueReader<'a, 'p> {
    tables: CodeTables<'a>,
    layout: Layout,
    /// Where the current window's class's runs start in `cumulative`.
    class_base: usize,
    state: u32,
    payload: &'p [u8],
    /// Words of the payload not yet read (read from the end).
    pos: usize,
}

impl<'a, 'p> ValueReader<'a, 'p> {
    /// Starts reading `payload` (valid tables only).
    pub(crate) fn new(tables: CodeTables<'a>, payload: &'p [u8]) -> Result<Self, EntropyError> {
        if payload.len() % 2 != 0 {
            return Err(EntropyError::Inconsistent);
        }
        let mut reader =
            ValueReader { layout: tables.layout(), tables, class_base: 0, state: 0, payload, pos: payload.len() / 2 };
        reader.state = match reader.pop() {
            None => 0,
            // The encoder drops a zero top word.
            Some(0) => return Err(EntropyError::Inconsistent),
            // Two words unless the state was below 2^16, which leaves no words below it.
            Some(top) => match reader.pop() {
                Some(low) => (top << WORD_BITS) | low,
                None => top,
            },
        };
        Ok(reader)
    }

    /// The same reader, its next values taken with `tables` (see [`ValueWriter::with_tables`]).
    pub(crate) fn with_tables<'b>(self, tables: CodeTables<'b>) -> ValueReader<'b, 'p> {
        ValueReader {
            layout: tables.layout(),
            tables,
            class_base: 0,
            state: self.state,
            payload: self.payload,
            pos: self.pos,
        }
    }

    fn pop(&mut self) -> Option<u32> {
        self.pos = self.pos.checked_sub(1)?;
        Some(u32::from(u16::from_le_bytes([self.payload[2 * self.pos], self.payload[2 * self.pos + 1]])))
    }

    fn take_symbol(&mut self, quantile: u32, (left, freq): (u32, u32)) {
        self.state = (self.state >> PRECISION) * freq + (quantile - left);
        if self.state < REFILL_BELOW {
            if let Some(word) = self.pop() {
                self.state = (self.state << WORD_BITS) | word;
            }
        }
    }

    fn byte(&mut self) -> u32 {
        let quantile = self.state & (TOTAL - 1);
        let value = quantile / ESCAPED_FREQUENCY;
        self.take_symbol(quantile, uniform_byte(value));
        value
    }

    /// Takes `bits` (at most 8) raw bits that [`ValueWriter::put_bits`] put.
    pub(crate) fn take_bits(&mut self, bits: u32) -> u32 {
        let quantile = self.state & (TOTAL - 1);
        let value = quantile >> (PRECISION - bits);
        self.take_symbol(quantile, raw_bits(value, bits));
        value
    }

    /// Takes the next value, coded with table `table`.
    pub(crate) fn take(&mut self, table: usize) -> Result<i16, EntropyError> {
        let at = |i: usize| self.class_base + usize::from(self.layout.offsets[i]);
        let (start, end) = (at(table), at(table + 1));
        let quantile = self.state & (TOTAL - 1);
        // The last code of the run whose cumulative frequency is at most `quantile` (the run
        // starts at 0, so there is one).
        let run = &self.tables.cumulative;
        let (mut a, mut b) = (0usize, end - start);
        while b - a > 1 {
            let mid = (a + b) / 2;
            if u32::from(run.get(start + mid)) <= quantile {
                a = mid;
            } else {
                b = mid;
            }
        }
        self.take_symbol(quantile, self.tables.interval(start, end, a));
        let (lo, hi) = (self.tables.lowest.get(table), self.tables.highest.get(table));
        // `a` <= hi − lo: inside the table.
        let symbol = lo + a as i16;
        let mut distance = 0u32;
        if symbol == lo || symbol == hi {
            distance = self.byte();
            if distance == LONG_DISTANCE {
                let high = self.byte();
                distance += (high << 8) | self.byte();
            }
        }
        // A table has at least three codes, so an escape lies at one end only.
        let value =
            if symbol == lo { i32::from(symbol) - distance as i32 } else { i32::from(symbol) + distance as i32 };
        // Beyond the i16 range: not what an encoder writes.
        i16::try_from(value).map_err(|_| EntropyError::Inconsistent)
    }

    /// Decoding retraces encoding back to its start: every word read, the state back at 0.
    pub(crate) fn finish(self) -> Result<(), EntropyError> {
        match (self.pos, self.state) {
            (0, 0) => Ok(()),
            _ => Err(EntropyError::Inconsistent),
        }
    }
}

/// The interval of `value` as one of `2^bits` equally likely symbols (`bits` at most 8).
fn raw_bits(value: u32, bits: u32) -> (u32, u32) {
    (value << (PRECISION - bits), 1 << (PRECISION - bits))
}

/// The interval of `value` (0..=255) as a uniform 8-bit symbol.
fn uniform_byte(value: u32) -> (u32, u32) {
    (value * ESCAPED_FREQUENCY, ESCAPED_FREQUENCY)
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use constriction::stream::model::SmallContiguousCategoricalEntropyModel;
    use constriction::stream::stack::SmallAnsCoder;
    use constriction::stream::{Decode, Encode};
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Owned arrays a [`CodeTables`] can borrow.
    #[derive(Clone, Debug)]
    pub(crate) struct OwnedTables {
        pub lowest: Vec<u8>,
        pub highest: Vec<u8>,
        pub cumulative: Vec<u8>,
        pub lags: Vec<u8>,
        pub classes: Vec<u8>,
    }

    /// The cumulative frequencies of `freqs` (which must sum to TOTAL), as blob bytes.
    fn cumulative_bytes(freqs: &[u16]) -> Vec<u8> {
        assert_eq!(freqs.iter().map(|&f| u32::from(f)).sum::<u32>(), TOTAL);
        freqs.iter().scan(0u16, |c, &f| Some(core::mem::replace(c, *c + f))).flat_map(u16::to_le_bytes).collect()
    }

    impl OwnedTables {
        /// Tables from per-latent `(lowest, frequencies)`; frequencies must sum to TOTAL.
        pub(crate) fn new(tables: &[(i16, Vec<u16>)]) -> Self {
            let mut t = OwnedTables {
                lowest: Vec::new(),
                highest: Vec::new(),
                cumulative: Vec::new(),
                lags: Vec::new(),
                classes: Vec::new(),
            };
            for (lo, freqs) in tables {
                t.lowest.extend_from_slice(&lo.to_le_bytes());
                t.highest.extend_from_slice(&(lo + freqs.len() as i16 - 1).to_le_bytes());
                t.cumulative.extend(cumulative_bytes(freqs));
            }
            t
        }

        /// The same tables in window classes: `class_frequencies` of the class table, and for
        /// each class after the first, the frequencies of every table (same lengths as
        /// `self`'s).
        pub(crate) fn with_classes(mut self, class_frequencies: &[u16], others: &[Vec<Vec<u16>>]) -> Self {
            self.classes = cumulative_bytes(class_frequencies);
            for class in others {
                class.iter().for_each(|freqs| self.cumulative.extend(cumulative_bytes(freqs)));
            }
            self
        }

        pub(crate) fn tables(&self) -> CodeTables<'_> {
            CodeTables {
                lowest: I16s::new(&self.lowest).unwrap(),
                highest: I16s::new(&self.highest).unwrap(),
                cumulative: U16s::new(&self.cumulative).unwrap(),
                lags: U8s::new(&self.lags).unwrap(),
                classes: U16s::new(&self.classes).unwrap(),
            }
        }

        /// The frequencies of `table` in `class`.
        fn frequencies(&self, class: usize, table: usize) -> Vec<u16> {
            let t = self.tables();
            let layout = t.layout();
            let (start, end) = (usize::from(layout.offsets[table]), usize::from(layout.offsets[table + 1]));
            let base = class * layout.span;
            (0..end - start).map(|j| t.interval(base + start, base + end, j).1 as u16).collect()
        }

        /// The frequencies of the window classes (one class of frequency TOTAL without them).
        fn class_frequencies(&self) -> Vec<u16> {
            let t = self.tables();
            match t.classes.len() {
                0 => std::vec![TOTAL as u16],
                n => (0..n).map(|c| class_interval(&t.classes, c).1 as u16).collect(),
            }
        }

        /// The class the encoder picks for the window of `codes` starting at `start`: the
        /// lowest of those with the fewest sixteenths of a bit by [`class_cost`], its codes
        /// clamped to their tables (as the module documentation says, not through the
        /// writer).
        fn cheapest_class(&self, codes: &[i16], start: usize) -> usize {
            let (t, k) = (self.tables(), self.tables().latents());
            let cost = |class: usize| -> u32 {
                let mut cost = class_cost(u32::from(self.class_frequencies()[class]));
                for i in start..start + k {
                    let (table, value) = self.table_and_value(codes, i);
                    let lo = t.lowest.get(table);
                    let j = (value.clamp(lo, t.highest.get(table)) - lo) as usize;
                    cost += class_cost(u32::from(self.frequencies(class, table)[j]));
                }
                cost
            };
            (0..t.class_count()).min_by_key(|&c| (cost(c), c)).unwrap()
        }

        /// The table of the code at `position` of `codes` and the value coded with it, as the
        /// module documentation says (not through [`Layout`]): a predicted latent's difference
        /// table is the latent count plus the number of predicted latents below it.
        fn table_and_value(&self, codes: &[i16], position: usize) -> (usize, i16) {
            let k = self.tables().latents();
            let latent = position % k;
            let lag = usize::from(self.lags.get(latent).copied().unwrap_or(0));
            if lag == 0 || position < lag * k {
                return (latent, codes[position]);
            }
            let below = self.lags[..latent].iter().filter(|&&l| l != 0).count();
            (k + below, codes[position].wrapping_sub(codes[position - lag * k]))
        }
    }

    /// Frequencies for `n` codes summing to TOTAL, each at least 1, drawn from `weights`.
    fn frequencies(weights: &[u32]) -> Vec<u16> {
        let sum: u64 = weights.iter().map(|&w| u64::from(w) + 1).sum();
        let spare = TOTAL as u64 - weights.len() as u64;
        let mut f: Vec<u16> = weights.iter().map(|&w| 1 + ((u64::from(w) + 1) * spare / sum) as u16).collect();
        let short = TOTAL - f.iter().map(|&x| u32::from(x)).sum::<u32>();
        f[0] += short as u16;
        f
    }

    prop_compose! {
        /// 1–4 latents, some of them predicted (lags 1–3), each with a table of 3–256 codes (and
        /// a difference table of its own when predicted), and 1–5 windows of codes: each coded
        /// value mostly inside its table, some at its ends, some just beyond them and some
        /// anywhere in the i16 range (escaped; a difference that wraps); the tables in 1 to
        /// [`MAX_CLASSES`] window classes, each class skewed its own way.
        fn tables_and_codes()(
            spans in prop::collection::vec((-1000i16..1000, 3usize..=256, any::<u64>()), 2..=8),
            latents in 1usize..=4,
            lags in prop::collection::vec(0u8..=3, 4),
            windows in 1usize..=5,
            classes in 1usize..=MAX_CLASSES,
            class_weights in prop::collection::vec(0u32..5000, MAX_CLASSES),
            seed in any::<u64>(),
        ) -> (OwnedTables, Vec<i16>) {
            let k = latents.min(spans.len());
            // Latent i is predicted when its lag is not 0 and a span is left for its table.
            let mut lags = lags[..k].to_vec();
            let mut n_tables = k;
            for lag in lags.iter_mut().filter(|l| **l != 0) {
                if n_tables < spans.len() { n_tables += 1 } else { *lag = 0 }
            }
            let mut rng = seed;
            let mut next = move || { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (rng >> 33) as u32 };
            let tables: Vec<(i16, Vec<u16>)> = spans[..n_tables].iter().map(|&(lo, n, s)| {
                // Skewed weights: a few likely codes, many rare ones.
                let weights: Vec<u32> = (0..n).map(|j| if (s >> (j % 64)) & 1 == 1 { 1000 } else { 1 }).collect();
                (lo, frequencies(&weights))
            }).collect();
            let mut owned = OwnedTables { lags, ..OwnedTables::new(&tables) };
            if classes > 1 {
                let others: Vec<Vec<Vec<u16>>> = (1..classes).map(|class| spans[..n_tables].iter().map(|&(_, n, s)| {
                    let s = s.rotate_left(7 * class as u32);
                    frequencies(&(0..n).map(|j| if (s >> (j % 64)) & 1 == 1 { 1000 } else { 1 }).collect::<Vec<u32>>())
                }).collect()).collect();
                owned = owned.with_classes(&frequencies(&class_weights[..classes]), &others);
            }
            let mut codes: Vec<i16> = std::vec![0; windows * k];
            for i in 0..codes.len() {
                let (table, _) = owned.table_and_value(&codes, i);
                let (lo, f) = &tables[table];
                let value = match next() % 10 {
                    0 => next() as u16 as i16,
                    1 => *lo,
                    2 => *lo - (next() % 300) as i16,
                    3 => [i16::MIN, i16::MAX][next() as usize % 2],
                    _ => *lo + (next() as usize % f.len()) as i16,
                };
                // The code whose coded value (a difference, for a predicted latent) is `value`.
                let before = usize::from(owned.lags.get(i % k).copied().unwrap_or(0)) * k;
                codes[i] = if table >= k { codes[i - before].wrapping_add(value) } else { value };
            }
            (owned, codes)
        }
    }

    fn reference_model(t: &OwnedTables, class: usize, table: usize) -> SmallContiguousCategoricalEntropyModel {
        SmallContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
            t.frequencies(class, table),
            false,
        )
        .unwrap()
    }

    /// The window classes as a constriction model.
    fn class_model(t: &OwnedTables) -> SmallContiguousCategoricalEntropyModel {
        SmallContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(t.class_frequencies(), false)
            .unwrap()
    }

    /// The uniform 8-bit symbols after an escape, as a constriction model.
    fn escaped_model() -> SmallContiguousCategoricalEntropyModel {
        SmallContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
            std::vec![ESCAPED_FREQUENCY as u16; 256],
            false,
        )
        .unwrap()
    }

    /// The symbols the reference coder sees for `code` of a latent whose table starts at `lo` and
    /// has `n` codes, in decoding order: its index in the table (its end when beyond it), then,
    /// at an end, the distance beyond it as 8-bit symbols (one, or 255 and two more).
    fn reference_symbols(code: i16, lo: i16, n: usize) -> (usize, Vec<usize>) {
        let (lo, hi) = (i32::from(lo), i32::from(lo) + n as i32 - 1);
        let symbol = i32::from(code).clamp(lo, hi);
        let mut escaped = Vec::new();
        if symbol == lo || symbol == hi {
            let d = (i32::from(code) - symbol).unsigned_abs() as usize;
            escaped.push(d.min(255));
            if d >= 255 {
                escaped.extend([(d - 255) >> 8, (d - 255) & 0xFF]);
            }
        }
        ((symbol - lo) as usize, escaped)
    }

    proptest! {
        #[test]
        fn constriction_decodes_what_the_device_coder_writes((owned, codes) in tables_and_codes()) {
            let t = owned.tables();
            prop_assert_eq!(t.validate(t.latents()), Ok(()));
            let mut out = [0u8; 2048];
            let n = t.encode(&codes, &mut out).unwrap();
            let words: Vec<u16> = out[..n].chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect();
            let mut reference = SmallAnsCoder::from_compressed(words).unwrap();
            let k = t.latents();
            let mut class = 0;
            for i in 0..codes.len() {
                if i % k == 0 && !owned.classes.is_empty() {
                    class = reference.decode_symbol(class_model(&owned)).unwrap();
                    prop_assert_eq!(class, owned.cheapest_class(&codes, i), "the cheapest class");
                }
                let (table, value) = owned.table_and_value(&codes, i);
                let (symbol, escaped) = reference_symbols(value, t.lowest.get(table), owned.frequencies(class, table).len());
                prop_assert_eq!(reference.decode_symbol(reference_model(&owned, class, table)).unwrap(), symbol);
                for e in escaped {
                    prop_assert_eq!(reference.decode_symbol(escaped_model()).unwrap(), e);
                }
            }
            prop_assert!(reference.is_empty());
            let mut back = std::vec![0i16; codes.len()];
            t.decode(&out[..n], &mut back).unwrap();
            prop_assert_eq!(back, codes);
        }

        #[test]
        fn the_device_decoder_reads_what_constriction_writes((owned, codes) in tables_and_codes()) {
            let t = owned.tables();
            let mut reference = SmallAnsCoder::new();
            let k = t.latents();
            for window in (0..codes.len()).step_by(k).rev() {
                let class = owned.cheapest_class(&codes, window);
                for i in (window..window + k).rev() {
                    let (table, value) = owned.table_and_value(&codes, i);
                    let (symbol, escaped) = reference_symbols(value, t.lowest.get(table), owned.frequencies(class, table).len());
                    for &e in escaped.iter().rev() {
                        reference.encode_symbol(e, escaped_model()).unwrap();
                    }
                    reference.encode_symbol(symbol, reference_model(&owned, class, table)).unwrap();
                }
                if !owned.classes.is_empty() {
                    reference.encode_symbol(class, class_model(&owned)).unwrap();
                }
            }
            let words = reference.into_compressed().unwrap();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let mut ours = [0u8; 2048];
            let n = t.encode(&codes, &mut ours).unwrap();
            prop_assert_eq!(&ours[..n], &bytes[..], "same bytes as the reference");
            let mut back = std::vec![0i16; codes.len()];
            t.decode(&bytes, &mut back).unwrap();
            prop_assert_eq!(back, codes);
        }

        /// Any bytes: the decoder answers, never panics, and what it accepts re-encodes to them
        /// (to codes that decode the same, with window classes: a payload may send a window
        /// with a class other than the cheapest, which this encoder would not pick).
        #[test]
        fn arbitrary_payloads_decode_or_are_refused(
            (owned, codes) in tables_and_codes(),
            payload in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let t = owned.tables();
            let mut back = std::vec![0i16; codes.len()];
            if t.decode(&payload, &mut back).is_ok() {
                let mut again = [0u8; 2048];
                let n = t.encode(&back, &mut again).unwrap();
                if owned.classes.is_empty() {
                    prop_assert_eq!(&again[..n], &payload[..]);
                }
                let mut twice = std::vec![0i16; codes.len()];
                t.decode(&again[..n], &mut twice).unwrap();
                prop_assert_eq!(twice, back);
            }
        }
    }

    #[test]
    fn the_class_cost_is_the_information_content_to_a_sixteenth_of_a_bit() {
        for freq in 1..=TOTAL {
            let exact = 16.0 * (f64::from(PRECISION) - f64::from(freq).log2());
            assert!((f64::from(class_cost(freq)) - exact).abs() <= 1.05, "{freq}: {} vs {exact}", class_cost(freq));
        }
    }

    /// A quiet class and a busy one (four latents with the same tables): each window goes with
    /// the class that suits it, and the stream is shorter than with either class's tables
    /// alone.
    #[test]
    fn each_window_goes_with_the_class_that_codes_it_in_fewest_bits() {
        let quiet = std::vec![2, 2, 3, 4082, 3, 2, 2];
        let busy = std::vec![200, 600, 800, 900, 800, 600, 196];
        let four = |freqs: &Vec<u16>| std::vec![(-3, freqs.clone()); 4];
        let switched = OwnedTables::new(&four(&quiet)).with_classes(&[2048, 2048], &[std::vec![busy.clone(); 4]]);
        assert_eq!(switched.tables().validate(4), Ok(()));
        let codes: Vec<i16> = (0..64).map(|i| if i < 32 { 0 } else { [-2, -1, 1, 2][i % 4] }).collect();
        let length = |t: &OwnedTables| {
            let mut out = [0u8; 256];
            let n = t.tables().encode(&codes, &mut out).unwrap();
            let mut back = [0i16; 64];
            t.tables().decode(&out[..n], &mut back).unwrap();
            assert_eq!(back.to_vec(), codes);
            n
        };
        let (n, quiet_only, busy_only) =
            (length(&switched), length(&OwnedTables::new(&four(&quiet))), length(&OwnedTables::new(&four(&busy))));
        assert!(n < quiet_only && n < busy_only, "{n} bytes switched, {quiet_only} quiet, {busy_only} busy");
        for window in (0..codes.len()).step_by(4) {
            assert_eq!(switched.cheapest_class(&codes, window), usize::from(window >= 32), "window at {window}");
        }
    }

    #[test]
    fn codes_at_and_beyond_the_table_ends_round_trip() {
        // Latent 0 spans the whole i8 range with one likely code; latent 1 is -1 ..= 1, 0 likely.
        let mut f0 = std::vec![1u16; 256];
        f0[128] = (TOTAL - 255) as u16;
        let owned = OwnedTables::new(&[(-128, f0), (-1, std::vec![1, 4094, 1])]);
        let t = owned.tables();
        assert_eq!(t.validate(2), Ok(()));
        let codes: Vec<i16> = [-126, 0, 126, 0, 0, 0, -1, 0].into_iter().cycle().take(64).collect();
        let mut out = [0u8; 512];
        let n = t.encode(&codes, &mut out).unwrap();
        // Latent 0's rare codes inside its table cost 12 bits each, its likely ones under a
        // bit in all.
        assert!(n * 8 <= 16 * 12 + 8 * 12 + 8 + 16, "{n} bytes");
        let mut back = [0i16; 64];
        t.decode(&out[..n], &mut back).unwrap();
        assert_eq!(back.to_vec(), codes);
        // Every i16 code travels: 8 bits more than its escape's 12 within 254 of the table, 24
        // bits more beyond.
        let near: Vec<i16> = (-255..=-2).chain(2..=255).flat_map(|c| [0, c]).collect();
        let mut out = [0u8; 2048];
        let n = t.encode(&near, &mut out).unwrap();
        assert!(n * 8 >= 508 * 20 && n * 8 <= 508 * 21 + 32, "{n} bytes");
        let mut back = [0i16; 1016];
        t.decode(&out[..n], &mut back).unwrap();
        assert_eq!(back.to_vec(), near);
        let far: Vec<i16> = [i16::MIN, -257, -256, 256, 257, 1000, i16::MAX].iter().flat_map(|&c| [c, c]).collect();
        let n = t.encode(&far, &mut out).unwrap();
        assert!(n * 8 <= 14 * 36 + 32, "{n} bytes");
        let mut back = [0i16; 14];
        t.decode(&out[..n], &mut back).unwrap();
        assert_eq!(back.to_vec(), far);
    }

    /// A level that leaves its table: each code alone is escaped (about 20 bits); predicted, a
    /// frame pays that once and then its changes, wrapping at the ends of the i16 range.
    #[test]
    fn a_predicted_latent_costs_its_changes() {
        let tables = [(-2, std::vec![1, 1000, 2094, 1000, 1]), (-2, std::vec![1, 100, 3894, 100, 1])];
        let alone = OwnedTables::new(&tables[..1]);
        let predicted = OwnedTables { lags: std::vec![1], ..OwnedTables::new(&tables) };
        assert_eq!(predicted.tables().validate(1), Ok(()));
        for start in [100i16, i16::MAX - 10] {
            let codes: Vec<i16> = (0..32).map(|i| start.wrapping_add(i / 4)).collect();
            let mut out = [0u8; 256];
            let n_alone = alone.tables().encode(&codes, &mut out).unwrap();
            let n = predicted.tables().encode(&codes, &mut out).unwrap();
            assert!(n_alone >= 32 * 20 / 8 && n <= 12, "{n_alone} bytes alone, {n} predicted");
            let mut back = [0i16; 32];
            predicted.tables().decode(&out[..n], &mut back).unwrap();
            assert_eq!(back.to_vec(), codes);
        }
    }

    #[test]
    fn a_value_has_its_class_s_frequency_and_values_at_or_past_the_ends_are_escaped() {
        let one_class = OwnedTables::new(&[(-2, std::vec![100, 1000, 2896, 50, 50]), (0, std::vec![4000, 90, 6])]);
        let owned = one_class
            .clone()
            .with_classes(&[3000, 1096], &[std::vec![std::vec![50, 50, 3896, 50, 50], std::vec![96, 3990, 10]]]);
        let t = owned.tables();
        assert_eq!(t.frequency(0, 0, 0), (2896, false));
        assert_eq!(t.frequency(0, 0, -1), (1000, false));
        assert_eq!(t.frequency(0, 0, -2), (100, true));
        assert_eq!(t.frequency(0, 0, -700), (100, true));
        assert_eq!(t.frequency(0, 0, 2), (50, true));
        assert_eq!(t.frequency(1, 0, 0), (3896, false));
        assert_eq!(t.frequency(1, 1, 1), (3990, false));
        assert_eq!(t.frequency(1, 1, 9), (10, true));
        for (class, table) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let lowest = t.lowest.get(table);
            for (j, &f) in owned.frequencies(class, table).iter().enumerate() {
                assert_eq!(t.frequency(class, table, lowest + j as i16).0, u32::from(f));
            }
        }
        assert_eq!([t.class_frequency(0), t.class_frequency(1)], [3000, 1096]);
        assert_eq!(one_class.tables().class_frequency(0), TOTAL);
    }

    #[test]
    fn a_distance_beyond_the_i16_range_is_refused() {
        let owned = OwnedTables::new(&[(-1, std::vec![1000, 2096, 1000])]);
        let t = owned.tables();
        // The top escape (1), then a distance of 255 + 0xFFFF: past i16::MAX.
        let mut forged = SmallAnsCoder::new();
        for symbol in [0xFF, 0xFF, 255] {
            forged.encode_symbol(symbol as usize, escaped_model()).unwrap();
        }
        forged.encode_symbol(2usize, reference_model(&owned, 0, 0)).unwrap();
        let bytes: Vec<u8> = forged.into_compressed().unwrap().iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut back = [0i16; 1];
        assert_eq!(t.decode(&bytes, &mut back), Err(EntropyError::Inconsistent));
    }

    #[test]
    fn the_most_likely_codes_cost_next_to_nothing() {
        let owned = OwnedTables::new(&[(-2, std::vec![1, 4093, 1, 1])]);
        let t = owned.tables();
        let mut out = [0u8; 16];
        // 60 codes of probability 4093/4096: 0.06 bits in all, rounded up to 0 or 1 word.
        assert!(t.encode(&[-1; 60], &mut out).unwrap() <= 2);
        let mut back = [9i16; 60];
        let n = t.encode(&[-1; 60], &mut out).unwrap();
        t.decode(&out[..n], &mut back).unwrap();
        assert_eq!(back, [-1; 60]);
    }

    #[test]
    fn misuse_is_an_error() {
        let owned = OwnedTables::new(&[(0, std::vec![1024, 2048, 1024]), (-1, std::vec![1, 4094, 1])]);
        let t = owned.tables();
        let mut out = [0u8; 4];
        assert_eq!(t.encode(&[0, 0, 1], &mut out), Err(EntropyError::CodeCount));
        assert_eq!(t.encode(&[1, 0].repeat(40), &mut out), Err(EntropyError::BufferTooSmall));
        let mut codes = [0i16; 2];
        assert_eq!(t.decode(&[1], &mut codes), Err(EntropyError::Inconsistent));
        assert_eq!(t.decode(&[0, 0], &mut codes), Err(EntropyError::Inconsistent), "a zero top word");
    }

    #[test]
    fn invalid_tables_are_refused() {
        let good = OwnedTables::new(&[(0, std::vec![1024, 2048, 1024])]);
        assert_eq!(good.tables().validate(1), Ok(()));
        assert_eq!(good.tables().validate(2), Err("code tables: one per latent and one more per predicted latent"));
        let predicted = OwnedTables { lags: std::vec![1], ..good.clone() };
        assert_eq!(
            predicted.tables().validate(1),
            Err("code tables: one per latent and one more per predicted latent"),
            "a predicted latent without its difference table"
        );
        let two = OwnedTables::new(&std::vec![(0, std::vec![1024, 2048, 1024]); 2]);
        let beyond = OwnedTables { lags: std::vec![1, 0], ..two.clone() };
        assert_eq!(beyond.tables().validate(1), Err("code tables: no lags, or one per latent"));
        let ok = OwnedTables { lags: std::vec![3], ..two };
        assert_eq!(ok.tables().validate(1), Ok(()));
        let two = OwnedTables::new(&[(0, std::vec![2048, 2048])]);
        assert!(two.tables().validate(1).is_err(), "two codes: nothing but escapes");
        let mut t = good.clone();
        t.cumulative[0] = 1; // does not start at 0
        assert!(t.tables().validate(1).is_err());
        let mut t = good.clone();
        t.cumulative[2..4].copy_from_slice(&0u16.to_le_bytes()); // a zero frequency
        assert!(t.tables().validate(1).is_err());
        let mut t = good.clone();
        t.cumulative[2..4].copy_from_slice(&4096u16.to_le_bytes()); // reaches TOTAL
        assert!(t.tables().validate(1).is_err());
        let mut t = good.clone();
        t.highest[0] = 3; // four codes, three frequencies
        assert!(t.tables().validate(1).is_err());
        let mut t = good.clone();
        t.lowest[0] = 5; // above highest
        assert!(t.tables().validate(1).is_err());
        let wide = OwnedTables::new(&[(300, std::vec![1; 257].into_iter().chain([4096 - 257]).collect())]);
        assert!(wide.tables().validate(1).is_err(), "258 codes");
        let mut t = good;
        t.lowest[1] = 0x80; // -32768 + 0: far below highest, a table of 32 771 codes
        assert!(t.tables().validate(1).is_err());
    }
}
