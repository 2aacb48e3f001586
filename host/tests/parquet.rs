//! `funnel decode --out F.parquet`: the same rows as the CSV, as columns — values null where a
//! frame was lost, the bound of a bounded model's rows, the model in the file's metadata.

use std::path::{Path, PathBuf};

use funnel::codec::simulate;
use funnel::pipeline::{decode_stream, recording_counts, DecodeRequest, Source};
use funnel::runtime::Backend;
use funnel_artifacts::ModelDir;
use funnel_shared::stream::StreamConfig;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn decode(model: &Path, input: &Path, out: &Path) {
    let outputs = decode_stream(&DecodeRequest {
        model: model.to_path_buf(),
        source: Source::File(input.to_path_buf()),
        out: out.to_path_buf(),
        backend: Backend::Tract,
        plot: None,
        stream: None,
    })
    .unwrap();
    outputs[0].report.as_ref().unwrap();
}

#[test]
fn a_parquet_output_holds_the_csv_s_rows() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, bound) in [("ecg", None), ("ecg-lossless", Some("0"))] {
        let model = root().join("models").join(name);
        let counts =
            recording_counts(&model, &root().join("data/mitbih208_ecg.csv"), &["ecg_mlii_mV".to_string()]).unwrap();
        let blob = ModelDir::new(&model).load_blob().unwrap();
        let config = StreamConfig { windows_per_frame: 4, ..StreamConfig::DEFAULT };
        let bytes = simulate(&blob, &counts[..20_000], config).unwrap().bytes;
        // Frame 3 lost on the way: its rows have no values.
        let mut frames = funnel::pipeline::LinkSplitter::new();
        let mut items = frames.feed(&bytes).unwrap();
        items.extend(frames.finish().unwrap().0);
        let third = items.iter().enumerate().filter(|(_, i)| !i.header).nth(3).unwrap().0;
        items.remove(third);
        let input = tmp.path().join(format!("{name}.bin"));
        std::fs::write(&input, items.iter().flat_map(|i| i.bytes.clone()).collect::<Vec<u8>>()).unwrap();
        let (csv, pq) = (tmp.path().join(format!("{name}.csv")), tmp.path().join(format!("{name}.parquet")));
        decode(&model, &input, &csv);
        decode(&model, &input, &pq);

        let reader = SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
        let meta = reader.metadata().file_metadata();
        let kv = meta.key_value_metadata().unwrap();
        let value = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(value("funnel.model_id"), Some(blob.model_id().to_string()));
        assert_eq!(value("funnel.max_error").as_deref(), bound);
        let rows: Vec<Vec<Field>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().get_column_iter().map(|(_, f)| f.clone()).collect())
            .collect();
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), lines.len(), "{name}");
        let mut missing = 0;
        for (row, line) in rows.iter().zip(&lines) {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(row[0], Field::Long(f[0].parse().unwrap()), "{line}");
            match f[1] {
                "" => {
                    assert_eq!(row[1], Field::Null, "{line}");
                    missing += 1;
                }
                v => assert_eq!(row[1], Field::Float(v.parse().unwrap()), "{line}"),
            }
            assert_eq!(row[2], Field::Str(f[2].to_string()), "{line}");
            if bound.is_some() {
                let expected = if f[3].is_empty() { Field::Null } else { Field::Float(f[3].parse().unwrap()) };
                assert_eq!(row[3], expected, "{line}");
            }
        }
        assert_eq!(missing, 4 * blob.window(), "{name}: frame 3's samples");
    }
}
