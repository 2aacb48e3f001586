//! ONNX export of a [`FloatNet`] (`tract_onnx::pb` + prost): three graphs per model.
//!
//! Tensor convention, the same for every architecture:
//! * `encoder.onnx`:      input `"window"` `[N, C*T]` → output `"latent"` `[N, K]`
//! * `decoder.onnx`:      input `"latent"` `[N, K]` → output `"reconstruction"` `[N, C*T]`;
//!   with a [`LinearInverse`], windows whose codes are beyond the training part's are rebuilt
//!   by it (so `autoencoder.onnx` is the two networks, not always encoder then decoder)
//! * `autoencoder.onnx`:  input `"window"` `[N, C*T]` → output `"reconstruction"` `[N, C*T]`
//!
//! All values are `float32`, normalized (see the model card's normalization). A window is
//! channels-first `[C][T]` flattened channel-major (`c * T + t`); conv graphs reshape to
//! `[N, C, T]` internally. `N` is a dynamic batch dimension. Opset 13, IR version 7.

use funnel_artifacts::model_dir::ArtifactError;
use funnel_artifacts::net::{Activation, FloatLayer, LinearInverse, NetLayer};
use funnel_artifacts::{FloatNet, Graph, ModelDir};
use prost::Message;
use tract_onnx::pb;

pub const INPUT_NAME: &str = "window";
pub const LATENT_NAME: &str = "latent";
pub const OUTPUT_NAME: &str = "reconstruction";
pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 7;

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

    /// Rebuilds the windows whose codes (`latent`, `[N, K]`) are beyond `inverse`'s limits with
    /// `inverse`, the others with the network's output (`network`, `[N, values]`), into `output`:
    /// a window is beyond when `Σ relu(|c| − limit) > 0`, which is "any code beyond its limit"
    /// (a sum of terms that are each 0 or positive) with the operators the graphs already use
    /// and `Abs`, `Sub`, `Greater` and `Where`.
    fn beyond_range(&mut self, inverse: &LinearInverse, latent: &str, network: &str, output: &str) {
        let p = "decoder/beyond_range";
        let (k, values) = (inverse.code_limit.len(), inverse.bias.len());
        let limit = self.init_f32(format!("{p}.code_limit"), &[k], &inverse.code_limit);
        let weight = self.init_f32(format!("{p}.weight"), &[values, k], &inverse.weight);
        let bias = self.init_f32(format!("{p}.bias"), &[values], &inverse.bias);
        let ones = self.init_f32(format!("{p}.ones"), &[1, k], &vec![1.0; k]);
        let zero = self.init_f32(format!("{p}.zero"), &[1], &[0.0]);
        let transposed = || vec![attr_int("transB", 1)];
        let linear = format!("{p}/linear");
        self.node("Gemm", format!("{p}/Gemm"), vec![latent.into(), weight, bias], linear.clone(), transposed());
        self.node("Abs", format!("{p}/Abs"), vec![latent.into()], format!("{p}/abs"), vec![]);
        self.node("Sub", format!("{p}/Sub"), vec![format!("{p}/abs"), limit], format!("{p}/over"), vec![]);
        self.node("Relu", format!("{p}/Relu"), vec![format!("{p}/over")], format!("{p}/excess"), vec![]);
        self.node("Gemm", format!("{p}/Total"), vec![format!("{p}/excess"), ones], format!("{p}/total"), transposed());
        self.node("Greater", format!("{p}/Greater"), vec![format!("{p}/total"), zero], format!("{p}/beyond"), vec![]);
        self.node(
            "Where",
            format!("{p}/Where"),
            vec![format!("{p}/beyond"), linear, network.into()],
            output.into(),
            vec![],
        );
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

/// The three graphs of a model, in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxFiles {
    pub autoencoder: pb::ModelProto,
    pub encoder: pb::ModelProto,
    pub decoder: pb::ModelProto,
}

impl OnnxFiles {
    pub fn graph(&self, graph: Graph) -> &pb::ModelProto {
        match graph {
            Graph::Autoencoder => &self.autoencoder,
            Graph::Encoder => &self.encoder,
            Graph::Decoder => &self.decoder,
        }
    }

    /// Serialized protobuf of one graph.
    pub fn bytes(&self, graph: Graph) -> Vec<u8> {
        self.graph(graph).encode_to_vec()
    }

    /// Writes `autoencoder.onnx`, `encoder.onnx` and `decoder.onnx` into `dir`.
    pub fn write(&self, dir: &ModelDir) -> Result<(), ArtifactError> {
        Graph::ALL.into_iter().try_for_each(|g| dir.write(g.file_name(), &self.bytes(g)))
    }
}

/// The encoder, decoder and whole autoencoder of `net` as ONNX graphs.
pub fn export_onnx(net: &FloatNet) -> OnnxFiles {
    let (input, latent) = (net.spec.input_len(), net.spec.latent);
    let graph = |name: &str, halves: &[(&str, &[NetLayer], &str, &str)], from: (&str, usize), to: (&str, usize)| {
        let mut g = GraphBuilder::default();
        for (prefix, layers, input, output) in halves {
            g.layers(prefix, layers, input, output);
        }
        g.finish(name, from, to, DOC)
    };
    let encoder_half = ("encoder", net.encoder.as_slice(), INPUT_NAME, LATENT_NAME);
    let decoder_half = ("decoder", net.decoder.as_slice(), LATENT_NAME, OUTPUT_NAME);
    OnnxFiles {
        autoencoder: graph(
            "funnel_autoencoder",
            &[encoder_half, decoder_half],
            (INPUT_NAME, input),
            (OUTPUT_NAME, input),
        ),
        encoder: graph("funnel_encoder", &[encoder_half], (INPUT_NAME, input), (LATENT_NAME, latent)),
        decoder: match &net.beyond_range {
            None => graph("funnel_decoder", &[decoder_half], (LATENT_NAME, latent), (OUTPUT_NAME, input)),
            Some(inverse) => {
                let mut g = GraphBuilder::default();
                let network = "decoder/network";
                g.layers("decoder", &net.decoder, LATENT_NAME, network);
                g.beyond_range(inverse, LATENT_NAME, network, OUTPUT_NAME);
                g.finish("funnel_decoder", (LATENT_NAME, latent), (OUTPUT_NAME, input), DOC)
            }
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime::{load_onnx, load_with_tract, Backend, Runtime};
    use funnel_artifacts::spec::{Arch, LayerKind, ModelSpec};

    /// A network of `spec`'s shape with deterministic pseudo-random weights.
    pub(crate) fn random_net(spec: &ModelSpec, seed: u64) -> FloatNet {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = move |scale: f32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        };
        let mut layer = |kind: &LayerKind| {
            let (weights, biases, fan_in) = kind.parameter_counts().unwrap_or((0, 0, 1));
            let scale = (3.0 / fan_in as f32).sqrt();
            let weight = (0..weights).map(|_| rnd(scale)).collect();
            NetLayer::with_weights(*kind, weight, (0..biases).map(|_| rnd(0.1)).collect())
        };
        let (encoder, decoder) = spec.layout();
        FloatNet {
            spec: spec.clone(),
            encoder: encoder.iter().map(&mut layer).collect(),
            decoder: decoder.iter().map(&mut layer).collect(),
            beyond_range: None,
        }
    }

    /// A transform net whose decoder rebuilds codes beyond those of [`windows`]' first three
    /// with a (pseudo-random) linear inverse.
    fn net_with_linear_inverse(seed: u64) -> FloatNet {
        let net = random_net(&ModelSpec::new(Arch::Transform, 1, 32, 6).unwrap(), seed);
        let (dim, k) = (net.spec.input_len(), net.spec.latent);
        let z: Vec<f32> = windows(3, dim).chunks(dim).flat_map(|w| net.encode(w)).collect();
        let code_limit = (0..k).map(|j| z.iter().skip(j).step_by(k).fold(0f32, |m, c| m.max(c.abs()))).collect();
        let wave = |i: usize| ((i as f32) * 0.71).sin();
        let inverse =
            LinearInverse { code_limit, weight: (0..dim * k).map(wave).collect(), bias: (0..dim).map(wave).collect() };
        FloatNet { beyond_range: Some(inverse), ..net }
    }

    fn windows(n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim).map(|i| ((i as f32) * 0.37).sin() + 0.3 * ((i as f32) * 0.05).cos()).collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Every graph of `net`, run by `backend`, computes what the reference forward pass computes.
    fn assert_graphs_match_reference(net: &FloatNet, backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let model = ModelDir::new(dir.path());
        export_onnx(net).write(&model).unwrap();
        let (dim, n) = (net.spec.input_len(), 7);
        let x = windows(n, dim);
        let z: Vec<f32> = x.chunks(dim).flat_map(|w| net.encode(w)).collect();
        let expected = [
            (Graph::Autoencoder, &x, x.chunks(dim).flat_map(|w| net.reconstruct(w)).collect::<Vec<_>>()),
            (Graph::Encoder, &x, z.clone()),
            (Graph::Decoder, &z, z.chunks(net.spec.latent).flat_map(|l| net.decode(l)).collect()),
        ];
        for (graph, input, want) in expected {
            let runtime = load_onnx(&model.onnx_path(graph), backend).unwrap();
            let got = runtime.run(input, n).unwrap();
            let d = max_diff(&got, &want);
            assert!(d <= 1e-4, "{:?} {graph:?} via {backend}: max |diff| {d}", net.spec.arch);
            // Dynamic batch: another batch size on the same plan.
            let rows = input.len() / n;
            let d = max_diff(&runtime.run(&input[..3 * rows], 3).unwrap(), &want[..3 * runtime.output_len()]);
            assert!(d <= 1e-4, "{graph:?} batch 3: {d}");
        }
    }

    #[test]
    fn onnx_graphs_compute_the_reference_mlp() {
        assert_graphs_match_reference(&random_net(&ModelSpec::new(Arch::Mlp, 2, 32, 5).unwrap(), 11), Backend::Tract);
    }

    #[test]
    fn onnx_graphs_compute_the_reference_conv() {
        assert_graphs_match_reference(&random_net(&ModelSpec::new(Arch::Conv, 2, 32, 5).unwrap(), 12), Backend::Tract);
    }

    #[test]
    fn the_decoder_rebuilds_codes_beyond_range_with_the_linear_inverse() {
        let net = net_with_linear_inverse(5);
        let (dim, n) = (net.spec.input_len(), 7);
        let z: Vec<f32> = windows(n, dim).chunks(dim).flat_map(|w| net.encode(w)).collect();
        let inverse = net.beyond_range.as_ref().unwrap();
        let beyond: Vec<bool> = z.chunks(net.spec.latent).map(|l| inverse.is_beyond(l)).collect();
        assert!(!beyond[..3].contains(&true) && beyond[3..].contains(&true), "{beyond:?}: both kinds of window");
        for (l, &b) in z.chunks(net.spec.latent).zip(&beyond) {
            let (linear, network) = (inverse.rebuild(l), net.decode_network(l));
            assert_eq!(net.decode(l), if b { linear } else { network });
        }
        assert_graphs_match_reference(&net, Backend::Tract);
    }

    #[test]
    fn decoder_signature_is_read_from_the_file() {
        let net = random_net(&ModelSpec::new(Arch::Mlp, 2, 32, 5).unwrap(), 3);
        let dir = tempfile::tempdir().unwrap();
        let model = ModelDir::new(dir.path());
        export_onnx(&net).write(&model).unwrap();
        let dec = load_with_tract(model.onnx_path(Graph::Decoder)).unwrap();
        assert_eq!((dec.input_len(), dec.output_len()), (5, 64));
        let e = format!("{:#}", dec.run(&[0.0; 6], 1).unwrap_err());
        assert!(e.contains("decoder.onnx") && e.contains("6 values"), "{e}");
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
    fn ort_runs_all_three_files_like_the_reference() {
        assert!(
            std::env::var_os("ORT_DYLIB_PATH").is_some(),
            "ORT_DYLIB_PATH must point at libonnxruntime.so.1.* for the `ort` feature's tests"
        );
        for arch in [Arch::Mlp, Arch::Conv] {
            assert_graphs_match_reference(&random_net(&ModelSpec::new(arch, 2, 32, 4).unwrap(), 2), Backend::Ort);
        }
        assert_graphs_match_reference(&net_with_linear_inverse(6), Backend::Ort);
    }
}
