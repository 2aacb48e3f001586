//! The receiver's seam filter ([`SeamFilter`], chosen per model at quantization): windows are
//! coded one by one, so the reconstruction can step where two windows meet. At each boundary
//! between a window and the next one, the step in excess of the local slope is taken out,
//! spread over a few samples on each side. The last samples of each window wait for the next
//! window (or a gap, or the end of the stream) before they are written.

use funnel_artifacts::card::SeamFilter;
use funnel_artifacts::data::channels_first_to_interleaved;
use funnel_artifacts::Windows;

use super::sink::{CollectSink, ReconstructionSink, SampleStatus};

/// The tail of the last window written, waiting for the next window.
struct Held {
    first: u64,
    /// `[len][C]` interleaved.
    values: Vec<f32>,
    status: SampleStatus,
}

/// Writes decoded windows to a sink through a [`SeamFilter`].
pub(super) struct Seams {
    filter: Option<SeamFilter>,
    channels: usize,
    held: Option<Held>,
}

/// A run of samples written to the sink: first sample index and length.
pub(super) type Written = (u64, usize);

impl Seams {
    /// `filter` for windows of `window` samples of `channels` channels (none when it does not
    /// fit such windows, [`SeamFilter::fits`]; a card with such a filter is refused when read).
    pub(super) fn new(filter: Option<SeamFilter>, window: usize, channels: usize) -> Seams {
        Seams { filter: filter.filter(|f| f.fits(window)), channels: channels.max(1), held: None }
    }

    /// Writes `len` samples from `first` (`values` `[len][C]`): the held tail of the previous
    /// window first (smoothed across the boundary when this window starts where it ends), then
    /// this window but its own tail, which is held.
    pub(super) fn window(
        &mut self,
        sink: &mut dyn ReconstructionSink,
        first: u64,
        mut values: Vec<f32>,
        status: SampleStatus,
    ) -> std::io::Result<Vec<Written>> {
        let len = values.len() / self.channels;
        let Some(filter) = self.filter else {
            sink.window(first, len, Some(&values), status)?;
            return Ok(vec![(first, len)]);
        };
        let mut written: Vec<Written> = self.write_held(sink, first, &mut values, filter)?.into_iter().collect();
        let keep = len - filter.tail();
        sink.window(first, keep, Some(&values[..keep * self.channels]), status)?;
        written.push((first, keep));
        self.held = Some(Held { first: first + keep as u64, values: values[keep * self.channels..].to_vec(), status });
        Ok(written)
    }

    /// Writes the first `valid` samples of a stream's last window from `first` (`values`
    /// `[len][C]`, the rest padding): the held tail first, smoothed across the boundary as before
    /// any window, and nothing held after it.
    pub(super) fn last_window(
        &mut self,
        sink: &mut dyn ReconstructionSink,
        first: u64,
        mut values: Vec<f32>,
        valid: usize,
        status: SampleStatus,
    ) -> std::io::Result<Vec<Written>> {
        let mut written = Vec::with_capacity(2);
        if let Some(filter) = self.filter {
            written.extend(self.write_held(sink, first, &mut values, filter)?);
        }
        sink.window(first, valid, Some(&values[..valid * self.channels]), status)?;
        written.push((first, valid));
        Ok(written)
    }

    /// Writes the held tail, smoothed with `values` (`[len][C]`, the window that follows from
    /// `first`) when that window starts where it ends.
    fn write_held(
        &mut self,
        sink: &mut dyn ReconstructionSink,
        first: u64,
        values: &mut [f32],
        filter: SeamFilter,
    ) -> std::io::Result<Option<Written>> {
        let Some(mut held) = self.held.take() else { return Ok(None) };
        let held_len = held.values.len() / self.channels;
        if held.first + held_len as u64 == first {
            smooth(&mut held.values, values, self.channels, filter);
        }
        sink.window(held.first, held_len, Some(&held.values), held.status)?;
        Ok(Some((held.first, held_len)))
    }

    /// Writes the held tail as it is (a gap or the end of the stream follows it).
    pub(super) fn release(&mut self, sink: &mut dyn ReconstructionSink) -> std::io::Result<Option<Written>> {
        let Some(held) = self.held.take() else { return Ok(None) };
        let len = held.values.len() / self.channels;
        sink.window(held.first, len, Some(&held.values), held.status)?;
        Ok(Some((held.first, len)))
    }
}

/// `windows` (`[C][T]`, one after another in time) through `filter`, as the receiver would
/// write them: what a float model's reconstruction looks like through the same receiver.
pub fn smooth_seams(windows: &Windows, channels: usize, filter: Option<SeamFilter>) -> std::io::Result<Windows> {
    let window = windows.dim / channels.max(1);
    let mut sink = CollectSink { channels, ..Default::default() };
    let mut seams = Seams::new(filter, window, channels);
    for (i, w) in windows.iter().enumerate() {
        seams.window(&mut sink, (i * window) as u64, channels_first_to_interleaved(w, channels), SampleStatus::Ok)?;
    }
    seams.release(&mut sink)?;
    Ok(sink.into_windows(windows.dim))
}

/// Takes the excess step out of the boundary between `before` (the held tail, at least
/// [`SeamFilter::SLOPE_SAMPLES`] rows) and `after` (the next window), channel by channel.
fn smooth(before: &mut [f32], after: &mut [f32], channels: usize, filter: SeamFilter) {
    let rows = before.len() / channels;
    for c in 0..channels {
        let at = |v: &[f32], row: usize| v[row * channels + c];
        let (b2, b1) = (at(before, rows - 2), at(before, rows - 1));
        let (a0, a1) = (at(after, 0), at(after, 1));
        let slope = 0.5 * ((b1 - b2) + (a1 - a0));
        let excess = (a0 - b1) - slope;
        let k = filter.samples;
        for j in 0..k {
            let w = filter.strength * 0.5 * (k - j) as f32 / k as f32;
            before[(rows - 1 - j) * channels + c] += excess * w;
            after[j * channels + c] -= excess * w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(filter: Option<SeamFilter>, windows: &[(u64, Vec<f32>)], window: usize) -> (CollectSink, Vec<Written>) {
        let mut sink = CollectSink { channels: 1, ..Default::default() };
        let mut seams = Seams::new(filter, window, 1);
        let mut written = Vec::new();
        for (first, values) in windows {
            written.extend(seams.window(&mut sink, *first, values.clone(), SampleStatus::Ok).unwrap());
        }
        written.extend(seams.release(&mut sink).unwrap());
        (sink, written)
    }

    #[test]
    fn a_step_between_two_windows_is_spread_and_every_sample_written_once() {
        // A ramp of slope 1 with a step of 10 where the windows meet.
        let a: Vec<f32> = (0..8).map(|t| t as f32).collect();
        let b: Vec<f32> = (8..16).map(|t| t as f32 + 10.0).collect();
        let filter = SeamFilter { samples: 2, strength: 1.0 };
        let (sink, written) = collect(Some(filter), &[(0, a.clone()), (8, b.clone())], 8);
        assert_eq!(sink.values.len(), 16);
        // Every sample index written exactly once, in order.
        let mut next = 0;
        for (first, len) in written {
            assert_eq!(first, next);
            next += len as u64;
        }
        assert_eq!(next, 16);
        // The excess step (10) is taken out: 5 on each side, 2.5 one sample further.
        let v = &sink.values;
        assert_eq!((v[6], v[7], v[8], v[9]), (6.0 + 2.5, 7.0 + 5.0, 18.0 - 5.0, 19.0 - 2.5));
        assert_eq!((v[5], v[10]), (5.0, 20.0));
        // A smooth signal across the boundary is left alone.
        let smooth: Vec<f32> = (8..16).map(|t| t as f32).collect();
        let (sink, _) = collect(Some(filter), &[(0, a.clone()), (8, smooth)], 8);
        assert_eq!(sink.values, (0..16).map(|t| t as f32).collect::<Vec<_>>());
        // Windows that do not follow each other (a gap between them) are not touched.
        let (sink, _) = collect(Some(filter), &[(0, a.clone()), (16, b.clone())], 8);
        assert_eq!(sink.values, [a.clone(), b.clone()].concat());
        // Without a filter, or with windows too short for one, the windows pass as they are.
        assert_eq!(collect(None, &[(0, a.clone()), (8, b.clone())], 8).0.values, [a.clone(), b.clone()].concat());
        let short = SeamFilter { samples: 4, strength: 1.0 };
        assert_eq!(
            collect(Some(short), &[(0, a.clone()), (8, b.clone())], 8).0.values,
            [a.clone(), b.clone()].concat()
        );
        // Whole windows in memory, two channels: each channel smoothed on its own, as a stream.
        let two = Windows::new(16, [a.clone(), a.clone(), b.clone(), b.clone()].concat());
        let smoothed = smooth_seams(&two, 2, Some(filter)).unwrap();
        let (one, _) = collect(Some(filter), &[(0, a), (8, b)], 8);
        assert_eq!(smoothed.get(0)[..8], one.values[..8]);
        assert_eq!(smoothed.get(0)[8..], one.values[..8]);
        assert_eq!(smoothed.get(1)[..8], one.values[8..]);
    }
}
