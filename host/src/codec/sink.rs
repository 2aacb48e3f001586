//! Where reconstructed windows go: a CSV writer, memory, or both.

use std::io::Write;

use funnel_artifacts::data::interleaved_to_channels_first;
use funnel_artifacts::Windows;

/// How one output sample came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleStatus {
    Ok,
    /// The device clamped some input of this window to the calibrated range.
    Saturated,
    /// The frame of this window never arrived intact: no value.
    Missing,
    /// No sample: the decode was stopped here (Ctrl-C), after the last complete row.
    Interrupted,
}

impl SampleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SampleStatus::Ok => "ok",
            SampleStatus::Saturated => "saturated",
            SampleStatus::Missing => "missing",
            SampleStatus::Interrupted => "interrupted",
        }
    }
}

/// Receives reconstructed windows in stream order.
pub trait ReconstructionSink {
    /// `len` samples starting at `sample_index`; `values` is `[len][C]` interleaved, `None` for
    /// samples that were lost.
    fn window(
        &mut self,
        sample_index: u64,
        len: usize,
        values: Option<&[f32]>,
        status: SampleStatus,
    ) -> std::io::Result<()>;
    /// Called after each decoded batch (live output flushes here).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `sample_index,<columns...>,status` rows; for a bounded stream also `max_error`, the
/// bound each row's values keep (empty where there are none).
pub struct CsvSink<W: Write> {
    out: W,
    channels: usize,
    bound: Option<f32>,
}

impl<W: Write> CsvSink<W> {
    /// `bound`: the largest error of any value of a row with values, in the recording's units
    /// (a bounded model's), or `None`.
    pub fn new(mut out: W, columns: &[String], bound: Option<f32>) -> std::io::Result<Self> {
        // Column names are quoted as CSV needs: a name may hold a comma, a quote or a newline.
        let mut header = csv::Writer::from_writer(Vec::new());
        header.write_record(
            std::iter::once("sample_index")
                .chain(columns.iter().map(String::as_str))
                .chain(["status"])
                .chain(bound.map(|_| "max_error")),
        )?;
        out.write_all(&header.into_inner().map_err(|e| e.into_error())?)?;
        Ok(CsvSink { out, channels: columns.len(), bound })
    }
}

impl<W: Write> ReconstructionSink for CsvSink<W> {
    fn window(
        &mut self,
        sample_index: u64,
        len: usize,
        values: Option<&[f32]>,
        status: SampleStatus,
    ) -> std::io::Result<()> {
        for t in 0..len {
            write!(self.out, "{}", sample_index + t as u64)?;
            for c in 0..self.channels {
                match values {
                    Some(v) => write!(self.out, ",{}", v[t * self.channels + c])?,
                    None => write!(self.out, ",")?,
                }
            }
            write!(self.out, ",{}", status.as_str())?;
            match (self.bound, values) {
                (Some(bound), Some(_)) => writeln!(self.out, ",{bound}")?,
                (Some(_), None) => writeln!(self.out, ",")?,
                (None, _) => writeln!(self.out)?,
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Keeps the reconstruction in memory (evaluation, tests, plots): `[T][C]` values, NaN where
/// missing.
#[derive(Clone, Debug, Default)]
pub struct CollectSink {
    pub channels: usize,
    pub first_sample: Option<u64>,
    pub values: Vec<f32>,
    pub status: Vec<SampleStatus>,
    /// Keep only the first this many samples (a plot of a long or endless stream needs no more).
    pub limit: Option<usize>,
}

impl CollectSink {
    /// What was collected as windows of `dim` values, each `[C][T]` (a trailing partial
    /// window is left out).
    pub fn into_windows(self, dim: usize) -> Windows {
        let channels = self.channels;
        let data = self.values.chunks_exact(dim.max(1)).flat_map(|w| interleaved_to_channels_first(w, channels));
        Windows::new(dim, data.collect())
    }
}

impl ReconstructionSink for CollectSink {
    fn window(
        &mut self,
        sample_index: u64,
        len: usize,
        values: Option<&[f32]>,
        status: SampleStatus,
    ) -> std::io::Result<()> {
        self.first_sample.get_or_insert(sample_index);
        let len = len.min(self.limit.map_or(usize::MAX, |limit| limit.saturating_sub(self.status.len())));
        match values {
            Some(v) => self.values.extend_from_slice(&v[..len * self.channels]),
            None => self.values.extend(std::iter::repeat_n(f32::NAN, len * self.channels)),
        }
        self.status.extend(std::iter::repeat_n(status, len));
        Ok(())
    }
}

/// Feeds two sinks.
pub struct Tee<'a> {
    pub a: &'a mut dyn ReconstructionSink,
    pub b: Option<&'a mut dyn ReconstructionSink>,
}

impl ReconstructionSink for Tee<'_> {
    fn window(
        &mut self,
        sample_index: u64,
        len: usize,
        values: Option<&[f32]>,
        status: SampleStatus,
    ) -> std::io::Result<()> {
        self.a.window(sample_index, len, values, status)?;
        if let Some(b) = self.b.as_mut() {
            b.window(sample_index, len, values, status)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.a.flush()?;
        self.b.as_mut().map_or(Ok(()), |b| b.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_have_index_values_and_status() {
        let mut out = Vec::new();
        {
            let mut sink = CsvSink::new(&mut out, &["a".to_string(), "b".to_string()], None).unwrap();
            sink.window(10, 2, Some(&[1.0, 2.0, 3.0, 4.0]), SampleStatus::Ok).unwrap();
            sink.window(12, 1, None, SampleStatus::Missing).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "sample_index,a,b,status\n10,1,2,ok\n11,3,4,ok\n12,,,missing\n");
    }

    #[test]
    fn rows_of_a_bounded_stream_say_their_bound() {
        let mut out = Vec::new();
        {
            let mut sink = CsvSink::new(&mut out, &["a".to_string()], Some(0.25)).unwrap();
            sink.window(0, 1, Some(&[1.5]), SampleStatus::Saturated).unwrap();
            sink.window(1, 1, None, SampleStatus::Missing).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "sample_index,a,status,max_error\n0,1.5,saturated,0.25\n1,,missing,\n"
        );
    }

    #[test]
    fn column_names_are_quoted_as_csv_needs() {
        let mut out = Vec::new();
        CsvSink::new(&mut out, &["a,b".to_string(), "say \"hi\"".to_string()], None).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "sample_index,\"a,b\",\"say \"\"hi\"\"\",status\n");
    }

    #[test]
    fn a_limited_collection_keeps_only_the_first_samples() {
        let mut sink = CollectSink { channels: 2, limit: Some(3), ..Default::default() };
        sink.window(0, 2, Some(&[1.0, 2.0, 3.0, 4.0]), SampleStatus::Ok).unwrap();
        sink.window(2, 2, None, SampleStatus::Missing).unwrap();
        sink.window(4, 2, Some(&[5.0, 6.0, 7.0, 8.0]), SampleStatus::Ok).unwrap();
        assert_eq!(sink.status, [SampleStatus::Ok, SampleStatus::Ok, SampleStatus::Missing]);
        assert_eq!(sink.values.len(), 6);
    }
}
