//! ONNX files run by ONNX Runtime, loaded dynamically from `ORT_DYLIB_PATH` (feature `ort`).

use std::path::Path;

use anyhow::Result;

use super::{OnnxSignature, Runtime};

/// An ONNX file produced here, run by ONNX Runtime (loaded dynamically from `ORT_DYLIB_PATH`).
pub struct OrtModel {
    session: std::sync::Mutex<ort::session::Session>,
    pub signature: OnnxSignature,
}

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
        Ok(OrtModel { session: std::sync::Mutex::new(session), signature })
    }
}

impl Runtime for OrtModel {
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
        let tensor = ort::value::Tensor::from_array(([batch, sig.input_len], input.to_vec()))
            .map_err(|e| anyhow::anyhow!("ort tensor: {e}"))?;
        let mut session = self.session.lock().map_err(|_| anyhow::anyhow!("ort session lock poisoned"))?;
        let outputs = session
            .run(ort::inputs![sig.input_name.as_str() => tensor])
            .map_err(|e| anyhow::anyhow!("ONNX Runtime failed on {}: {e}", sig.path.display()))?;
        let (_, data) = outputs[sig.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow::anyhow!("ort output of {}: {e}", sig.path.display()))?;
        sig.check_output(data.len(), batch)?;
        Ok(data.to_vec())
    }
}
