//! ONNX files run by tract (pure Rust, always built).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tract_onnx::pb;
use tract_onnx::prelude::{
    tvec, Framework, InferenceModelExt, IntoRunnable, TValue, Tensor as TractTensor, TypedRunnableModel,
};

use super::{OnnxSignature, Runtime};

/// An ONNX model loaded and optimized by tract, batch dimension kept symbolic.
pub struct TractModel {
    pub signature: OnnxSignature,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel").field("signature", &self.signature).finish()
    }
}

/// Loads an ONNX file with tract (optimized, dynamic batch). Missing or broken files give an
/// error naming the file.
pub fn load_with_tract(path: impl AsRef<Path>) -> Result<TractModel> {
    let (proto, signature) = OnnxSignature::read(path.as_ref())?;
    TractModel::plan(&proto, signature)
}

impl TractModel {
    /// A graph already in memory (just exported); `name` stands for its file in errors.
    pub fn from_proto(proto: &pb::ModelProto, name: &Path) -> Result<TractModel> {
        TractModel::plan(proto, OnnxSignature::of(proto, name)?)
    }

    fn plan(proto: &pb::ModelProto, signature: OnnxSignature) -> Result<TractModel> {
        let path = signature.path.clone();
        let plan = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .with_context(|| format!("tract cannot load ONNX model {}", path.display()))?;
        Ok(TractModel { signature, plan })
    }
}

impl Runtime for TractModel {
    fn input_len(&self) -> usize {
        self.signature.input_len
    }

    fn output_len(&self) -> usize {
        self.signature.output_len
    }

    fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let sig = &self.signature;
        sig.check_input(input, batch)?;
        if batch == 0 {
            return Ok(Vec::new());
        }
        let t = TractTensor::from_shape(&[batch, sig.input_len], input)?;
        let out = self
            .plan
            .run(tvec![TValue::from(t)])
            .with_context(|| format!("tract failed to run {}", sig.path.display()))?;
        let view = out[0].to_plain_array_view::<f32>()?;
        sig.check_output(view.len(), batch)?;
        Ok(view.iter().copied().collect())
    }
}
