use std::process::ExitCode;

use clap::{Parser, Subcommand};
use funnel::commands::{EvalArgs, PlotArgs, TrainArgs};
use funnel::decode::DecodeArgs;
use funnel::encode::EncodeArgs;
use funnel::quantize::{QuantizeArgs, QuantizeOutcome};

/// Funnel: learned compression for sensor streams.
#[derive(Parser, Debug)]
#[command(name = "funnel", version, about)]
struct Cli {
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
    /// Rebuild the signal from received frames (file, stdin or a serial port) into a CSV.
    Decode(DecodeArgs),
}

fn report_quantization(q: &QuantizeOutcome) {
    eprintln!(
        "encoder.fq8: model {}, {} bytes, {} MACs/window, {} bytes scratch RAM; held-out PRDN float {:.3} % → int8 {:.3} % ({:+.1} %)",
        q.card.model_id,
        q.card.blob_bytes,
        q.card.macs_per_window,
        q.card.scratch_bytes,
        q.card.float_prdn,
        q.card.int8_prdn,
        100.0 * q.card.relative_prdn_loss
    );
    if let Some(w) = &q.warning {
        eprintln!("\n*** WARNING: {w}\n");
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => {
            let (dir, eval, q) = funnel::pipeline::train_and_quantize(&args)?;
            report_quantization(&q);
            eprintln!("wrote {}", dir.display());
            print!("{}", eval.table());
        }
        Command::Eval(args) => {
            let report = funnel::eval_command(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::Plot(args) => {
            funnel::plot_command(&args)?;
            eprintln!("wrote {}", args.out.display());
        }
        Command::Pipeline(args) => {
            let p = funnel::pipeline::pipeline_command(&args)?;
            report_quantization(&p.quantization);
            eprintln!(
                "device simulation: {} frames, {} bytes → {}",
                p.encoded.frames,
                p.encoded.bytes.len(),
                p.codes.display()
            );
            eprint!("decoded: {}", p.decoded.summary());
            eprintln!("reconstruction → {}", p.reconstruction.display());
            print!("{}", p.eval.table());
        }
        Command::Quantize(args) => report_quantization(&funnel::quantize::quantize_command(&args)?),
        Command::Encode(args) => {
            let e = funnel::encode::encode_command(&args)?;
            eprintln!(
                "wrote {}: {} frames, {} bytes; {} window(s) with saturated input; {} trailing sample(s) short of a window not sent",
                args.out.display(),
                e.frames,
                e.bytes.len(),
                e.saturated_windows,
                e.dropped_samples
            );
        }
        Command::Decode(args) => {
            let report = funnel::decode::decode_command(&args)?;
            eprint!("{}", report.summary());
            eprintln!("wrote {}", args.out.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
