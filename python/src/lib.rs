//! `funnel._funnel`, the extension module under the `funnel` Python package: the Rust decoder,
//! encoder, link splitter and model cards, with plain bytes at the boundary (the package turns
//! them into numpy arrays, `python/python/funnel/__init__.py`). Nothing here is reimplemented: it
//! calls the `funnel` library's `DecodingModel` and `LinkSplitter`, the same code as `funnel
//! decode`, `funnel encode` and `funnel gateway`.

use std::path::PathBuf;

use funnel::codec::{DecodeReport, SampleStatus};
use funnel::pipeline::{DecodingModel, LinkSplitter};
use funnel::runtime::Backend;
use funnel_artifacts::ModelDir;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// An error of the library as Python's `ValueError`, with its causes.
fn value_error(e: anyhow::Error) -> PyErr {
    PyValueError::new_err(format!("{e:#}"))
}

/// The status codes of decoded samples, as the package's `STATUS` names them.
fn status_code(status: SampleStatus) -> u8 {
    match status {
        SampleStatus::Ok => 0,
        SampleStatus::Saturated => 1,
        SampleStatus::Missing => 2,
        SampleStatus::Interrupted => 3,
    }
}

/// `(first_sample, values, status, report)` of [`Model::decode`].
type Decoded<'py> = (Option<u64>, Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyDict>);

/// A model directory (`model.json`, `encoder.fq8`, `decoder.onnx`), loaded once.
#[pyclass(unsendable, module = "funnel._funnel")]
struct Model {
    inner: DecodingModel,
    path: PathBuf,
}

#[pymethods]
impl Model {
    /// Loads the model in `path`; its decoder runs with tract.
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let inner = DecodingModel::load(&path, Backend::Tract).map_err(value_error)?;
        Ok(Model { inner, path })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    #[getter]
    fn model_id(&self) -> String {
        self.inner.blob().model_id().to_string()
    }

    /// The channels' names, in the order of the columns of decoded arrays.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.inner.card().columns.clone()
    }

    /// Samples per window.
    #[getter]
    fn window(&self) -> usize {
        self.inner.blob().window()
    }

    /// The bound every decoded value keeps (in the recording's units), for a bounded model.
    #[getter]
    fn max_error(&self) -> Option<f32> {
        self.inner.blob().residual().map(|r| f32::from(r.max_error) / self.inner.blob().counts_per_unit())
    }

    /// Decodes a link's bytes: `(first_sample, values, status, report)` — the values `[T][C]`
    /// as little-endian f32 bytes (NaN where missing), a status code per time step, and what
    /// happened to the stream.
    fn decode<'py>(&self, py: Python<'py>, frames: &[u8]) -> PyResult<Decoded<'py>> {
        let (collected, report) = self.inner.decode_bytes(frames).map_err(value_error)?;
        let values: Vec<u8> = collected.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let status: Vec<u8> = collected.status.iter().map(|&s| status_code(s)).collect();
        Ok((collected.first_sample, PyBytes::new(py, &values), PyBytes::new(py, &status), report_dict(py, &report)?))
    }

    /// Decodes a link's bytes into the Parquet file `funnel decode --out F.parquet` writes of
    /// them: `(file bytes, report)`.
    fn decode_to_parquet<'py>(
        &self,
        py: Python<'py>,
        frames: &[u8],
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
        let (file, report) = self.inner.decode_to_parquet(frames).map_err(value_error)?;
        Ok((PyBytes::new(py, &file), report_dict(py, &report)?))
    }

    /// The bytes the model's device sends for `values` (`[T][C]` little-endian f64 bytes, in the
    /// recording's units), as `funnel encode` writes them.
    fn encode<'py>(&self, py: Python<'py>, values: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        if !values.len().is_multiple_of(8) {
            return Err(PyValueError::new_err("values must be f64 bytes"));
        }
        let values: Vec<f64> =
            values.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        let encoded = self.inner.encode_values(&values).map_err(value_error)?;
        Ok(PyBytes::new(py, &encoded.bytes))
    }
}

/// A decode's report as a dict.
fn report_dict<'py>(py: Python<'py>, r: &DecodeReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("bytes", r.bytes)?;
    d.set_item("frames", r.frames)?;
    d.set_item("windows", r.windows)?;
    d.set_item("samples_written", r.samples_written)?;
    d.set_item("frames_lost", r.frames_lost)?;
    d.set_item("missing_samples", r.missing_samples)?;
    let gaps: Vec<(u64, u64)> = r.gaps.iter().map(|g| (g.first_sample, g.samples)).collect();
    d.set_item("gaps", gaps)?;
    d.set_item("corrupt_bytes", r.corrupt_bytes)?;
    d.set_item("restarts", r.restarts)?;
    d.set_item("saturated_windows", r.saturated_windows)?;
    d.set_item("undecodable_frames", r.undecodable_frames)?;
    d.set_item("summary", r.summary())?;
    Ok(d)
}

/// `(stream_id, is_header, bytes)` of each item of a link, and what the link lost.
type LinkItems<'py> = (Vec<(u8, bool, Bound<'py, PyBytes>)>, Bound<'py, PyDict>);

/// `(stream_id, is_header, bytes)` of each checked stream header and frame of a link's `bytes`,
/// in order, as `funnel gateway` publishes them (damage left out), and what the link lost.
#[pyfunction]
fn split_link<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<LinkItems<'py>> {
    let mut splitter = LinkSplitter::new();
    let mut items = splitter.feed(bytes).map_err(value_error)?;
    let (rest, report) = splitter.finish().map_err(value_error)?;
    items.extend(rest);
    let items = items.into_iter().map(|i| (i.stream_id, i.header, PyBytes::new(py, &i.bytes))).collect();
    let d = PyDict::new(py);
    d.set_item("frames_lost", report.frames_lost)?;
    d.set_item("dropped_bytes", report.dropped_bytes)?;
    Ok((items, d))
}

/// The model card (`model.json`) of the model directory `path`, as JSON text.
#[pyfunction]
fn read_card(path: PathBuf) -> PyResult<String> {
    let card = ModelDir::new(&path).load_card().map_err(|e| value_error(e.into()))?;
    serde_json::to_string(&card).map_err(|e| value_error(e.into()))
}

#[pymodule]
fn _funnel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(read_card, m)?)?;
    m.add_function(wrap_pyfunction!(split_link, m)?)?;
    Ok(())
}
