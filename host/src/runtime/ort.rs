//! ONNX files run by ONNX Runtime, loaded dynamically from `ORT_DYLIB_PATH` (feature `ort`).

use std::path::Path;

use anyhow::Result;

use super::{Engine, OnnxModel, OnnxSignature};

/// An ONNX Runtime session (the runtime is not `Sync`: one run at a time).
pub struct OrtSession(std::sync::Mutex<ort::session::Session>);

/// An ONNX graph run by ONNX Runtime (loaded dynamically from `ORT_DYLIB_PATH`).
pub type OrtModel = OnnxModel<OrtSession>;

/// The ONNX Runtime environment, created once per process from the library named by
/// `ORT_DYLIB_PATH` (ort 2.0.0-rc.15 API: `init_from(..).build()`, sessions built on it).
pub fn ort_environment() -> Result<&'static ort::environment::Environment> {
    static ENV: std::sync::OnceLock<std::result::Result<ort::environment::Environment, String>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let lib = std::env::var("ORT_DYLIB_PATH").map_err(|_| {
            "ORT_DYLIB_PATH is not set: point it at libonnxruntime.so.1.* (e.g. onnxruntime/capi/ \
             inside the `onnxruntime` Python wheel, version 1.19 or newer)"
                .to_string()
        })?;
        ort::init_from(&lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {lib}: {e}"))?
            .with_name("funnel")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {lib}: {e}"))
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("{e}"))
}

impl OrtModel {
    pub fn load(path: impl AsRef<Path>) -> Result<OrtModel> {
        let path = path.as_ref();
        let (_, signature) = OnnxSignature::read(path)?;
        let env = ort_environment()?;
        let session = ort::session::Session::builder(env)
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| anyhow::anyhow!("ONNX Runtime cannot load {}: {e}", path.display()))?;
        Ok(OnnxModel { signature, engine: OrtSession(std::sync::Mutex::new(session)) })
    }
}

impl Engine for OrtSession {
    fn infer(&self, sig: &OnnxSignature, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let tensor = ort::value::Tensor::from_array(([batch, sig.input_len], input.to_vec()))
            .map_err(|e| anyhow::anyhow!("ort tensor: {e}"))?;
        let mut session = self.0.lock().map_err(|_| anyhow::anyhow!("ort session lock poisoned"))?;
        let outputs = session
            .run(ort::inputs![sig.input_name.as_str() => tensor])
            .map_err(|e| anyhow::anyhow!("ONNX Runtime failed on {}: {e}", sig.path.display()))?;
        let (_, data) = outputs[sig.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow::anyhow!("ort output of {}: {e}", sig.path.display()))?;
        Ok(data.to_vec())
    }
}
