//! What an ONNX file of a model directory declares: its `[N, features]` input and output.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use tract_onnx::pb;

/// An ONNX file produced here and its `[N, features]` input and output, as its graph declares
/// them; both runtimes check batches against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxSignature {
    pub path: PathBuf,
    pub input_name: String,
    pub input_len: usize,
    pub output_name: String,
    pub output_len: usize,
}

impl OnnxSignature {
    /// Reads `path`; missing, unreadable or malformed files give an error naming the file.
    pub(super) fn read(path: &Path) -> Result<(pb::ModelProto, OnnxSignature)> {
        ensure!(path.exists(), "ONNX file {} does not exist", path.display());
        let bytes = std::fs::read(path).with_context(|| format!("cannot read ONNX file {}", path.display()))?;
        let proto = pb::ModelProto::decode(bytes.as_slice())
            .with_context(|| format!("{} is not a valid ONNX model (protobuf decode failed)", path.display()))?;
        let signature = OnnxSignature::of(&proto, path)?;
        Ok((proto, signature))
    }

    /// The signature of a graph in memory; `path` names it in errors.
    pub(super) fn of(proto: &pb::ModelProto, path: &Path) -> Result<OnnxSignature> {
        let graph = proto.graph.as_ref().with_context(|| format!("{}: ONNX model has no graph", path.display()))?;
        let sig = |v: Option<&pb::ValueInfoProto>, what: &str| -> Result<(String, usize)> {
            let v = v.with_context(|| format!("{}: graph has no {what}", path.display()))?;
            let dims = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(pb::type_proto::Value::TensorType(t)) => {
                    t.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default()
                }
                _ => bail!("{}: {what} {:?} is not a tensor", path.display(), v.name),
            };
            use pb::tensor_shape_proto::dimension::Value;
            match dims.as_slice() {
                [_, last] => match last.value {
                    Some(Value::DimValue(d)) if d > 0 => Ok((v.name.clone(), d as usize)),
                    _ => bail!("{}: {what} {:?} needs a fixed feature dimension", path.display(), v.name),
                },
                _ => bail!("{}: {what} {:?} must be [N, features] (got rank {})", path.display(), v.name, dims.len()),
            }
        };
        let (input_name, input_len) = sig(graph.input.first(), "input")?;
        let (output_name, output_len) = sig(graph.output.first(), "output")?;
        Ok(OnnxSignature { path: path.to_path_buf(), input_name, input_len, output_name, output_len })
    }

    /// Refuses an input that is not `batch` rows of `input_len` values.
    pub(super) fn check_input(&self, input: &[f32], batch: usize) -> Result<()> {
        ensure!(
            input.len() == batch * self.input_len,
            "{}: input has {} values, expected batch {batch} × {} ({})",
            self.path.display(),
            input.len(),
            self.input_len,
            self.input_name
        );
        Ok(())
    }

    /// Refuses an output that is not `batch` rows of `output_len` values.
    pub(super) fn check_output(&self, len: usize, batch: usize) -> Result<()> {
        ensure!(
            len == batch * self.output_len,
            "{}: output has {len} values, expected batch {batch} × {} ({})",
            self.path.display(),
            self.output_len,
            self.output_name
        );
        Ok(())
    }
}
