//! Rows as a Parquet file: `sample_index` (INT64), one FLOAT column per channel (null where a
//! sample is missing), `status` (UTF-8), and for a bounded model `max_error` (FLOAT, null where
//! there is no value); the model and its columns in the file's key–value metadata. Rows are
//! buffered and written a row group at a time; a Parquet file is readable once
//! [`ParquetSink::finish`] has written its footer.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, Encoding, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type};

use super::sink::{ReconstructionSink, SampleStatus};

/// Rows per row group (and most rows held in memory).
pub const ROW_GROUP_ROWS: usize = 1 << 16;

/// What the file says about itself besides its rows.
#[derive(Clone, Debug, Default)]
pub struct ParquetMetadata {
    /// `(key, value)` pairs, e.g. `funnel.model_id`.
    pub entries: Vec<(String, String)>,
}

/// Writes rows into a Parquet file (see the module).
pub struct ParquetSink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    channels: usize,
    bound: Option<f32>,
    index: Vec<i64>,
    /// Per channel, the values present; `present[t]` says whether row `t` has values.
    values: Vec<Vec<f32>>,
    present: Vec<bool>,
    status: Vec<SampleStatus>,
}

fn io_error(e: ParquetError) -> std::io::Error {
    std::io::Error::other(format!("writing Parquet: {e}"))
}

impl<W: Write + Send> ParquetSink<W> {
    /// `columns` name the channels; `bound` as for [`super::CsvSink::new`].
    pub fn new(out: W, columns: &[String], bound: Option<f32>, metadata: &ParquetMetadata) -> std::io::Result<Self> {
        let column = |name: &str, physical, repetition, converted| {
            Type::primitive_type_builder(name, physical)
                .with_repetition(repetition)
                .with_converted_type(converted)
                .build()
                .map(Arc::new)
        };
        let mut fields = vec![column("sample_index", PhysicalType::INT64, Repetition::REQUIRED, ConvertedType::NONE)];
        for name in columns {
            fields.push(column(name, PhysicalType::FLOAT, Repetition::OPTIONAL, ConvertedType::NONE));
        }
        fields.push(column("status", PhysicalType::BYTE_ARRAY, Repetition::REQUIRED, ConvertedType::UTF8));
        if bound.is_some() {
            fields.push(column("max_error", PhysicalType::FLOAT, Repetition::OPTIONAL, ConvertedType::NONE));
        }
        let fields = fields.into_iter().collect::<Result<Vec<_>, _>>().map_err(io_error)?;
        let schema = Type::group_type_builder("funnel").with_fields(fields).build().map_err(io_error)?;
        let entries = metadata.entries.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
        // Each column in the encoding that suits it: the sample index as deltas, the status as a
        // dictionary, a lossy model's values with their bytes split by stream (they seldom
        // repeat), a bounded model's as a dictionary (they are on the count grid). The whole ECG's
        // rows took 1,266,681 bytes with the writer's defaults (a dictionary tried on every
        // column) and take 363,640 with models/ecg, 151,974 with models/ecg-lossless.
        let column_path = |name: &str| ColumnPath::new(vec![name.to_string()]);
        let mut properties = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_column_encoding(column_path("sample_index"), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(column_path("status"), true);
        for name in columns {
            properties = match bound {
                Some(_) => properties.set_column_dictionary_enabled(column_path(name), true),
                None => properties.set_column_encoding(column_path(name), Encoding::BYTE_STREAM_SPLIT),
            };
        }
        if bound.is_some() {
            properties = properties.set_column_dictionary_enabled(column_path("max_error"), true);
        }
        let properties = properties
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(entries))
            .set_created_by(format!("funnel {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(properties)).map_err(io_error)?;
        Ok(ParquetSink {
            writer,
            channels: columns.len(),
            bound,
            index: Vec::new(),
            values: vec![Vec::new(); columns.len()],
            present: Vec::new(),
            status: Vec::new(),
        })
    }

    /// Writes the rows held as a row group.
    fn write_row_group(&mut self) -> Result<(), ParquetError> {
        if self.index.is_empty() {
            return Ok(());
        }
        let defs: Vec<i16> = self.present.iter().map(|&p| i16::from(p)).collect();
        // One value per status, shared by its rows: a `ByteArray` made from a `&str` allocates,
        // and the allocations of one per row were a fifth of the Python package's Parquet decode.
        let names = [SampleStatus::Ok, SampleStatus::Saturated, SampleStatus::Missing, SampleStatus::Interrupted]
            .map(|s| ByteArray::from(s.as_str()));
        let status: Vec<ByteArray> = self.status.iter().map(|&s| names[s as usize].clone()).collect();
        let bounds = vec![self.bound.unwrap_or(0.0); self.present.iter().filter(|&&p| p).count()];
        let mut group = self.writer.next_row_group()?;
        let mut i = 0;
        while let Some(mut column) = group.next_column()? {
            match i {
                0 => {
                    column.typed::<Int64Type>().write_batch(&self.index, None, None)?;
                }
                c if c <= self.channels => {
                    column.typed::<FloatType>().write_batch(&self.values[c - 1], Some(&defs), None)?;
                }
                c if c == self.channels + 1 => {
                    column.typed::<ByteArrayType>().write_batch(&status, None, None)?;
                }
                _ => {
                    column.typed::<FloatType>().write_batch(&bounds, Some(&defs), None)?;
                }
            }
            column.close()?;
            i += 1;
        }
        group.close()?;
        self.index.clear();
        self.values.iter_mut().for_each(Vec::clear);
        self.present.clear();
        self.status.clear();
        Ok(())
    }

    /// Writes the rows still held and the file's footer; returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.write_row_group().map_err(io_error)?;
        self.writer.into_inner().map_err(io_error)
    }
}

impl<W: Write + Send> ReconstructionSink for ParquetSink<W> {
    fn window(
        &mut self,
        sample_index: u64,
        len: usize,
        values: Option<&[f32]>,
        status: SampleStatus,
    ) -> std::io::Result<()> {
        for t in 0..len {
            // Sample indices are below 2^63 (the stream's start sample is at most 2^64 − 2^56,
            // and a row's index goes past it only by what the stream sent).
            self.index.push(i64::try_from(sample_index + t as u64).unwrap_or(i64::MAX));
            if let Some(v) = values {
                for (c, column) in self.values.iter_mut().enumerate() {
                    column.push(v[t * self.channels + c]);
                }
            }
            self.present.push(values.is_some());
            self.status.push(status);
            if self.index.len() >= ROW_GROUP_ROWS {
                self.write_row_group().map_err(io_error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    #[test]
    fn rows_come_back_from_the_file_with_nulls_where_samples_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let metadata = ParquetMetadata { entries: vec![("funnel.model_id".into(), "f00dcafe".into())] };
        let mut sink = ParquetSink::new(
            std::fs::File::create(&path).unwrap(),
            &["a".to_string(), "b, c".to_string()],
            Some(0.25),
            &metadata,
        )
        .unwrap();
        sink.window(10, 2, Some(&[1.0, 2.0, 3.0, 4.0]), SampleStatus::Ok).unwrap();
        sink.window(12, 1, None, SampleStatus::Missing).unwrap();
        sink.window(13, 1, Some(&[5.5, -6.0]), SampleStatus::Saturated).unwrap();
        sink.finish().unwrap();

        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let kv = reader.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|e| e.key == "funnel.model_id" && e.value.as_deref() == Some("f00dcafe")));
        let rows: Vec<Vec<Field>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().get_column_iter().map(|(_, f)| f.clone()).collect())
            .collect();
        let names: Vec<String> =
            reader.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
        assert_eq!(names, ["sample_index", "a", "b, c", "status", "max_error"]);
        let s = |x: &str| Field::Str(x.to_string());
        assert_eq!(
            rows,
            [
                vec![Field::Long(10), Field::Float(1.0), Field::Float(2.0), s("ok"), Field::Float(0.25)],
                vec![Field::Long(11), Field::Float(3.0), Field::Float(4.0), s("ok"), Field::Float(0.25)],
                vec![Field::Long(12), Field::Null, Field::Null, s("missing"), Field::Null],
                vec![Field::Long(13), Field::Float(5.5), Field::Float(-6.0), s("saturated"), Field::Float(0.25)],
            ]
        );
    }
}
