//! `funnel pipeline`: the whole job in one command — train, quantize, simulate the device over
//! the recording, decode what it sent, and report.

use std::path::PathBuf;

use anyhow::Result;

use crate::commands::{train_command, EvalReport, TrainArgs};
use crate::decode::{decode_command, Backend, DecodeArgs, DecodeReport};
use crate::encode::{encode_command, EncodeArgs, EncodedStream};
use crate::quantize::{quantize_command, QuantizeArgs, QuantizeOutcome, SECTION_INT8};

/// File names the pipeline writes next to the model files.
pub const CODES_FILE: &str = "codes.bin";
pub const RECONSTRUCTION_FILE: &str = "reconstruction.csv";
pub const PLOT_FILE: &str = "reconstruction.png";

pub struct PipelineOutcome {
    pub eval: EvalReport,
    pub quantization: QuantizeOutcome,
    pub encoded: EncodedStream,
    pub decoded: DecodeReport,
    pub codes: PathBuf,
    pub reconstruction: PathBuf,
}

/// What `funnel train` does: trains into `args.out`, then quantizes; the held-out report has
/// the float, PCA and int8 device sections. Returns the model directory too.
pub fn train_and_quantize(args: &TrainArgs) -> Result<(PathBuf, EvalReport, QuantizeOutcome)> {
    let trained = train_command(args)?;
    let dir = trained.out_dir;
    let quantization = quantize_command(&QuantizeArgs { model: dir.clone(), calibration: None, columns: vec![] })?;
    let mut eval = trained.eval;
    eval.sections.insert(SECTION_INT8.to_string(), quantization.int8.clone());
    Ok((dir, eval, quantization))
}

/// [`train_and_quantize`], then encodes the whole recording as the device would, decodes those
/// bytes into a CSV (and plot), and returns every step's report.
pub fn pipeline_command(args: &TrainArgs) -> Result<PipelineOutcome> {
    let (dir, eval, quantization) = train_and_quantize(args)?;
    let codes = dir.join(CODES_FILE);
    let encoded = encode_command(&EncodeArgs {
        model: dir.clone(),
        data: args.data.clone(),
        columns: args.columns.clone(),
        out: codes.clone(),
    })?;
    let reconstruction = dir.join(RECONSTRUCTION_FILE);
    let decoded = decode_command(&DecodeArgs {
        model: dir.clone(),
        input: Some(codes.display().to_string()),
        serial: None,
        baud: 115_200,
        seconds: None,
        out: reconstruction.clone(),
        backend: Backend::Tract,
        plot: Some(dir.join(PLOT_FILE)),
    })?;
    Ok(PipelineOutcome { eval, quantization, encoded, decoded, codes, reconstruction })
}
