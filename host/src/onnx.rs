//! ONNX export (`tract_onnx::pb` + prost) and ONNX inference (tract; optionally ONNX Runtime).
//!
//! Tensor convention, the same for every architecture:
//! * `encoder.onnx`:      input `"window"` `[N, C*T]` → output `"latent"` `[N, K]`
//! * `decoder.onnx`:      input `"latent"` `[N, K]` → output `"reconstruction"` `[N, C*T]`
//! * `autoencoder.onnx`:  input `"window"` `[N, C*T]` → output `"reconstruction"` `[N, C*T]`
//!
//! All values are `float32`, normalized (see the model card's normalization). A window is
//! channels-first `[C][T]` flattened channel-major (`c * T + t`); conv graphs reshape to
//! `[N, C, T]` internally. `N` is a dynamic batch dimension. Opset 13, IR version 7.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::{
    tvec, Framework, InferenceModelExt, IntoRunnable, TValue, Tensor as TractTensor, TypedRunnableModel,
};

use crate::float_model::{Activation, FloatLayer};
use crate::train::{Autoencoder, NetLayer};

pub const INPUT_NAME: &str = "window";
pub const LATENT_NAME: &str = "latent";
pub const OUTPUT_NAME: &str = "reconstruction";
pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 7;
pub const ENCODER_FILE: &str = "encoder.onnx";
pub const DECODER_FILE: &str = "decoder.onnx";
pub const AUTOENCODER_FILE: &str = "autoencoder.onnx";

const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;

fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn value_info(name: &str, features: usize) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = |v| Dimension { denotation: String::new(), value: Some(v) };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![dim(Value::DimParam("N".into())), dim(Value::DimValue(features as i64))],
                }),
            })),
        }),
        doc_string: String::new(),
    }
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    counter: usize,
}

impl GraphBuilder {
    fn fresh(&mut self, prefix: &str, what: &str) -> String {
        self.counter += 1;
        format!("{prefix}/{what}_{}", self.counter)
    }

    fn init_f32(&mut self, name: String, dims: &[usize], data: &[f32]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            float_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    fn init_i64(&mut self, name: String, data: &[i64]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: INT64,
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    fn node(&mut self, op: &str, name: String, inputs: Vec<String>, output: String, attrs: Vec<pb::AttributeProto>) {
        self.nodes.push(pb::NodeProto {
            input: inputs,
            output: vec![output],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Appends `layers`, reading `input` and writing the final value to `output`.
    fn layers(&mut self, prefix: &str, layers: &[NetLayer], input: &str, output: &str) {
        let mut cur = input.to_string();
        for (i, layer) in layers.iter().enumerate() {
            let last = i + 1 == layers.len();
            let p = format!("{prefix}/l{i}");
            // The name of this layer's final value.
            let out = if last { output.to_string() } else { format!("{p}/out") };
            match layer {
                NetLayer::Weighted(FloatLayer::Dense { in_features, out_features, weight, bias, activation }) => {
                    let relu = *activation == Activation::Relu;
                    let w = self.init_f32(format!("{p}.weight"), &[*out_features, *in_features], weight);
                    let b = self.init_f32(format!("{p}.bias"), &[*out_features], bias);
                    let y = if relu { format!("{p}/gemm") } else { out.clone() };
                    self.node(
                        "Gemm",
                        format!("{p}/Gemm"),
                        vec![cur.clone(), w, b],
                        y.clone(),
                        vec![attr_int("transB", 1)],
                    );
                    if relu {
                        self.node("Relu", format!("{p}/Relu"), vec![y], out.clone(), vec![]);
                    }
                }
                NetLayer::Weighted(FloatLayer::Conv1d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    weight,
                    bias,
                    activation,
                    ..
                }) => {
                    let relu = *activation == Activation::Relu;
                    let w = self.init_f32(format!("{p}.weight"), &[*out_channels, *in_channels, *kernel], weight);
                    let b = self.init_f32(format!("{p}.bias"), &[*out_channels], bias);
                    let y = if relu { format!("{p}/conv") } else { out.clone() };
                    self.node(
                        "Conv",
                        format!("{p}/Conv"),
                        vec![cur.clone(), w, b],
                        y.clone(),
                        vec![
                            attr_ints("kernel_shape", &[*kernel as i64]),
                            attr_ints("strides", &[*stride as i64]),
                            attr_ints("pads", &[*padding as i64, *padding as i64]),
                            attr_ints("dilations", &[1]),
                            attr_int("group", 1),
                        ],
                    );
                    if relu {
                        self.node("Relu", format!("{p}/Relu"), vec![y], out.clone(), vec![]);
                    }
                }
                NetLayer::Reshape { channels, len } => {
                    let s = self.init_i64(format!("{p}.shape"), &[-1, *channels as i64, *len as i64]);
                    self.node("Reshape", format!("{p}/Reshape"), vec![cur.clone(), s], out.clone(), vec![]);
                }
                NetLayer::Flatten => {
                    self.node(
                        "Flatten",
                        format!("{p}/Flatten"),
                        vec![cur.clone()],
                        out.clone(),
                        vec![attr_int("axis", 1)],
                    );
                }
                NetLayer::Upsample2 { channels, len } => {
                    // [N,C,L] → Unsqueeze(3) [N,C,L,1] → Concat(x,x; 3) [N,C,L,2] → Reshape [N,C,2L]
                    let axes = self.init_i64(format!("{p}.axes"), &[3]);
                    let shape = self.init_i64(format!("{p}.shape"), &[-1, *channels as i64, 2 * *len as i64]);
                    let u = self.fresh(&p, "unsq");
                    let c = self.fresh(&p, "cat");
                    self.node("Unsqueeze", format!("{p}/Unsqueeze"), vec![cur.clone(), axes], u.clone(), vec![]);
                    self.node(
                        "Concat",
                        format!("{p}/Concat"),
                        vec![u.clone(), u],
                        c.clone(),
                        vec![attr_int("axis", 3)],
                    );
                    self.node("Reshape", format!("{p}/Reshape"), vec![c, shape], out.clone(), vec![]);
                }
            }
            cur = out;
        }
        if layers.is_empty() {
            self.node("Identity", format!("{prefix}/Identity"), vec![cur], output.into(), vec![]);
        }
    }

    fn finish(self, name: &str, input: (&str, usize), output: (&str, usize), doc: &str) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "funnel".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: name.into(),
                initializer: self.initializers,
                input: vec![value_info(input.0, input.1)],
                output: vec![value_info(output.0, output.1)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

const DOC: &str = "Funnel autoencoder. Inputs/outputs float32, normalized per channel; a window is [C][T] \
flattened channel-major (c*T+t); N is the batch dimension.";

pub fn encoder_proto(model: &Autoencoder) -> Result<pb::ModelProto> {
    let mut g = GraphBuilder::default();
    g.layers("encoder", &model.encoder_net()?, INPUT_NAME, LATENT_NAME);
    Ok(g.finish("funnel_encoder", (INPUT_NAME, model.spec.input_len()), (LATENT_NAME, model.spec.latent), DOC))
}

pub fn decoder_proto(model: &Autoencoder) -> Result<pb::ModelProto> {
    let mut g = GraphBuilder::default();
    g.layers("decoder", &model.decoder_net()?, LATENT_NAME, OUTPUT_NAME);
    Ok(g.finish("funnel_decoder", (LATENT_NAME, model.spec.latent), (OUTPUT_NAME, model.spec.input_len()), DOC))
}

pub fn autoencoder_proto(model: &Autoencoder) -> Result<pb::ModelProto> {
    let mut g = GraphBuilder::default();
    g.layers("encoder", &model.encoder_net()?, INPUT_NAME, LATENT_NAME);
    g.layers("decoder", &model.decoder_net()?, LATENT_NAME, OUTPUT_NAME);
    Ok(g.finish("funnel_autoencoder", (INPUT_NAME, model.spec.input_len()), (OUTPUT_NAME, model.spec.input_len()), DOC))
}

pub fn write_proto(proto: &pb::ModelProto, path: &Path) -> Result<()> {
    std::fs::write(path, proto.encode_to_vec()).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `autoencoder.onnx`, `encoder.onnx`, `decoder.onnx` into `dir`; returns their paths.
pub fn export_all(model: &Autoencoder, dir: &Path) -> Result<Vec<PathBuf>> {
    let files = [
        (AUTOENCODER_FILE, autoencoder_proto(model)?),
        (ENCODER_FILE, encoder_proto(model)?),
        (DECODER_FILE, decoder_proto(model)?),
    ];
    let mut paths = Vec::new();
    for (name, proto) in files {
        let p = dir.join(name);
        write_proto(&proto, &p)?;
        paths.push(p);
    }
    Ok(paths)
}

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
    fn read(path: &Path) -> Result<(pb::ModelProto, OnnxSignature)> {
        ensure!(path.exists(), "ONNX file {} does not exist", path.display());
        let bytes = std::fs::read(path).with_context(|| format!("cannot read ONNX file {}", path.display()))?;
        let proto = pb::ModelProto::decode(bytes.as_slice())
            .with_context(|| format!("{} is not a valid ONNX model (protobuf decode failed)", path.display()))?;
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
        let signature = OnnxSignature { path: path.to_path_buf(), input_name, input_len, output_name, output_len };
        Ok((proto, signature))
    }

    /// Refuses an input that is not `batch` rows of `input_len` values.
    fn check_input(&self, input: &[f32], batch: usize) -> Result<()> {
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
    fn check_output(&self, len: usize, batch: usize) -> Result<()> {
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
    let path = path.as_ref();
    let (proto, signature) = OnnxSignature::read(path)?;
    let plan = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .with_context(|| format!("tract cannot load ONNX model {}", path.display()))?;
    Ok(TractModel { signature, plan })
}

impl TractModel {
    /// Runs a batch: `input` is `[batch][input_len]`, returns `[batch][output_len]`.
    pub fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
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

/// An ONNX file produced here, run by ONNX Runtime (loaded dynamically from `ORT_DYLIB_PATH`).
#[cfg(feature = "ort")]
pub struct OrtModel {
    session: std::sync::Mutex<ort::session::Session>,
    pub signature: OnnxSignature,
}

/// The ONNX Runtime environment, created once per process from the library named by
/// `ORT_DYLIB_PATH` (ort 2.0.0-rc.15 API: `init_from(..).build()`, sessions built on it).
#[cfg(feature = "ort")]
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

#[cfg(feature = "ort")]
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

    /// Runs a batch: `input` is `[batch][input_len]`, returns `[batch][output_len]`.
    pub fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::tests::sine_windows;
    use crate::train::{Arch, ModelSpec};
    use candle_nn::VarMap;

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    fn round_trip(arch: Arch) {
        let spec = ModelSpec::new(arch, 2, 32, 5).unwrap();
        let vm = VarMap::new();
        let model = Autoencoder::new(&spec, &vm, 11).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let paths = export_all(&model, dir.path()).unwrap();
        assert_eq!(paths.len(), 3);
        let w = sine_windows(7, 2, 32, 5);
        let z = model.encode_windows(&w).unwrap();
        let r = model.reconstruct(&w).unwrap();
        let dec_candle = model.decode_latents(&z).unwrap();

        let ae = load_with_tract(dir.path().join(AUTOENCODER_FILE)).unwrap();
        let d = max_diff(&ae.run(&w.data, w.len()).unwrap(), &r.data);
        assert!(d <= 1e-4, "{arch} autoencoder: {d}");
        // Dynamic batch: another batch size on the same plan.
        let d = max_diff(&ae.run(&w.data[..3 * w.dim], 3).unwrap(), &r.data[..3 * w.dim]);
        assert!(d <= 1e-4, "{arch} autoencoder batch 3: {d}");
        let enc = load_with_tract(dir.path().join(ENCODER_FILE)).unwrap();
        let d = max_diff(&enc.run(&w.data, w.len()).unwrap(), &z.data);
        assert!(d <= 1e-4, "{arch} encoder: {d}");
        let dec = load_with_tract(dir.path().join(DECODER_FILE)).unwrap();
        assert_eq!((dec.signature.input_len, dec.signature.output_len), (5, 64));
        let d = max_diff(&dec.run(&z.data, z.len()).unwrap(), &dec_candle.data);
        assert!(d <= 1e-4, "{arch} decoder: {d}");
    }

    #[test]
    fn onnx_round_trip_mlp() {
        round_trip(Arch::Mlp);
    }

    #[test]
    fn onnx_round_trip_conv() {
        round_trip(Arch::Conv);
    }

    #[test]
    fn missing_and_broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.onnx");
        let e = format!("{:#}", load_with_tract(&missing).unwrap_err());
        assert!(e.contains("nope.onnx") && e.contains("does not exist"), "{e}");
        let broken = dir.path().join("broken.onnx");
        std::fs::write(&broken, b"\xff\xff\xff garbage").unwrap();
        let e = format!("{:#}", load_with_tract(&broken).unwrap_err());
        assert!(e.contains("broken.onnx"), "{e}");
    }

    /// Needs `--features ort` and `ORT_DYLIB_PATH`; fails (does not skip) without the variable, so
    /// a CI job that enables the feature really runs ONNX Runtime.
    #[cfg(feature = "ort")]
    #[test]
    fn ort_runs_all_three_files_like_candle() {
        assert!(
            std::env::var_os("ORT_DYLIB_PATH").is_some(),
            "ORT_DYLIB_PATH must point at libonnxruntime.so.1.* for the `ort` feature's tests"
        );
        for arch in [Arch::Mlp, Arch::Conv] {
            let spec = ModelSpec::new(arch, 2, 32, 4).unwrap();
            let vm = VarMap::new();
            let model = Autoencoder::new(&spec, &vm, 2).unwrap();
            let dir = tempfile::tempdir().unwrap();
            export_all(&model, dir.path()).unwrap();
            let w = sine_windows(6, 2, 32, 8);
            let z = model.encode_windows(&w).unwrap();
            let ae = OrtModel::load(dir.path().join(AUTOENCODER_FILE)).unwrap();
            let d = max_diff(&ae.run(&w.data, w.len()).unwrap(), &model.reconstruct(&w).unwrap().data);
            assert!(d <= 1e-4, "{arch} ort autoencoder: {d}");
            let enc = OrtModel::load(dir.path().join(ENCODER_FILE)).unwrap();
            let d = max_diff(&enc.run(&w.data, w.len()).unwrap(), &z.data);
            assert!(d <= 1e-4, "{arch} ort encoder: {d}");
            let dec = OrtModel::load(dir.path().join(DECODER_FILE)).unwrap();
            assert_eq!((dec.signature.input_len, dec.signature.output_len), (4, 64));
            let d = max_diff(&dec.run(&z.data, z.len()).unwrap(), &model.decode_latents(&z).unwrap().data);
            assert!(d <= 1e-4, "{arch} ort decoder: {d}");
        }
    }
}
