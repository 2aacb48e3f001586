//! The `funnel` command line (feature `cli`): clap arguments, turned into the plain requests of
//! [`crate::pipeline`] before anything runs, and the outcomes printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use funnel_artifacts::spec::{Arch, Variant};
use funnel_shared::stream::StreamConfig;

use crate::pipeline::{
    self, CodeRate, DecodeRequest, DeviceBudget, EncodeRequest, EvalRequest, GatewayRequest, MqttDecodeRequest,
    OutputFormat, PlotRequest, QuantizeRequest, RdRequest, Source, StreamRequest, TrainRequest,
};
use crate::runtime::Backend;

/// Funnel: learned compression for sensor streams.
#[derive(Parser, Debug)]
#[command(name = "funnel", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole job: train, quantize, encode the recording as the device would, decode it, report.
    Pipeline(TrainArgs),
    /// Train an autoencoder; writes ONNX files, model.safetensors and model.json to --out.
    Train(TrainArgs),
    /// Held-out metrics of a trained model and the PCA baseline.
    Eval(EvalArgs),
    /// PNG of original vs. reconstruction over a few held-out windows.
    Plot(PlotArgs),
    /// int8-quantize the encoder into encoder.fq8 (the device's model blob) and measure it.
    Quantize(QuantizeArgs),
    /// Run the device's int8 encoder over a recording; write the exact frame bytes it sends.
    Encode(EncodeArgs),
    /// Rebuild the signal from received frames (file, stdin or a serial port) into a CSV, or
    /// every device's stream on an MQTT broker into a CSV each.
    Decode(DecodeArgs),
    /// Forward a link's frames (serial port, file or stdin) to an MQTT broker, a message per
    /// stream header and data frame, for `funnel decode --mqtt`.
    Gateway(GatewayArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Rate–distortion of a recording's held-out part: SZ3, a wavelet coder, DCT per window,
    /// PCA (truncated, and as a transform coder), lossless zstd, and the Funnel models given.
    /// Writes rd.json and rd.png to --out and prints a table.
    Rd(RdArgs),
}

#[derive(clap::Args, Clone, Debug)]
struct RdArgs {
    /// CSV file with a header row.
    #[arg(long)]
    data: PathBuf,
    /// The column to code.
    #[arg(long)]
    column: String,
    /// A Funnel model directory to place among the peers (repeat for several).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Window of the held-out split and of the per-window peers (default: the first model's,
    /// else 256).
    #[arg(long)]
    window: Option<usize>,
    /// Output directory for rd.json and rd.png.
    #[arg(long)]
    out: PathBuf,
    /// Windows per data frame of the Funnel models' streams (as `funnel encode`): more cost
    /// less framing per window and add latency. Default: each model's own.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    windows_per_frame: Option<u8>,
    /// Device counts per unit of the recording, for the lossless reference and the error-bounded
    /// sweep (default: the first model's, else the training part's own grid, as `funnel train`
    /// chooses it). A recording's own ADC scale (200 for MIT-BIH's ECG) makes a bound of 0
    /// lossless against the recording.
    #[arg(long)]
    counts_per_unit: Option<f32>,
}

/// A clap parser for a type with `FromStr` over a fixed list of names.
fn one_of<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    PossibleValuesParser::new(names).map(|s| s.parse::<T>().expect("one of the possible values"))
}

/// The recording and the columns every data-reading command takes.
#[derive(clap::Args, Clone, Debug)]
struct DataArgs {
    /// CSV file with a header row.
    #[arg(long)]
    data: PathBuf,
    /// Column to use as a channel; repeat for several channels.
    #[arg(long = "column", required = true)]
    columns: Vec<String>,
}

/// A model directory and a recording of its columns.
#[derive(clap::Args, Clone, Debug)]
struct ModelDataArgs {
    /// Model directory (`model.json`, the ONNX files, `encoder.fq8` once quantized).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(clap::Args, Clone, Debug)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Samples per window (per channel). Default: searched (32, 64 or 128), with --latent and
    /// --arch, within the device budget (--max-flash, --max-ram, --max-macs).
    #[arg(long)]
    window: Option<usize>,
    /// Latent size K (codes per window). Default: searched (a quarter, half or all of the
    /// window's values, at most 64).
    #[arg(long)]
    latent: Option<usize>,
    /// Architecture. Default: transform (the search tries only it).
    #[arg(long, value_parser = one_of::<Arch>(&["mlp", "conv", "transform"]))]
    arch: Option<Arch>,
    #[arg(long, default_value = "plain", value_parser = one_of::<Variant>(&["plain", "sparse", "contractive", "denoising"]))]
    variant: Variant,
    /// Maximum epochs (early stopping may end sooner).
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start from the weights of another model directory where names and shapes match.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Training windows start every N samples inside the fitted part (default: --window, no
    /// overlap, for a given shape; a searched shape's window / 8). A smaller hop augments the training data with overlapping windows; validation
    /// and held-out windows always use hop = window and never overlap the fitted part.
    #[arg(long)]
    train_hop: Option<usize>,
    /// Early stopping: epochs without a better validation loss before training stops.
    #[arg(long, default_value_t = 8)]
    patience: usize,
    /// Device ADC counts per unit of the recording (e.g. 200 for a front end giving 200 counts
    /// per mV). Default: the training part's own grid when its values lie on one (an ADC's:
    /// 200 per mV for MIT-BIH's ECG, 2048 per g for the IMU) that keeps them within half of the
    /// i16 range, else the largest power of two that does.
    #[arg(long)]
    counts_per_unit: Option<f32>,
    /// Resolution of the sensor in bits; the card reports the compression ratio against it.
    #[arg(long, default_value_t = 16)]
    sensor_bits: u32,
    /// Target rates: a network is trained for each (rate–distortion training), then quantized
    /// (and its decoder tuned) at the code step that sends B bits per sample on the training
    /// part, framing included. Several, comma separated: one model directory each under --out
    /// (`bits-B`). Default: 1 when the shape is searched; with --window, --latent and --arch
    /// all given, trained on reconstruction alone and quantized at the finest step.
    #[arg(long, value_delimiter = ',')]
    bits_per_sample: Vec<f64>,
    /// Windows per data frame of the model's stream (`funnel encode`'s default for it): more
    /// share the framing, and add latency. Rates are measured, and trained for, with it.
    /// Default: 1 for a given shape; as many as fill 1024 samples for a searched one.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    windows_per_frame: Option<u8>,
    /// One dead zone for every code, in steps (0 to below 0.5): the device rounds a code's value
    /// v to sign(v)·⌊|v| + ½ − D⌋, so small values cost fewer bits for a little more error.
    /// Default: for a target rate, 0 or each code's own D from what its nonzero values cost in
    /// its table, whichever rebuilds the validation slice of the training part better at that
    /// rate (each with its own code step and tuned decoder).
    #[arg(long)]
    dead_zone: Option<f64>,
    /// Most bytes of model blob (flash) a searched shape may take.
    #[arg(long, default_value_t = DeviceBudget::default().max_flash)]
    max_flash: usize,
    /// Most bytes of encoder buffers (RAM: a window of samples, kernel scratch, a frame) a
    /// searched shape may take.
    #[arg(long, default_value_t = DeviceBudget::default().max_ram)]
    max_ram: usize,
    /// Most multiply–accumulates per window a searched shape's int8 encoder may do.
    #[arg(long, default_value_t = DeviceBudget::default().max_macs)]
    max_macs: u64,
    /// Make the model bounded: the device sends the samples, none rebuilt more than E from its
    /// input (in the recording's units; 0: lossless in device counts), as residuals from a
    /// prediction fitted to the training part: from the samples alone, or from the decoder's
    /// rebuild of latent codes sent with them, whichever sends the training part in fewer bits.
    /// Without --bits-per-sample the bound also chooses the latent codes' rate (lower rates are
    /// tried in turn). `funnel decode` marks each row with its bound.
    #[arg(long, value_name = "E")]
    max_error: Option<f64>,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
}

impl TrainArgs {
    fn request(self) -> TrainRequest {
        TrainRequest {
            data: self.data.data,
            columns: self.data.columns,
            window: self.window,
            latent: self.latent,
            arch: self.arch,
            variant: self.variant,
            epochs: self.epochs,
            seed: self.seed,
            init: self.init,
            train_hop: self.train_hop,
            patience: self.patience,
            counts_per_unit: self.counts_per_unit,
            sensor_bits: self.sensor_bits,
            out: self.out,
            progress: true,
            rates: self.bits_per_sample.into_iter().map(CodeRate::BitsPerSample).collect(),
            windows_per_frame: self.windows_per_frame,
            dead_zone: self.dead_zone,
            budget: DeviceBudget { max_flash: self.max_flash, max_ram: self.max_ram, max_macs: self.max_macs },
            max_error: self.max_error,
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
struct EvalArgs {
    #[command(flatten)]
    input: ModelDataArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// What runs the float autoencoder: candle (the checkpoint), or `autoencoder.onnx` with tract
    /// or ONNX Runtime (`ort`: build with `--features ort`, set ORT_DYLIB_PATH).
    #[arg(long, default_value = "candle", value_parser = one_of::<Backend>(&["candle", "tract", "ort"]))]
    backend: Backend,
}

#[derive(clap::Args, Clone, Debug)]
struct PlotArgs {
    #[command(flatten)]
    input: ModelDataArgs,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Clone, Debug)]
struct QuantizeArgs {
    /// Trained model directory (writes `encoder.fq8` there and updates `model.json`).
    #[arg(long)]
    model: PathBuf,
    /// Calibrate activation ranges on this recording instead of the training part of the
    /// model's own data.
    #[arg(long, requires = "columns")]
    calibration: Option<PathBuf>,
    /// Columns of the calibration file (default: the model's columns).
    #[arg(long = "column")]
    columns: Vec<String>,
    /// The codes' quantization step over the finest (1 to 127; from 0.5 on the grid of a model
    /// trained for a rate): coarser codes, fewer bits
    /// (default: the step the card records, 1 for a new model).
    #[arg(long, conflicts_with = "bits_per_sample")]
    code_step: Option<f64>,
    /// Pick the code step that sends this many bits per sample on the training part, framing
    /// included (a model cannot go above its finest step's rate).
    #[arg(long)]
    bits_per_sample: Option<f64>,
    /// One dead zone for every code, in steps (0 to below 0.5): the device rounds a code's value
    /// v to sign(v)·⌊|v| + ½ − D⌋, so small values cost fewer bits for a little more error.
    /// Default: the card's rounding; for a target rate, 0 or each code's own D from what its
    /// nonzero values cost in its table, whichever rebuilds the validation slice of the
    /// training part better at that rate (each with its own code step and tuned decoder).
    #[arg(long)]
    dead_zone: Option<f64>,
    /// Make the model bounded (see `funnel train --max-error`): no sample rebuilt more than E
    /// from the device's input, in the recording's units. Without --code-step or
    /// --bits-per-sample the bound chooses the latent codes' rate.
    #[arg(long, value_name = "E")]
    max_error: Option<f64>,
}

#[derive(clap::Args, Clone, Debug)]
struct EncodeArgs {
    #[command(flatten)]
    input: ModelDataArgs,
    /// Where to write the frame byte stream.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    stream: StreamArgs,
}

/// How the simulated device sends its stream (`docs/wire-format.md`).
#[derive(clap::Args, Clone, Debug)]
struct StreamArgs {
    /// Windows per data frame, sharing one length byte, one 2-byte check and one entropy-coded
    /// payload: fewer bytes per window, more latency (and a lost frame loses them all); a
    /// frame holds at most 512 codes. Default: the model's (`windows_per_frame` in its card).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    windows_per_frame: Option<u8>,
    /// A 32-byte stream header before every N-th frame: a receiver joining mid-stream, or
    /// after a long loss, locks on within N frames.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    header_every: u8,
    /// Session id in the headers (a device changes it at every restart).
    #[arg(long, default_value_t = 0)]
    session: u16,
    /// Stream id in the headers.
    #[arg(long, default_value_t = 0)]
    stream_id: u8,
}

impl StreamArgs {
    fn request(&self) -> StreamRequest {
        StreamRequest {
            windows_per_frame: self.windows_per_frame,
            config: StreamConfig {
                stream_id: self.stream_id,
                session: self.session,
                header_interval: self.header_every,
                ..StreamConfig::DEFAULT
            },
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
struct DecodeArgs {
    /// Model directory (`encoder.fq8` identifies the model, `decoder.onnx` rebuilds windows).
    #[arg(long)]
    model: PathBuf,
    /// Frame stream file, or `-` for stdin.
    #[arg(long, conflicts_with_all = ["serial", "mqtt"], required_unless_present_any = ["serial", "mqtt"])]
    input: Option<String>,
    /// Read a live device on this serial port instead (e.g. /dev/ttyACM0).
    #[arg(long, conflicts_with = "mqtt")]
    serial: Option<String>,
    #[arg(long, default_value_t = 115_200, requires = "serial")]
    baud: u32,
    /// Subscribe to this MQTT broker instead (`mqtt://host[:port]`) and decode every stream on
    /// --topic, each into `<out>/<topic>.csv` (its levels joined by dots), as frames arrive.
    #[arg(long)]
    mqtt: Option<String>,
    /// With --mqtt: the topic filter (wildcards + and # allowed); each topic is one stream.
    #[arg(long, requires = "mqtt", default_value = pipeline::DEFAULT_DECODE_TOPIC)]
    topic: String,
    /// Stop reading the serial port or the broker after this many seconds (default: until
    /// interrupted).
    #[arg(long)]
    seconds: Option<f64>,
    /// With --mqtt: stop once nothing has arrived for this many seconds.
    #[arg(long, requires = "mqtt")]
    idle: Option<f64>,
    /// Output: `sample_index,<columns>,status` rows, as CSV, or as Parquet for a name ending in
    /// `.parquet`; with --mqtt, the directory of one file per topic.
    #[arg(long)]
    out: PathBuf,
    /// With --mqtt: the topics' files as `csv` or `parquet`.
    #[arg(long, requires = "mqtt", default_value = "csv", value_parser = ["csv", "parquet"])]
    format: String,
    /// What runs the decoder: `decoder.onnx` with tract or ONNX Runtime (`ort`), or the
    /// checkpoint with candle.
    #[arg(long, default_value = "tract", value_parser = one_of::<Backend>(&["tract", "ort", "candle"]))]
    backend: Backend,
    /// Also plot the reconstruction (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Decode this stream of the link. Without it: the first stream heard into --out and, from
    /// a file, every other stream of the model into `<out>.stream<N>.csv`.
    #[arg(long)]
    stream: Option<u8>,
}

/// The link `--input` (a file, `-` for stdin) or else `--serial` names (clap requires one).
fn link_source(input: Option<String>, serial: Option<String>, baud: u32, seconds: Option<f64>) -> Source {
    match (input, serial) {
        (Some(path), _) if path == "-" => Source::Stdin,
        (Some(path), _) => Source::File(path.into()),
        (None, port) => Source::Serial { port: port.unwrap_or_default(), baud, seconds },
    }
}

/// What `funnel decode` was asked for.
enum DecodeJob {
    Stream(DecodeRequest),
    Mqtt(MqttDecodeRequest),
}

impl DecodeArgs {
    fn request(self) -> Result<DecodeJob> {
        if let Some(url) = self.mqtt {
            anyhow::ensure!(
                self.plot.is_none() && self.stream.is_none(),
                "--plot and --stream decode one stream: not with --mqtt"
            );
            return Ok(DecodeJob::Mqtt(MqttDecodeRequest {
                model: self.model,
                broker: url.parse()?,
                topic: self.topic,
                out: self.out,
                format: if self.format == "parquet" { OutputFormat::Parquet } else { OutputFormat::Csv },
                backend: self.backend,
                seconds: self.seconds,
                idle: self.idle,
            }));
        }
        if self.input.is_some() && self.seconds.is_some() {
            anyhow::bail!("--seconds stops a live source: --serial or --mqtt");
        }
        // clap requires one of the three.
        let source = link_source(self.input, self.serial, self.baud, self.seconds);
        Ok(DecodeJob::Stream(DecodeRequest {
            model: self.model,
            source,
            out: self.out,
            backend: self.backend,
            plot: self.plot,
            stream: self.stream,
        }))
    }
}

#[derive(clap::Args, Clone, Debug)]
struct GatewayArgs {
    /// The device's serial port (e.g. /dev/ttyACM0).
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    serial: Option<String>,
    #[arg(long, default_value_t = 115_200, requires = "serial")]
    baud: u32,
    /// Or a captured frame stream (a file, or `-` for stdin).
    #[arg(long)]
    input: Option<String>,
    /// The broker: `mqtt://host[:port]` (port 1883 by default).
    #[arg(long)]
    mqtt: String,
    /// Topic of each message; `{device}` is replaced by --device, `{stream}` by the stream id.
    #[arg(long, default_value = pipeline::DEFAULT_GATEWAY_TOPIC)]
    topic: String,
    /// The device's name in topics (default: the serial port's or the file's name).
    #[arg(long)]
    device: Option<String>,
    /// Stop forwarding the serial port after this many seconds (default: until interrupted).
    #[arg(long, requires = "serial")]
    seconds: Option<f64>,
}

impl GatewayArgs {
    fn request(self) -> Result<GatewayRequest> {
        let source = link_source(self.input, self.serial, self.baud, self.seconds);
        let device = match (self.device, &source) {
            (Some(name), _) => name,
            (None, Source::Stdin) => "stdin".to_string(),
            (None, Source::File(path)) => path.file_stem().map_or("file".into(), |s| s.to_string_lossy().into_owned()),
            (None, Source::Serial { port, .. }) => {
                std::path::Path::new(port).file_name().map_or(port.clone(), |s| s.to_string_lossy().into_owned())
            }
        };
        Ok(GatewayRequest { source, broker: self.mqtt.parse()?, topic: self.topic, device })
    }
}

fn report_quantization(q: &pipeline::QuantizeOutcome) {
    let c = &q.card;
    eprintln!(
        "encoder.fq8: model {}, {} bytes, {} MACs/window, {} bytes scratch RAM, code step {:.3}; held-out PRDN float {:.3} % → int8 {:.3} % ({:+.1} %) at {:.3} bits/sample",
        c.model_id,
        c.blob_bytes,
        c.macs_per_window,
        c.scratch_bytes,
        c.code_step,
        c.float_prdn,
        c.int8_prdn,
        100.0 * c.relative_prdn_loss,
        q.int8.bits_per_sample
    );
    if let Some(w) = &q.warning {
        eprintln!("\n*** WARNING: {w}\n");
    }
    if let Some(b) = &q.bounded {
        eprintln!(
            "bounded (--max-error {}, {} count(s)): model {}; held out {:.3} bits/sample, framing included, largest \
             error {} ({} count(s))",
            b.max_error, b.max_error_counts, c.model_id, b.bits_per_sample, b.max_abs_error, b.max_abs_error_counts
        );
    }
}

/// Runs one parsed command line.
/// Runs a command; the exit code is 130 when a decode was stopped by Ctrl-C (its output is
/// complete up to there, and says so).
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(args) => {
            let t = pipeline::train_model(&args.request())?;
            report_quantization(&t.quantization);
            eprintln!("wrote {}", t.dir.path().display());
            print!("{}", t.report.table());
            for point in &t.more {
                report_quantization(&point.quantization);
                eprintln!("wrote {}", point.dir.path().display());
                print!("{}", point.report.table());
            }
        }
        Command::Eval(args) => {
            let json = args.json;
            let ModelDataArgs { model, data } = args.input;
            let request = EvalRequest { model, data: data.data, columns: data.columns, backend: args.backend };
            let report = pipeline::evaluate_model(&request)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::Plot(args) => {
            let ModelDataArgs { model, data } = args.input;
            let request = PlotRequest { model, data: data.data, columns: data.columns, out: args.out };
            pipeline::plot_model(&request)?;
            eprintln!("wrote {}", request.out.display());
        }
        Command::Pipeline(args) => {
            let p = pipeline::run_pipeline(&args.request())?;
            report_quantization(&p.trained.quantization);
            eprintln!(
                "device simulation: {} frames, {} bytes → {}",
                p.encoded.frames,
                p.encoded.bytes.len(),
                p.codes.display()
            );
            eprint!("decoded: {}", p.decoded.summary());
            eprintln!("reconstruction → {}", p.reconstruction.display());
            print!("{}", p.trained.report.table());
        }
        Command::Quantize(args) => {
            let calibration = args.calibration.map(|path| (path, args.columns));
            let rate = match (args.code_step, args.bits_per_sample) {
                (Some(step), _) => CodeRate::Step(step),
                (None, Some(bits)) => CodeRate::BitsPerSample(bits),
                (None, None) => CodeRate::AsBefore,
            };
            let request = QuantizeRequest {
                model: args.model,
                calibration,
                rate,
                dead_zone: args.dead_zone,
                max_error: args.max_error,
            };
            report_quantization(&pipeline::quantize_model(&request)?)
        }
        Command::Encode(args) => {
            let ModelDataArgs { model, data } = args.input;
            let request = EncodeRequest {
                model,
                data: data.data,
                columns: data.columns,
                out: args.out,
                stream: args.stream.request(),
            };
            let e = pipeline::encode_recording(&request)?;
            let dropped = match e.dropped_samples {
                0 => String::new(),
                n => format!(
                    "; {n} trailing sample(s) not sent (a model without code tables has no last frame: they fill no frame)"
                ),
            };
            eprintln!(
                "wrote {}: {} windows in {} frames, {} bytes ({:.3} bits/sample, headers included); {} window(s) \
                 with saturated input{dropped}",
                request.out.display(),
                e.windows,
                e.frames,
                e.bytes.len(),
                8.0 * e.bytes.len() as f64 / e.samples.max(1) as f64,
                e.saturated_windows,
            );
        }
        Command::Bench(BenchCommand::Rd(args)) => {
            let request = RdRequest {
                data: args.data,
                column: args.column,
                models: args.models,
                window: args.window,
                out: args.out,
                windows_per_frame: args.windows_per_frame,
                counts_per_unit: args.counts_per_unit,
            };
            let report = pipeline::bench_rd(&request)?;
            print!("{}", report.table());
            eprintln!("wrote {} and {}", request.out.join("rd.json").display(), request.out.join("rd.png").display());
        }
        Command::Gateway(args) => {
            let request = args.request()?;
            eprintln!("forwarding to {} on {}", request.broker, request.topic.replace("{device}", &request.device));
            let report = pipeline::run_gateway(&request)?;
            eprintln!("{}", report.summary());
        }
        Command::Decode(args) => match args.request()? {
            DecodeJob::Mqtt(request) => {
                let outcome = pipeline::decode_mqtt(&request)?;
                for t in &outcome.topics {
                    eprintln!("{}:", t.topic);
                    eprint!("{}", t.report.summary());
                    eprintln!("wrote {}", t.out.display());
                }
                if outcome.topics.is_empty() {
                    eprintln!("no message arrived on {} at {}", request.topic, request.broker);
                }
                if outcome.dropped_messages > 0 {
                    eprintln!(
                        "{} message(s) on topics beyond the first {} not decoded",
                        outcome.dropped_messages,
                        pipeline::MAX_TOPICS
                    );
                }
                if outcome.disconnections > 0 {
                    eprintln!(
                        "the broker was lost {} time(s): what it dropped meanwhile is reported as gaps",
                        outcome.disconnections
                    );
                }
            }
            DecodeJob::Stream(request) => {
                let outputs = pipeline::decode_stream(&request)?;
                let mut interrupted = false;
                for o in &outputs {
                    if outputs.len() > 1 {
                        eprintln!("stream {}:", o.stream_id.map_or("-".to_string(), |id| id.to_string()));
                    }
                    match &o.report {
                        Ok(report) => {
                            eprint!("{}", report.summary());
                            eprintln!("wrote {}", o.out.display());
                            interrupted |= report.interrupted;
                        }
                        Err(e) => eprintln!("not decoded: {e}"),
                    }
                }
                if interrupted {
                    return Ok(ExitCode::from(130));
                }
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// What a failed command prints: the error and its causes, each once. Many errors already end
/// with the text of their cause (`"{path}: {source}"`); the cause is then not repeated.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading model.json: {source}")]
    struct SaysItsCause {
        source: std::io::Error,
    }

    #[test]
    fn an_error_that_quotes_its_cause_prints_it_once() {
        let quoting = anyhow::Error::new(SaysItsCause { source: std::io::Error::other("disk on fire") });
        assert_eq!(error_message(&quoting), "reading model.json: disk on fire");
        // A context that does not say its cause keeps it.
        let context = anyhow::Error::new(std::io::Error::other("disk on fire")).context("cannot write the blob");
        assert_eq!(error_message(&context), "cannot write the blob: disk on fire");
        assert_eq!(format!("{quoting:#}"), "reading model.json: disk on fire: disk on fire");
    }
}
