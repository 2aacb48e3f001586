//! The error-bounded residual coder (`funnel_shared::residual`) fitted to a recording's training
//! part: its prediction, block classes and tables.

use funnel_shared::blob::{I16s, U16s};
use funnel_shared::residual::{
    block_class, block_level, residual_bins, symbol_of, Adaptive, Quantizer, ResidualError, ResidualSpec, MAX_CLASSES,
    MAX_SEGMENTS, PREDICTION_BITS,
};

use crate::blob::{code_length, fit_table, OwnedCodeTables};

/// Prediction orders [`OwnedResidualSpec::fit`] tries.
pub const PREDICTION_ORDERS: [usize; 4] = [0, 1, 2, 4];
/// Adaptive stages [`OwnedResidualSpec::fit`] tries with each prediction order, as
/// `(order, step shift)`: none, the few that a study of six channels (ECG, IMU) put first on
/// held-out data (order 8 with a step of 2^−5 did best on most), and their neighbours (orders
/// 4 to 16, steps 2^−4 to 2^−7). The neighbours, against the first six alone, on the held-out
/// sweep of `funnel bench rd` (8 channels, every bound): lossless 0.09 % fewer bits on
/// average and never more (acc_z on the window-32 split 8.161 → 8.123, below FLAC's 8.149),
/// bounded 0.24 % fewer on average (up to 4.8 % on mag_z, up to 1.3 % more at three points,
/// where the training part chose otherwise than the held-out part would have).
pub const ADAPTIVE_STAGES: [(u8, u8); 12] =
    [(0, 0), (4, 4), (8, 4), (8, 5), (16, 5), (16, 6), (4, 5), (8, 6), (16, 4), (16, 7), (12, 5), (12, 6)];
/// Block lengths [`OwnedResidualSpec::fit`] tries for the prediction and adaptive stage it
/// chose (the first is the one it chooses them with). Against blocks of 32 alone, on the held-out
/// sweep of `funnel bench rd` (8 channels, every bound): 16 took 4–9 % fewer bits on the PV
/// power and up to 1.5 % fewer on the ECG, 64 up to 3 % fewer on mag_z; each lost on the other
/// channels.
pub const BLOCK_LENGTHS: [u8; 3] = [32, 16, 64];
/// Block classes [`OwnedResidualSpec::fit`] aims at (fewer when the blocks' levels repeat).
pub const FITTED_CLASSES: usize = 8;
/// Most times [`OwnedResidualSpec::fit`] refits the chosen coder's class tables to the blocks
/// that chose them. Once gained 1.6 % bounded and 1.0 % lossless on average (every bound of
/// `funnel bench rd`'s sweep, 8 held-out channels) and lost nowhere; four times gained more on
/// average (2.0 % bounded) but lost up to 2.3 % on mag_z.
pub const CLASS_MOVES: usize = 1;

/// A [`ResidualSpec`] as owned arrays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedResidualSpec {
    max_error: u16,
    prediction: Vec<u8>,
    adaptive: Adaptive,
    block: u8,
    class_bounds: Vec<u8>,
    tables: OwnedCodeTables,
}

impl OwnedResidualSpec {
    /// A copy of a borrowed spec.
    pub fn of(spec: &ResidualSpec<'_>) -> Self {
        OwnedResidualSpec {
            max_error: spec.max_error,
            prediction: spec.prediction.iter().flat_map(i16::to_le_bytes).collect(),
            adaptive: spec.adaptive,
            block: spec.block,
            class_bounds: spec.class_bounds.iter().flat_map(u16::to_le_bytes).collect(),
            tables: OwnedCodeTables::of(&spec.tables),
        }
    }

    pub fn spec(&self) -> ResidualSpec<'_> {
        ResidualSpec {
            max_error: self.max_error,
            prediction: I16s::new(&self.prediction).expect("two bytes per coefficient"),
            adaptive: self.adaptive,
            block: self.block,
            class_bounds: U16s::new(&self.class_bounds).expect("two bytes per bound"),
            tables: self.tables.tables(),
        }
    }

    /// Fits the coder for bound `max_error` (counts) to `samples` against `base` (none: 0; the training
    /// part, coded in segments of `segment` samples, each from an empty history, as they will
    /// be sent): for each order of [`PREDICTION_ORDERS`], least-squares prediction coefficients
    /// of the residual `samples − base`; with each of [`ADAPTIVE_STAGES`], the closed-loop bins,
    /// block classes (bounds at quantiles of the blocks' levels, each block then moved to its
    /// cheapest class) and a table of the bins' symbols per class (and one for the classes);
    /// keeps the pair whose bins cost the fewest bits (ideal code lengths, raw bits included),
    /// its tables then refitted up to [`CLASS_MOVES`] times to the blocks that chose them, in
    /// blocks of each of [`BLOCK_LENGTHS`] in turn: the fewest bits win.
    pub fn fit(samples: &[i16], base: Option<&[i16]>, max_error: u16, segment: usize) -> Result<Self, ResidualError> {
        if base.is_some_and(|b| b.len() != samples.len()) || segment == 0 {
            return Err(ResidualError::Length);
        }
        let base_at = |t: usize| base.map_or(0.0, |b| f64::from(b[t]));
        let residual: Vec<f64> = samples.iter().enumerate().map(|(t, &x)| f64::from(x) - base_at(t)).collect();
        let mut best: Option<(f64, OwnedResidualSpec)> = None;
        for order in PREDICTION_ORDERS {
            let coefficients = least_squares(&residual, order);
            let prediction: Vec<i16> = coefficients
                .iter()
                .map(|c| (c * f64::from(1u32 << PREDICTION_BITS)).round().clamp(-32768.0, 32767.0) as i16)
                .collect();
            let prediction_bytes: Vec<u8> = prediction.iter().flat_map(|c| c.to_le_bytes()).collect();
            for (order, shift) in ADAPTIVE_STAGES {
                let quantizer = Quantizer {
                    max_error,
                    prediction: I16s::new(&prediction_bytes).expect("two bytes each"),
                    adaptive: Adaptive { order, shift },
                };
                let (bits, fitted) = Self::fit_tables(quantizer, samples, base, segment, BLOCK_LENGTHS[0], 0)?;
                if best.as_ref().is_none_or(|(fewest, _)| bits < *fewest) {
                    best = Some((bits, fitted));
                }
            }
        }
        let chosen = best.expect("at least one prediction order").1;
        // The refits are for the chosen pair alone: they gain more on the part they are fitted
        // to for some pairs than for others, and choosing after them took, on acc_z, a pair
        // without the adaptive stage (8.231 bits/sample held out, against 8.155).
        let mut best: Option<(f64, OwnedResidualSpec)> = None;
        for block in BLOCK_LENGTHS {
            let (bits, fitted) =
                Self::fit_tables(chosen.spec().quantizer(), samples, base, segment, block, CLASS_MOVES)?;
            if best.as_ref().is_none_or(|(fewest, _)| bits < *fewest) {
                best = Some((bits, fitted));
            }
        }
        Ok(best.expect("at least one block length").1)
    }

    /// For one quantizer (bound, prediction, adaptive stage): the closed-loop bins of `samples`,
    /// in blocks of `block`, block classes (bounds at quantiles of the blocks' levels, each block then in its
    /// cheapest class, the tables refitted up to `moves` times) and a table of the
    /// bins' symbols per class (and one for the classes); returns the bits they cost (ideal code lengths, raw bits
    /// and the segments' adaptive-stage bits included) and the coder.
    fn fit_tables(
        quantizer: Quantizer<'_>,
        samples: &[i16],
        base: Option<&[i16]>,
        segment: usize,
        block: u8,
        moves: usize,
    ) -> Result<(f64, OwnedResidualSpec), ResidualError> {
        let mut bins = samples.to_vec();
        let mut spare = vec![0u8; 2 * segment.min(samples.len())];
        // `residual_bins` takes at most MAX_SEGMENTS segments a call.
        let span = segment.saturating_mul(MAX_SEGMENTS);
        for (p, part) in bins.chunks_mut(span).enumerate() {
            let base = base.map(|b| &b[p * span..p * span + part.len()]);
            residual_bins(quantizer, base, part, segment, &mut spare)?;
        }
        let blocks: Vec<&[i16]> = bins.chunks(segment).flat_map(|s| s.chunks(block.into())).collect();
        let symbols: Vec<Vec<i32>> =
            blocks.iter().map(|b| b.iter().map(|&q| i32::from(symbol_of(q).0)).collect()).collect();
        let raw: f64 = bins.iter().map(|&q| f64::from(symbol_of(q).2)).sum();
        // One bit per segment says whether it runs the adaptive stage.
        let choices = if quantizer.adaptive.order > 0 { samples.len().div_ceil(segment) } else { 0 };
        let bounds = class_bounds(&blocks);
        let count = bounds.len() + 1;
        let mut classes: Vec<usize> = blocks.iter().map(|b| block_class(b, bounds.iter().copied())).collect();
        let (mut tables, mut bits) = (Vec::new(), f64::INFINITY);
        // The blocks start in classes by their levels; then, a few times over, each class's
        // table is fitted to its blocks and each block moves to the class that codes it (and
        // the class itself) in the fewest bits, as the sender picks it.
        for _ in 0..=moves {
            let fitted = fit_class_tables(&symbols, &classes, count);
            let (moved, moved_bits) = cheapest_classes(&fitted, &symbols);
            if moved_bits + raw + choices as f64 >= bits {
                break;
            }
            (tables, bits, classes) = (fitted, moved_bits + raw + choices as f64, moved);
        }
        let fitted = OwnedResidualSpec {
            max_error: quantizer.max_error,
            prediction: quantizer.prediction.iter().flat_map(i16::to_le_bytes).collect(),
            adaptive: quantizer.adaptive,
            block,
            class_bounds: bounds.iter().flat_map(|b| b.to_le_bytes()).collect(),
            tables: OwnedCodeTables::of_tables(&tables),
        };
        fitted.spec().validate()?;
        Ok((bits, fitted))
    }
}

/// The table of the classes (table 0), then one table of the bins' symbols per class, fitted
/// to the blocks' `symbols` in `classes` (`count` classes).
fn fit_class_tables(symbols: &[Vec<i32>], classes: &[usize], count: usize) -> Vec<(i32, Vec<u16>)> {
    let mut tables = vec![fit_table(classes.iter().map(|&c| c as i32).collect())];
    for class in 0..count {
        let members = symbols.iter().zip(classes).filter(|(_, &c)| c == class);
        tables.push(fit_table(members.flat_map(|(s, _)| s.iter().copied()).collect()));
    }
    tables
}

/// Each block's cheapest class under `tables` (as [`fit_class_tables`] makes them: the class
/// and the block's symbols in ideal code lengths; the lowest on a tie), and the bits of all.
fn cheapest_classes(tables: &[(i32, Vec<u16>)], symbols: &[Vec<i32>]) -> (Vec<usize>, f64) {
    let mut total = 0.0;
    let classes = symbols
        .iter()
        .map(|block| {
            let cost = |c: usize| code_length(&tables[0], &[c as i32]) + code_length(&tables[1 + c], block);
            let best = (1..tables.len() - 1).fold(0, |best, c| if cost(c) < cost(best) { c } else { best });
            total += cost(best);
            best
        })
        .collect();
    (classes, total)
}

/// Class bounds at the quantiles of the blocks' levels: up to [`FITTED_CLASSES`] classes of
/// about as many blocks each, rising strictly (none for no blocks).
fn class_bounds(blocks: &[&[i16]]) -> Vec<u16> {
    let mut levels: Vec<u32> = blocks.iter().map(|b| block_level(b)).collect();
    levels.sort_unstable();
    let mut bounds: Vec<u16> = Vec::new();
    for i in 1..FITTED_CLASSES.min(MAX_CLASSES) {
        let Some(&level) = levels.get(i * levels.len() / FITTED_CLASSES) else { break };
        let level = u16::try_from(level).unwrap_or(u16::MAX);
        // The last class takes everything above the top bound: a bound at the top level leaves
        // it empty.
        if bounds.last().is_none_or(|&b| level > b) && Some(&u32::from(level)) != levels.last() {
            bounds.push(level);
        }
    }
    bounds
}

/// Least-squares coefficients of the linear prediction of `v[t]` from `v[t − 1] … v[t − order]`
/// (zero for a singular system).
fn least_squares(v: &[f64], order: usize) -> Vec<f64> {
    if order == 0 || v.len() <= order {
        return vec![0.0; order];
    }
    // Normal equations A c = b, A[i][j] = Σ v[t−1−i] v[t−1−j], b[i] = Σ v[t] v[t−1−i].
    let mut a = vec![vec![0.0f64; order + 1]; order];
    for t in order..v.len() {
        for i in 0..order {
            for j in 0..order {
                a[i][j] += v[t - 1 - i] * v[t - 1 - j];
            }
            a[i][order] += v[t] * v[t - 1 - i];
        }
    }
    // Gaussian elimination with partial pivoting on the augmented matrix.
    for col in 0..order {
        let pivot = (col..order).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).expect("rows left");
        a.swap(col, pivot);
        if a[col][col].abs() < 1e-9 {
            return vec![0.0; order];
        }
        let pivot_row = a[col].clone();
        for (_, row) in a.iter_mut().enumerate().filter(|(r, _)| *r != col) {
            let factor = row[col] / pivot_row[col];
            row.iter_mut().zip(&pivot_row).skip(col).for_each(|(x, p)| *x -= factor * p);
        }
    }
    (0..order).map(|i| a[i][order] / a[i][i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_finds_an_exact_recursion() {
        // v[t] = 1.5 v[t−1] − 0.7 v[t−2].
        let mut v = vec![1.0, 2.0];
        for t in 2..200 {
            v.push(1.5 * v[t - 1] - 0.7 * v[t - 2]);
        }
        let c = least_squares(&v, 2);
        assert!((c[0] - 1.5).abs() < 1e-6 && (c[1] + 0.7).abs() < 1e-6, "{c:?}");
        assert_eq!(least_squares(&[0.0; 50], 2), vec![0.0, 0.0]);
    }

    /// On a smooth signal the fit predicts, and the bins of a held-out stretch cost a few bits
    /// a sample at a bound of 2 counts, within it on every sample.
    #[test]
    fn a_fitted_coder_predicts_and_keeps_its_bound() {
        let signal: Vec<i16> =
            (0..6000).map(|t| (2000.0 * (t as f64 / 40.0).sin() + ((t * 7919) % 11) as f64) as i16).collect();
        let (train, held) = signal.split_at(5000);
        let fitted = OwnedResidualSpec::fit(train, None, 2, 1024).unwrap();
        let spec = fitted.spec();
        assert_eq!(spec.validate(), Ok(()));
        assert!(!spec.prediction.is_empty(), "a sine is predictable");
        assert!(spec.classes() > 1);
        let n = held.len();
        let (mut bins, mut out) = (held.to_vec(), vec![0u8; 4 * n]);
        let bytes = spec.encode(None, &mut bins, 1024, &mut out).unwrap();
        assert!(8 * bytes < 3 * n, "{} bits/sample", 8.0 * bytes as f64 / n as f64);
        let mut rebuilt = vec![0i16; n];
        spec.decode(&out[..bytes], None, 1024, &mut rebuilt).unwrap();
        assert!(held.iter().zip(&rebuilt).all(|(x, r)| x.abs_diff(*r) <= 2));
    }
}
