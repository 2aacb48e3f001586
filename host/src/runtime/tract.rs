//! ONNX files run by tract (pure Rust, always built).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tract_onnx::pb;
use tract_onnx::prelude::{
    tvec, Framework, InferenceModelExt, IntoRunnable, TValue, Tensor as TractTensor, TypedRunnableModel,
};

use super::{Engine, OnnxModel, OnnxSignature};

/// tract's optimized plan of a graph, batch dimension kept symbolic.
pub struct TractPlan(Arc<TypedRunnableModel>);

/// An ONNX graph run by tract.
pub type TractModel = OnnxModel<TractPlan>;

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
        let plan = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .with_context(|| format!("tract cannot load ONNX model {}", signature.path.display()))?;
        Ok(OnnxModel { signature, engine: TractPlan(plan) })
    }
}

impl Engine for TractPlan {
    fn infer(&self, sig: &OnnxSignature, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let t = TractTensor::from_shape(&[batch, sig.input_len], input)?;
        let out = self
            .0
            .run(tvec![TValue::from(t)])
            .with_context(|| format!("tract failed to run {}", sig.path.display()))?;
        Ok(out[0].to_plain_array_view::<f32>()?.iter().copied().collect())
    }
}
