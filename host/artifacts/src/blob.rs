//! `encoder.fq8`, the device's model blob, as a validated value: parsed once, its model id
//! checked against the hash of its payload, its facts at hand without parsing again.

use funnel_shared::blob::{BlobError, I16s, ModelBlob, U16s, U8s, HEADER_LEN, TRAILER_LEN};
use funnel_shared::encoder::QuantizedEncoder;
use funnel_shared::entropy::{CodeTables, EntropyError, MAX_TABLE_CODES, PRECISION, TOTAL};
use funnel_shared::stream::to_counts;
use funnel_shared::wire::{DataFrame, ModelId, MAX_CODES};

use crate::data::channels_first_to_interleaved;
use crate::residual::OwnedResidualSpec;
use funnel_shared::residual::{ResidualError, ResidualSpec};
use funnel_shared::stream::latent_base;
use sha2::{Digest, Sha256};
use std::ops::Range;

/// Why bytes are not a usable model blob.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobCheckError {
    /// The format check of the `shared` parser (the firmware's) failed.
    #[error(transparent)]
    Format(#[from] BlobError),
    /// The header's model id is not the one its payload hashes to: the blob was edited or
    /// assembled by hand, and frames it makes could pass for another model's.
    #[error("model blob id {stored} does not match its payload (which hashes to {computed})")]
    IdMismatch { stored: ModelId, computed: ModelId },
}

/// The model id: the first bytes of SHA-256 of the blob payload.
pub fn model_id_of(payload: &[u8]) -> ModelId {
    let digest = Sha256::digest(payload);
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest[..4]);
    ModelId(id)
}

/// Entropy-coding tables as owned arrays (the blob's [`CodeTables`] borrow them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedCodeTables {
    lowest: Vec<u8>,
    highest: Vec<u8>,
    cumulative: Vec<u8>,
    lags: Vec<u8>,
    classes: Vec<u8>,
}

/// Most codes a table leaves room for on each side of those seen in training, as a fraction of
/// the span seen (at least [`MIN_TABLE_MARGIN`] codes, within [`MAX_TABLE_CODES`] in all): live
/// signals drift past the training extremes, and a code at or beyond a table's end costs 8 bits
/// more (it is escaped).
pub const TABLE_MARGIN: f64 = 0.25;
pub const MIN_TABLE_MARGIN: i32 = 4;
/// Most windows back a latent is predicted from (see [`OwnedCodeTables::fit`]): a slow level
/// needs 1, a daily cycle of a few windows a day a few more.
pub const MAX_PREDICTION_LAG: usize = 8;
/// A lag over 1 is chosen only where it saves at least 5 % of the bits: measured during
/// development, accelerometer and ECG latents whose training part favoured lags of 3 or 4 by
/// 1–4 % sent their held-out parts in more bits with them than with lag 1 (a gait's rhythm
/// changes), while PV's daily cycle (three windows a day) saved 9–24 % with lag 3 on the
/// training part and 6–24 % held out.
pub const LONGER_LAG_GAIN: f64 = 0.95;
/// Window classes the tables are fitted in (the format takes up to
/// [`MAX_CLASSES`](funnel_shared::entropy::MAX_CLASSES)). Measured
/// during development, held out, on the ECG at 0.5, 1 and 2 bits/sample and the IMU's acc_z:
/// four classes sent no fewer bits for the same error than two (ECG: 0.56, 0.63, 0.82 × the
/// PCA transform coder with four, 0.56, 0.64, 0.81 with two; acc_z 1.16, 1.09, 1.02 against
/// 1.14, 1.07, 0.94) and took twice the flash for their tables.
pub const FITTED_CLASSES: usize = 2;
/// Window classes are kept only where they send the training part's frames in 98 % of the
/// bytes or fewer: their tables take flash again. (The choice is made on the frames the tables
/// were fitted to; choosing on frames held out of the fit — the training part's last quarter
/// — refused the classes on the IMU, whose training part is ten frames, although they sent
/// its held-out part in fewer bits for the same error.)
pub const CLASS_GAIN: f64 = 0.98;
/// Fewest windows window classes are fitted to. Fitted to fewer, their tables flatter the
/// training part: on 100 windows of the ECG (a test's 4,000 samples) the code step searched for
/// 1.5 bits/sample on the training part sent the held-out part in 2.1. The IMU's training part
/// (315 windows) gains held out.
pub const MIN_CLASS_WINDOWS: usize = 256;
/// How many windows' worth of the one-class tables each class's tables start from (measured
/// during development, held out on the ECG, PV and four IMU channels at 0.5, 1 and 2
/// bits/sample: 8 sent slightly fewer bits than 2 for the same error on most of them, and
/// 32 was worse on some).
pub const CLASS_PRIOR: f64 = 8.0;
/// Rounds of fitting each class's tables and moving each window to its cheapest class.
pub const CLASS_ITERATIONS: usize = 8;
/// Stretches the frames are cut into to measure what fitted tables send of frames they were
/// not fitted to ([`OwnedCodeTables::cross_fitted_length`]).
pub const RATE_FOLDS: usize = 4;

impl OwnedCodeTables {
    pub fn tables(&self) -> CodeTables<'_> {
        CodeTables {
            lowest: I16s::new(&self.lowest).expect("two bytes per entry"),
            highest: I16s::new(&self.highest).expect("two bytes per entry"),
            cumulative: U16s::new(&self.cumulative).expect("two bytes per entry"),
            lags: U8s::new(&self.lags).expect("one byte per entry"),
            classes: U16s::new(&self.classes).expect("two bytes per entry"),
        }
    }

    pub(crate) fn of(tables: &CodeTables<'_>) -> Self {
        let n = tables.cumulative.len();
        OwnedCodeTables {
            lowest: tables.lowest.iter().flat_map(i16::to_le_bytes).collect(),
            highest: tables.highest.iter().flat_map(i16::to_le_bytes).collect(),
            cumulative: (0..n).flat_map(|i| tables.cumulative.get(i).to_le_bytes()).collect(),
            lags: tables.lags.iter().collect(),
            classes: (0..tables.classes.len()).flat_map(|i| tables.classes.get(i).to_le_bytes()).collect(),
        }
    }

    /// Fits the tables to `codes` (whole windows of `latents` codes, as the device makes them
    /// on consecutive windows of the training part, sent `windows_per_frame` to a frame): one
    /// per latent — the codes seen (the densest [`MAX_TABLE_CODES`] of them when they spread
    /// wider) widened by a margin, each with a frequency proportional to its count plus one half
    /// — and a latent is **predicted** with the lag (1 to [`MAX_PREDICTION_LAG`] windows) that
    /// codes these windows in the fewest bits, if one codes them in fewer than the latent alone:
    /// after the first `lag` windows of a frame, its code is sent as its difference from the
    /// code `lag` windows before, with a table fitted the same way to those differences. A lag
    /// over 1 must code them in [`LONGER_LAG_GAIN`] of the bits of the best shorter choice.
    /// Then the windows are sorted into [`FITTED_CLASSES`] **window classes**, each with tables
    /// of its own, when that sends these frames in [`CLASS_GAIN`] of the bytes or fewer: they
    /// start in classes by the bits the one-class tables code them in, then, eight times over,
    /// each class's tables are refitted to its windows (from [`CLASS_PRIOR`] windows' worth of
    /// the one-class tables) and each window moves to its cheapest class.
    pub fn fit(codes: &[i16], latents: usize, windows_per_frame: usize) -> OwnedCodeTables {
        let single = OwnedCodeTables::fit_one_class(codes, latents, windows_per_frame);
        let bytes = |t: &OwnedCodeTables| frames_length(&t.tables(), codes, latents, windows_per_frame);
        match single.in_classes(codes, latents, windows_per_frame, FITTED_CLASSES) {
            Some(switched) if bytes(&switched) as f64 <= CLASS_GAIN * bytes(&single) as f64 => switched,
            _ => single,
        }
    }

    /// Bytes the frames of `codes` take when each of [`RATE_FOLDS`] consecutive stretches of
    /// them is coded with tables fitted ([`OwnedCodeTables::fit`]) to the codes `fitting`
    /// gives for the windows outside it (`fitting(unseen)`, `unseen` the stretch's windows:
    /// the other windows' codes, or those and more cut from the same samples): what tables
    /// fitted to all of them will send of frames they have not seen, which their own frames
    /// understate. Measured held out on the IMU (a training part of ten frames, coded in two
    /// window classes): the code step chosen by the tables' own frames sent 1.23 bits/sample
    /// of acc_z and 1.21 of gyro_y for a target of 1, the one chosen by this length 0.93 and
    /// 0.95; the ECG, PV and the IMU at 0.5 and 2 bits/sample land within 1 % over and 15 %
    /// under their targets. `None` with fewer than two frames to a stretch.
    /// The stretches are fitted and coded in parallel threads.
    pub fn cross_fitted_length<E: Send>(
        codes: &[i16],
        latents: usize,
        windows_per_frame: usize,
        fitting: impl Fn(Range<usize>) -> Result<Vec<i16>, E> + Sync,
    ) -> Result<Option<usize>, E> {
        let per_frame = windows_per_frame.max(1);
        let frame = latents * per_frame;
        let frames = codes.len() / frame.max(1);
        if frame == 0 || frames < 2 * RATE_FOLDS {
            return Ok(None);
        }
        // Whole frames to each stretch (in windows); the last one takes a partial frame too.
        let mut bounds: Vec<usize> = (0..=RATE_FOLDS).map(|k| k * frames / RATE_FOLDS * per_frame).collect();
        bounds[RATE_FOLDS] = codes.len() / latents;
        let fold_length = |fold: &[usize]| -> Result<usize, E> {
            let tables = OwnedCodeTables::fit(&fitting(fold[0]..fold[1])?, latents, windows_per_frame);
            let unseen = &codes[fold[0] * latents..fold[1] * latents];
            Ok(frames_length(&tables.tables(), unseen, latents, windows_per_frame))
        };
        let lengths: Vec<Result<usize, E>> = std::thread::scope(|scope| {
            let folds: Vec<_> = bounds.windows(2).map(|fold| scope.spawn(move || fold_length(fold))).collect();
            folds.into_iter().map(|f| f.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        lengths.into_iter().sum::<Result<usize, E>>().map(Some)
    }

    /// The tables of one class: see [`OwnedCodeTables::fit`].
    fn fit_one_class(codes: &[i16], latents: usize, windows_per_frame: usize) -> OwnedCodeTables {
        let mut t = OwnedCodeTables::default();
        let mut differences = Vec::new();
        let mut lags = vec![0u8; latents];
        for (latent, latent_lag) in lags.iter_mut().enumerate().take(MAX_CODES) {
            let series: Vec<i16> = codes.iter().skip(latent).step_by(latents).copied().collect();
            let all: Vec<i32> = series.iter().map(|&c| i32::from(c)).collect();
            let alone = fit_table(all.clone());
            t.push(&alone);
            let (mut fewest, mut chosen) = (code_length(&alone, &all), None);
            for lag in 1..windows_per_frame.min(MAX_PREDICTION_LAG + 1) {
                // The first `lag` windows of each frame are coded alone; the others as
                // differences, wrapping in i16 as the coder does.
                let (mut firsts, mut changes) = (Vec::new(), Vec::with_capacity(series.len()));
                for (w, &code) in series.iter().enumerate() {
                    match w % windows_per_frame < lag {
                        true => firsts.push(i32::from(code)),
                        false => changes.push(i32::from(code.wrapping_sub(series[w - lag]))),
                    }
                }
                if changes.is_empty() {
                    break;
                }
                let table = fit_table(changes.clone());
                let bits = code_length(&alone, &firsts) + code_length(&table, &changes);
                let needed = if lag == 1 { fewest } else { fewest * LONGER_LAG_GAIN };
                if bits < needed {
                    (fewest, chosen) = (bits, Some(table));
                    *latent_lag = lag as u8;
                }
            }
            differences.extend(chosen);
        }
        differences.iter().for_each(|table| t.push(table));
        if !differences.is_empty() {
            t.lags = lags;
        }
        t
    }

    /// These tables (of one class) in `count` window classes fitted to `codes` (sent
    /// `windows_per_frame` windows to a frame), or `None` when fewer than two classes are
    /// used. Each table keeps its codes in every class. The windows start in classes by the
    /// bits these tables code them in (quantiles), then, a few times over, each class's tables
    /// are fitted to its windows — their counts plus [`CLASS_PRIOR`] windows' worth of these
    /// tables' distribution, so that codes a class has not seen stay as likely as they were —
    /// and each window moves to the class that codes it in the fewest bits.
    fn in_classes(&self, codes: &[i16], latents: usize, windows_per_frame: usize, count: usize) -> Option<Self> {
        let t = self.tables();
        let tables = t.lowest.len();
        let lowest: Vec<i32> = (0..tables).map(|i| i32::from(t.lowest.get(i))).collect();
        let sizes: Vec<usize> = (0..tables).map(|i| (i32::from(t.highest.get(i)) - lowest[i] + 1) as usize).collect();
        let starts: Vec<usize> = sizes.iter().scan(0, |s, &n| Some(std::mem::replace(s, *s + n))).collect();
        // Each window's symbols: (table, index in the table), escapes clamped to their end.
        let values: Vec<(usize, i16)> =
            codes.chunks(latents * windows_per_frame.max(1)).flat_map(|frame| t.coded_values(frame)).collect();
        // Each symbol as its entry among all the tables' entries, one window after another.
        let symbols: Vec<u32> = values
            .iter()
            .map(|&(table, v)| {
                (starts[table] as i32 + (i32::from(v) - lowest[table]).clamp(0, sizes[table] as i32 - 1)) as u32
            })
            .collect();
        let windows: Vec<&[u32]> = symbols.chunks(latents).collect();
        if windows.len() < MIN_CLASS_WINDOWS {
            return None;
        }
        let prior: Vec<f64> = starts
            .iter()
            .zip(&sizes)
            .flat_map(|(&s, &n)| (0..n).map(move |j| (s, n, j)))
            .map(|(s, n, j)| {
                let next = if j + 1 < n { u32::from(t.cumulative.get(s + j + 1)) } else { TOTAL };
                f64::from(next - u32::from(t.cumulative.get(s + j))) / f64::from(TOTAL)
            })
            .collect();
        let bits = |cost: &[f64], w: &[u32]| w.iter().map(|&entry| cost[entry as usize]).sum::<f64>();
        let single: Vec<f64> = prior.iter().map(|p| -p.log2()).collect();
        let mut order: Vec<(f64, usize)> = windows.iter().enumerate().map(|(i, w)| (bits(&single, w), i)).collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut class = vec![0usize; windows.len()];
        for (rank, &(_, i)) in order.iter().enumerate() {
            class[i] = rank * count / windows.len();
        }
        let mut fitted: Vec<Vec<u16>> = Vec::new();
        for _ in 0..CLASS_ITERATIONS {
            fitted = (0..count)
                .map(|c| {
                    let mut weights: Vec<f64> = prior.iter().map(|p| p * CLASS_PRIOR).collect();
                    for (w, _) in windows.iter().zip(&class).filter(|(_, &k)| k == c) {
                        w.iter().for_each(|&entry| weights[entry as usize] += 1.0);
                    }
                    starts.iter().zip(&sizes).flat_map(|(&s, &n)| quantize_frequencies(&weights[s..s + n])).collect()
                })
                .collect();
            let members: Vec<f64> = (0..count).map(|c| class.iter().filter(|&&k| k == c).count() as f64).collect();
            let total: f64 = members.iter().sum();
            let costs: Vec<Vec<f64>> = fitted
                .iter()
                .map(|freqs| freqs.iter().map(|&f| f64::from(PRECISION) - f64::from(f).log2()).collect())
                .collect();
            for (w, k) in windows.iter().zip(class.iter_mut()) {
                let cost = |c: usize| bits(&costs[c], w) - ((members[c] + 0.5) / (total + 0.5)).log2();
                *k = (0..count).min_by(|&a, &b| cost(a).total_cmp(&cost(b))).unwrap_or(0);
            }
        }
        let used: Vec<usize> = (0..count).filter(|&c| class.contains(&c)).collect();
        if used.len() < 2 {
            return None;
        }
        let members: Vec<f64> = used.iter().map(|&c| class.iter().filter(|&&k| k == c).count() as f64).collect();
        let mut switched = OwnedCodeTables { cumulative: Vec::new(), classes: Vec::new(), ..self.clone() };
        for &c in &used {
            switched.cumulative.extend(cumulative_bytes(&fitted[c], &sizes));
        }
        switched.classes = cumulative_bytes(&quantize_frequencies(&members), &[members.len()]);
        Some(switched)
    }

    /// Tables `(lowest code, frequencies)`, in order, none predicted.
    pub(crate) fn of_tables(tables: &[(i32, Vec<u16>)]) -> OwnedCodeTables {
        let mut t = OwnedCodeTables::default();
        tables.iter().for_each(|table| t.push(table));
        t
    }

    fn push(&mut self, (lo, freqs): &(i32, Vec<u16>)) {
        let hi = lo + freqs.len() as i32 - 1;
        self.lowest.extend_from_slice(&(*lo as i16).to_le_bytes());
        self.highest.extend_from_slice(&(hi as i16).to_le_bytes());
        self.cumulative.extend(cumulative_bytes(freqs, &[freqs.len()]));
    }
}

/// Bytes that `codes` (whole windows of `latents`) take coded with `t`, `windows_per_frame`
/// windows to a frame (the coded codes alone, without the frames' headers).
pub fn frames_length(t: &CodeTables<'_>, codes: &[i16], latents: usize, windows_per_frame: usize) -> usize {
    let frame = latents * windows_per_frame.max(1);
    let mut out = vec![0u8; frame * 8 + 64];
    codes.chunks(frame).map(|f| t.encode(f, &mut out).expect("room for any frame of codes")).sum()
}

/// The cumulative frequencies of tables of `sizes` codes each whose frequencies are `freqs`
/// (one after the other), as blob bytes.
fn cumulative_bytes(freqs: &[u16], sizes: &[usize]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 * freqs.len());
    let mut rest = freqs;
    for &n in sizes {
        let (table, after) = rest.split_at(n);
        table.iter().scan(0u16, |c, &f| Some(std::mem::replace(c, *c + f))).for_each(|c| bytes.extend(c.to_le_bytes()));
        rest = after;
    }
    bytes
}

/// A table `(lowest code, frequencies)` for the i16 values `seen`: the values seen (the densest
/// [`MAX_TABLE_CODES`] of them when they spread wider) widened by a margin, each with a
/// frequency proportional to its count plus one half (so that unseen codes stay codable),
/// rounded to [`TOTAL`] with every frequency at least 1.
pub(crate) fn fit_table(seen: Vec<i32>) -> (i32, Vec<u16>) {
    let counted = counted_values(seen);
    let (lo, hi) = densest_span(&counted, MAX_TABLE_CODES as i32);
    let room = MAX_TABLE_CODES as i32 - (hi - lo + 1);
    let margin = ((f64::from(hi - lo) * TABLE_MARGIN).ceil() as i32).max(MIN_TABLE_MARGIN).min(room / 2);
    // At least three codes (two escapes and one more): a margin under MIN_TABLE_MARGIN
    // leaves room for fewer than 8 codes beyond a span of at least 249, and an i16 end
    // cuts a margin of 4 or more on one side only.
    let (lo, hi) = ((lo - margin).max(i16::MIN.into()), (hi + margin).min(i16::MAX.into()));
    let mut counts = vec![0.5f64; (hi - lo + 1) as usize];
    for &(c, n) in counted.iter().filter(|(c, _)| (lo..=hi).contains(c)) {
        counts[(c - lo) as usize] += n as f64;
    }
    (lo, quantize_frequencies(&counts))
}

/// The distinct values of `seen`, in order, with how often each occurs. (Counted rather than
/// sorted: the tables are fitted hundreds of times to tens of thousands of codes that take a
/// few hundred values.)
fn counted_values(mut seen: Vec<i32>) -> Vec<(i32, usize)> {
    let (Some(&min), Some(&max)) = (seen.iter().min(), seen.iter().max()) else { return Vec::new() };
    let span = i64::from(max) - i64::from(min) + 1;
    if span > 4 * seen.len() as i64 {
        seen.sort_unstable();
        let mut counted: Vec<(i32, usize)> = Vec::new();
        for v in seen {
            match counted.last_mut() {
                Some((last, n)) if *last == v => *n += 1,
                _ => counted.push((v, 1)),
            }
        }
        return counted;
    }
    let mut counts = vec![0usize; span as usize];
    seen.iter().for_each(|&v| counts[(v - min) as usize] += 1);
    counts.iter().enumerate().filter(|(_, &n)| n > 0).map(|(i, &n)| (min + i as i32, n)).collect()
}

/// Bits that `values` take with `table` (the information content: what the coder spends, less
/// its last word), escapes and their distances included.
pub(crate) fn code_length((lo, freqs): &(i32, Vec<u16>), values: &[i32]) -> f64 {
    let hi = lo + freqs.len() as i32 - 1;
    let bits: Vec<f64> = freqs.iter().map(|&f| f64::from(PRECISION) - f64::from(f).log2()).collect();
    values
        .iter()
        .map(|&v| {
            let symbol = v.clamp(*lo, hi);
            let escaped = match (symbol == *lo || symbol == hi, v.abs_diff(symbol)) {
                (false, _) => 0.0,
                (true, d) if d < 255 => 8.0,
                (true, _) => 24.0,
            };
            bits[(symbol - lo) as usize] + escaped
        })
        .sum()
}

/// The `[lo, hi]` of at most `width` codes that holds the most of the `counted` values (in
/// order, with their counts; all of them when they span no more); `(0, 0)` when nothing was
/// seen.
fn densest_span(counted: &[(i32, usize)], width: i32) -> (i32, i32) {
    let (Some(&(first, _)), Some(&(last, _))) = (counted.first(), counted.last()) else { return (0, 0) };
    if last - first < width {
        return (first, last);
    }
    let (mut best, mut best_count, mut end, mut inside) = ((first, first), 0, 0, 0);
    for &(lo, n) in counted {
        while end < counted.len() && counted[end].0 < lo + width {
            inside += counted[end].1;
            end += 1;
        }
        if inside > best_count {
            (best, best_count) = ((lo, counted[end - 1].0), inside);
        }
        inside -= n;
    }
    best
}

/// Integer frequencies summing to [`TOTAL`], each at least 1, close to proportional to
/// `weights` (at most 256 of them, all positive).
fn quantize_frequencies(weights: &[f64]) -> Vec<u16> {
    let sum: f64 = weights.iter().sum();
    let total = f64::from(TOTAL);
    let mut f: Vec<u32> = weights.iter().map(|w| ((w / sum * total).round() as u32).max(1)).collect();
    // Fix the rounding on the entries where one count changes the code length least: the
    // largest.
    let mut order: Vec<usize> = (0..f.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    let mut sum: u32 = f.iter().sum();
    let mut k = 0;
    while sum != TOTAL {
        let i = order[k % order.len()];
        if sum < TOTAL {
            f[i] += 1;
            sum += 1;
        } else if f[i] > 1 {
            f[i] -= 1;
            sum -= 1;
        }
        k += 1;
    }
    f.into_iter().map(|v| v as u16).collect()
}

/// A model blob that passed every check; immutable, so the checks stay true.
#[derive(Clone, Debug, PartialEq)]
pub struct Blob {
    bytes: Vec<u8>,
    model_id: ModelId,
    window: usize,
    channels: usize,
    latent: usize,
    counts_per_unit: f32,
    /// The codes' scale and zero point (see `funnel_shared::blob::CodeQuant`).
    code_scale: f32,
    code_zero_point: i8,
    macs_per_window: u64,
    scratch_bytes: usize,
    tables: Option<OwnedCodeTables>,
    residual: Option<OwnedResidualSpec>,
}

impl Blob {
    /// Parses `bytes` as the firmware does and checks the model id against the payload.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Blob, BlobCheckError> {
        // The parsed view borrows `bytes`: the facts are kept, then the bytes moved in.
        let mut blob = {
            let parsed = ModelBlob::parse(&bytes)?;
            let computed = model_id_of(&bytes[HEADER_LEN..bytes.len() - TRAILER_LEN]);
            if computed != parsed.model_id {
                return Err(BlobCheckError::IdMismatch { stored: parsed.model_id, computed });
            }
            let spec = &parsed.spec;
            Blob {
                bytes: Vec::new(),
                model_id: parsed.model_id,
                window: usize::from(spec.window),
                channels: usize::from(spec.channels),
                latent: spec.code_len(),
                counts_per_unit: spec.counts_per_unit,
                code_scale: spec.codes.scale,
                code_zero_point: spec.codes.zero_point,
                macs_per_window: spec.macs(),
                scratch_bytes: spec.scratch_len() * core::mem::size_of::<i16>(),
                tables: spec.tables.as_ref().map(OwnedCodeTables::of),
                residual: spec.residual.as_ref().map(OwnedResidualSpec::of),
            }
        };
        blob.bytes = bytes;
        Ok(blob)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The device's int8 encoder over these bytes (a zero-copy view).
    pub fn encoder(&self) -> QuantizedEncoder<'_> {
        QuantizedEncoder::from_blob(&self.bytes).expect("checked by Blob::from_bytes; the bytes are immutable")
    }

    pub fn model_id(&self) -> ModelId {
        self.model_id
    }

    /// Samples per channel in a window.
    pub fn window(&self) -> usize {
        self.window
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Codes per window.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// Device counts per unit of the recording.
    pub fn counts_per_unit(&self) -> f32 {
        self.counts_per_unit
    }

    /// One window (`[C][T]`, original units) as the device reads it: counts, `[T][C]`.
    pub fn window_counts(&self, window: &[f32]) -> Vec<i16> {
        channels_first_to_interleaved(window, self.channels)
            .into_iter()
            .map(|v| to_counts(v, self.counts_per_unit))
            .collect()
    }

    /// The latent value of one code.
    pub fn dequantize(&self, code: i16) -> f32 {
        self.code_scale * (f32::from(code) - f32::from(self.code_zero_point))
    }

    /// The entropy-coding tables of the codes, if the model has them.
    pub fn code_tables(&self) -> Option<CodeTables<'_>> {
        self.tables.as_ref().map(OwnedCodeTables::tables)
    }

    /// The codes a received data frame of this model carries, window after window.
    pub fn frame_codes(&self, frame: &DataFrame) -> Result<Vec<i16>, EntropyError> {
        let mut codes = vec![0i16; frame.codes()];
        match (frame.entropy_coded, self.code_tables()) {
            (true, Some(tables)) => tables.decode(&frame.payload, &mut codes)?,
            (true, None) => return Err(EntropyError::Inconsistent),
            // Raw in an entropy-coded session: i16, little-endian.
            (false, _) if frame.layout.entropy_coded && frame.payload.len() == 2 * codes.len() => {
                codes
                    .iter_mut()
                    .zip(frame.payload.chunks_exact(2))
                    .for_each(|(c, b)| *c = i16::from_le_bytes([b[0], b[1]]));
            }
            (false, _) if !frame.layout.entropy_coded && frame.payload.len() == codes.len() => {
                codes.iter_mut().zip(&frame.payload).for_each(|(c, &b)| *c = (b as i8).into());
            }
            (false, _) => return Err(EntropyError::CodeCount),
        }
        Ok(codes)
    }

    /// The error-bounded coder, if the model has one: its streams then carry samples within
    /// its bound instead of latent codes.
    pub fn residual(&self) -> Option<ResidualSpec<'_>> {
        self.residual.as_ref().map(OwnedResidualSpec::spec)
    }

    /// The samples (device counts, `[T][C]`) a received data frame of a bounded stream of this
    /// model carries: decoded with the model's residual coder, or raw.
    pub fn frame_samples(&self, frame: &DataFrame) -> Result<Vec<i16>, ResidualError> {
        let (m, channels) = (frame.samples() as usize, usize::from(frame.layout.channels));
        let mut values = vec![0i16; m * channels];
        match (frame.entropy_coded, self.residual()) {
            (true, Some(residual)) if frame.layout.codes_per_window == 0 => {
                residual.decode(&frame.payload, None, m, &mut values)?
            }
            (true, Some(residual)) => {
                // The frame's codes come first; the residuals are against their rebuild.
                let encoder = self.encoder();
                let tables = encoder.spec().tables.ok_or(ResidualError::Length)?;
                let mut codes = vec![0i16; m.div_ceil(self.window()) * self.latent()];
                let adapted = residual.read_bins(&frame.payload, Some((tables, &mut codes)), m, &mut values)?;
                let mut base = vec![0i16; values.len()];
                let mut scratch = vec![0i16; encoder.scratch_len()];
                latent_base(&encoder, &codes, m, &mut scratch, &mut base).map_err(|_| ResidualError::Length)?;
                residual.rebuild(Some(&base), &mut values, m, adapted)?
            }
            (false, _) if frame.layout.bounded && frame.payload.len() == 2 * values.len() => values
                .iter_mut()
                .zip(frame.payload.chunks_exact(2))
                .for_each(|(v, b)| *v = i16::from_le_bytes([b[0], b[1]])),
            _ => return Err(ResidualError::Length),
        }
        // Channel after channel on the link; a sensor's order here.
        Ok((0..m * channels).map(|i| values[(i % channels) * m + i / channels]).collect())
    }

    pub fn macs_per_window(&self) -> u64 {
        self.macs_per_window
    }

    /// Scratch RAM the encoder needs on the device.
    pub fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }

    /// Size in bytes (what goes into flash).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn garbage_is_refused_by_the_format_check() {
        let e = Blob::from_bytes(b"certainly not a Funnel model blob".to_vec()).unwrap_err();
        assert!(matches!(e, BlobCheckError::Format(BlobError::BadMagic)), "{e}");
        let e = Blob::from_bytes(vec![]).unwrap_err();
        assert!(matches!(e, BlobCheckError::Format(BlobError::Truncated { .. })), "{e}");
    }

    #[test]
    fn fitted_tables_are_valid_and_cover_the_codes_with_a_margin() {
        let codes: Vec<i16> = (0..3000).map(|i| [(i % 7) as i16 - 3, 100, -128][i % 3]).collect();
        let owned = OwnedCodeTables::fit(&codes, 3, 1);
        let t = owned.tables();
        assert_eq!(t.validate(3), Ok(()));
        let ranges: Vec<(i16, i16)> = (0..3).map(|i| (t.lowest.get(i), t.highest.get(i))).collect();
        assert_eq!(ranges, [(-7, 7), (96, 104), (-132, -124)]);
        let mut out = vec![0u8; 4096];
        let n = t.encode(&codes[..300], &mut out).unwrap();
        // Latents 1 and 2 are constant: nearly free; latent 0 takes one of 7 codes (2.8 bits).
        assert!(n * 8 < 100 * 3 + 64, "{n} bytes for 100 windows");
    }

    /// Codes far outside the int8 range, and spread wider than a table: the table sits on the
    /// densest 256 codes.
    #[test]
    fn codes_at_the_ends_of_the_i16_range_still_get_three_codes() {
        let codes: Vec<i16> = (0..100).flat_map(|_| [i16::MAX, i16::MIN]).collect();
        let owned = OwnedCodeTables::fit(&codes, 2, 1);
        let t = owned.tables();
        assert_eq!(t.validate(2), Ok(()));
        assert_eq!((t.lowest.get(0), t.highest.get(0)), (i16::MAX - 4, i16::MAX));
        assert_eq!((t.lowest.get(1), t.highest.get(1)), (i16::MIN, i16::MIN + 4));
    }

    /// A slowly drifting latent is predicted from the window before and a cycle of three windows
    /// from three windows before, when frames have several windows, and its frames then cost far
    /// less; a latent that jumps from window to window is not predicted; nor is any latent with
    /// one window per frame.
    #[test]
    fn drifting_and_cyclic_latents_are_predicted_and_a_jumping_one_is_not() {
        let windows = 640;
        let codes: Vec<i16> = (0..windows as u32)
            .flat_map(|w| {
                let level = (40.0 * (f64::from(w) / 50.0).sin()) as i16;
                // Draws from -4 ..= 4 (a mixing hash of w), alone and on a cycle of 3 windows.
                let h = (w.wrapping_mul(0x9E37_79B1) ^ w >> 3).wrapping_mul(0x85EB_CA77);
                let noise = ((h ^ h >> 13) % 9) as i16 - 4;
                [level, noise, [60, -50, 10][w as usize % 3] + noise / 4]
            })
            .collect();
        let one = OwnedCodeTables::fit(&codes, 3, 1);
        assert!(one.tables().lags.is_empty());
        let framed = OwnedCodeTables::fit(&codes, 3, 16);
        let t = framed.tables();
        assert_eq!((t.lags.iter().collect::<Vec<u8>>(), t.validate(3)), (vec![1, 0, 3], Ok(())));
        let mut out = vec![0u8; 256];
        let frame = &codes[..48];
        let alone = one.tables().encode(frame, &mut out).unwrap();
        let predicted = t.encode(frame, &mut out).unwrap();
        assert!(predicted * 3 < alone * 2, "{predicted} bytes predicted, {alone} alone");
        let mut back = vec![0i16; 48];
        t.decode(&out[..predicted], &mut back).unwrap();
        assert_eq!(back, frame);
    }

    /// Codes of a pseudo-random draw from -spread ..= spread, for window `w`, latent `i`.
    fn draw(w: u32, i: u32, spread: u32) -> i16 {
        let h = (w.wrapping_mul(0x9E37_79B1) ^ i.wrapping_mul(0x85EB_CA77)).wrapping_mul(0xC2B2_AE3D);
        ((h ^ h >> 15) % (2 * spread + 1)) as i16 - spread as i16
    }

    /// Quiet stretches and busy ones: the windows are sent in two classes, each with tables of
    /// its own, and the frames cost less than with one set of tables; a signal that is alike
    /// throughout keeps one class.
    #[test]
    fn quiet_and_busy_stretches_get_window_classes_and_an_even_signal_does_not() {
        let (latents, windows) = (4, 2000u32);
        let bursty: Vec<i16> = (0..windows)
            .flat_map(|w| (0..4).map(move |i| draw(w, i, if (w / 100) % 2 == 0 { 0 } else { 20 })))
            .collect();
        let classed = OwnedCodeTables::fit(&bursty, latents, 8);
        let t = classed.tables();
        assert_eq!((t.class_count(), t.validate(latents)), (2, Ok(())));
        let single = OwnedCodeTables::fit_one_class(&bursty, latents, 8);
        let (with, without) =
            (frames_length(&t, &bursty, latents, 8), frames_length(&single.tables(), &bursty, latents, 8));
        assert!(with * 100 < without * 85, "{with} bytes in classes, {without} in one");
        let mut out = vec![0u8; 1024];
        let mut back = vec![0i16; 32];
        for frame in bursty.chunks(32) {
            let n = t.encode(frame, &mut out).unwrap();
            t.decode(&out[..n], &mut back).unwrap();
            assert_eq!(back, frame);
        }
        let even: Vec<i16> = (0..windows).flat_map(|w| (0..4).map(move |i| draw(w, i, 10))).collect();
        assert_eq!(OwnedCodeTables::fit(&even, latents, 8).tables().class_count(), 1);
    }

    /// `codes` (whole windows of `latents`) without the windows `unseen`.
    fn others(codes: &[i16], latents: usize, unseen: Range<usize>) -> Vec<i16> {
        [&codes[..unseen.start * latents], &codes[unseen.end * latents..]].concat()
    }

    /// Tables fitted to few windows code those windows in fewer bytes than they code the next
    /// ones; the cross-fitted length tells what they will send of the next ones.
    #[test]
    fn the_cross_fitted_length_is_what_fitted_tables_send_of_windows_they_have_not_seen() {
        let (latents, per_frame) = (4, 32);
        let codes = |from: u32| -> Vec<i16> {
            (from..from + 320).flat_map(|w| (0..4).map(move |i| draw(w, i, 12 + 8 * i))).collect()
        };
        let (seen, next) = (codes(0), codes(1_000_000));
        let fitted = OwnedCodeTables::fit(&seen, latents, per_frame);
        let own = frames_length(&fitted.tables(), &seen, latents, per_frame) as f64;
        let unseen = frames_length(&fitted.tables(), &next, latents, per_frame) as f64;
        let fitting = |unseen| Ok::<_, Infallible>(others(&seen, latents, unseen));
        let cross = OwnedCodeTables::cross_fitted_length(&seen, latents, per_frame, fitting).unwrap().unwrap() as f64;
        assert!(own < 0.97 * unseen, "{own} bytes of the windows fitted to, {unseen} of the next");
        assert!((cross / unseen - 1.0).abs() < 0.03, "cross-fitted {cross} bytes, {unseen} sent of the next");
        let few = &seen[..7 * per_frame * latents];
        let fitting = |unseen| Ok::<_, Infallible>(others(few, latents, unseen));
        assert_eq!(OwnedCodeTables::cross_fitted_length(few, latents, per_frame, fitting), Ok(None));
    }

    #[test]
    fn wide_codes_get_a_table_on_their_densest_span() {
        let codes: Vec<i16> =
            (0..4000).map(|i| if i % 10 == 0 { -5000 + (i % 7) as i16 } else { 900 + (i % 200) as i16 }).collect();
        let owned = OwnedCodeTables::fit(&codes, 1, 1);
        let t = owned.tables();
        assert_eq!(t.validate(1), Ok(()));
        assert_eq!((t.lowest.get(0), t.highest.get(0)), (873, 1127));
        let mut out = vec![0u8; 8192];
        let n = t.encode(&codes[..400], &mut out).unwrap();
        let mut back = vec![0i16; 400];
        t.decode(&out[..n], &mut back).unwrap();
        assert_eq!(back, codes[..400]);
    }

    #[test]
    fn frequencies_sum_to_the_total_and_none_is_zero() {
        for weights in [vec![1.0; 256], vec![1e9, 0.5, 0.5], vec![3.0], vec![0.5; 17]] {
            let f = quantize_frequencies(&weights);
            assert_eq!(f.iter().map(|&v| u32::from(v)).sum::<u32>(), TOTAL);
            assert!(f.iter().all(|&v| v >= 1));
        }
    }

    #[test]
    fn model_ids_are_hash_prefixes() {
        assert_eq!(model_id_of(b"").to_string(), "e3b0c442"); // SHA-256 of nothing
        assert_ne!(model_id_of(b"a"), model_id_of(b"b"));
    }
}
