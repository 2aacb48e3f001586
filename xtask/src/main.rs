//! `cargo xtask`: firmware tasks. See `cargo xtask --help` and the README's "Firmware" section.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use funnel_artifacts::card::FirmwareBenchmark;
use funnel_artifacts::ModelDir;
use xtask::{Board, BuildOptions, QemuOptions};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Funnel firmware tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a board image with a model (`target/firmware/<target>/firmware/<board>`).
    Build {
        /// qemu (mps2-an386, Cortex-M4F), qemu-m0 (micro:bit, Cortex-M0) or nucleo-f411re.
        #[arg(long, default_value = "qemu")]
        board: String,
        #[arg(long, default_value = "models/ecg")]
        model: PathBuf,
        /// Build the kernels without the Cortex-M4 DSP instructions.
        #[arg(long)]
        portable_kernels: bool,
    },
    /// The device path in the simulator: build the firmware with MODEL, run it under QEMU on a
    /// CSV column (converted to device counts as `funnel encode` does), write the frames it sent.
    Qemu {
        #[arg(long, default_value = "models/ecg")]
        model: PathBuf,
        /// Recording (CSV with a header row).
        #[arg(long, required_unless_present = "samples")]
        data: Option<PathBuf>,
        /// Column(s) of the recording, in the model's channel order (default: the model card's).
        #[arg(long = "column")]
        columns: Vec<String>,
        /// Raw i16 little-endian device counts instead of --data.
        #[arg(long, conflicts_with = "data")]
        samples: Option<PathBuf>,
        /// Only the first N time steps.
        #[arg(long)]
        limit: Option<usize>,
        /// Where to write the frame byte stream (what `funnel decode --input` reads).
        #[arg(long)]
        out: PathBuf,
        /// qemu (Cortex-M4F, frames on the UART) or qemu-m0 (Cortex-M0, frames over semihosting).
        #[arg(long, default_value = "qemu")]
        board: String,
        #[arg(long)]
        portable_kernels: bool,
    },
    /// The whole test suite: `cargo fmt --check`, `cargo clippy -D warnings`, `cargo doc` with
    /// warnings denied, the decode-only build (`funnel` without default features), `cargo test`
    /// (host, shared, firmware under QEMU, end to end) with the ONNX Runtime backend compiled in
    /// (`funnel/ort`, library found through `ORT_DYLIB_PATH` or the Python `onnxruntime`
    /// package), the Python package's tests (pytest, in `target/python-env`), the firmware's app
    /// logic on the host, and each fuzz target for 45 seconds.
    Test,
    /// The Python package alone: the test build (which links its extension module), then its
    /// tests with pytest (in `target/python-env`).
    Python,
    /// Coverage-guided fuzzing (`cargo fuzz`, installed from crates.io when missing) of the wire
    /// receiver (`frame_decoder`) and the host decode loop (`host_decode`), each for `seconds`.
    Fuzz {
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
    /// Flash, RAM, peak stack and guest instructions per window of the firmware images
    /// (Cortex-M4F with DSP and portable kernels, Cortex-M0), as a Markdown table.
    Bench {
        #[arg(long, default_value = "models/ecg")]
        model: PathBuf,
        #[arg(long, default_value = "data/mitbih208_ecg.csv")]
        data: PathBuf,
        #[arg(long = "column")]
        columns: Vec<String>,
        #[arg(long, conflicts_with = "data")]
        samples: Option<PathBuf>,
        /// Windows to run (default 64).
        #[arg(long, default_value_t = 64)]
        windows: usize,
        /// Skip the Nucleo-F411RE build (its HAL takes a while to compile).
        #[arg(long)]
        no_nucleo: bool,
        /// Also write the rows into the model card (`model.json` `firmware`).
        #[arg(long)]
        record: bool,
        /// The signal's sample rate: adds the encoding instructions per second of signal.
        #[arg(long)]
        sample_rate_hz: Option<f64>,
        /// Also list the N functions of the first image (Cortex-M4F, DSP) that run the most
        /// instructions over the whole run (start-up and sampling included).
        #[arg(long, value_name = "N")]
        profile: Option<usize>,
    },
}

/// `libonnxruntime.so.1.*`: `ORT_DYLIB_PATH`, else the one inside the Python package.
fn onnxruntime_library() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(path));
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", "import onnxruntime, os, glob; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.1*')))[-1])"])
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    if !out.status.success() {
        bail!(
            "ONNX Runtime not found: set ORT_DYLIB_PATH or `pip install onnxruntime` ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn cargo(args: &[&str], env: &[(&str, &Path)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// The build of the tests, every target with the tests' features: it links the Python
/// package's extension module too (a cdylib `cargo test` leaves out), so nothing is built twice.
/// Returns the environment the tests run with.
fn test_build(ort: &Path) -> Result<[(&'static str, &Path); 2]> {
    let env = [("ORT_DYLIB_PATH", ort), ("PYO3_BUILD_EXTENSION_MODULE", Path::new("1"))];
    cargo(&["build", "--all-targets", "--features", "funnel/ort"], &env)?;
    Ok(env)
}

/// The Python package (`python/`): the extension module of the test build
/// (`lib_funnel.so`, Python's stable ABI) installed with the package's modules into a virtual
/// environment of its own (`target/python-env`, with numpy, numcodecs and pytest from PyPI),
/// then its tests, with pytest, against the `funnel` binary of the same build.
fn python_tests() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let venv = target.join("python-env");
    let python = venv.join("bin").join("python");
    let run = |cmd: &mut std::process::Command| -> Result<String> {
        let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
        if !out.status.success() {
            bail!("{cmd:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if !python.exists() {
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(std::process::Command::new(system).args(["-m", "venv"]).arg(&venv))?;
    }
    // The `test` extra of python/pyproject.toml, named here because installing the extra would
    // build the package a second time (maturin): the codec's numcodecs, pytest, and the Spark
    // job's (`funnel.spark`) PySpark, which runs on the machine's Java, with the pyarrow and
    // pandas its Arrow tasks need (pandas below 3, which PySpark 4.3 does not support yet).
    run(std::process::Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "-q",
        "numpy",
        "numcodecs",
        "pytest",
        "pyspark==4.3.0",
        "pyarrow",
        "pandas>=2.2,<3",
    ]))?;
    let site =
        run(std::process::Command::new(&python)
            .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]))?;
    let package = Path::new(&site).join("funnel");
    if package.exists() {
        std::fs::remove_dir_all(&package)?;
    }
    std::fs::create_dir_all(&package)?;
    for entry in std::fs::read_dir(root.join("python/python/funnel"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "py") {
            std::fs::copy(&path, package.join(path.file_name().expect("a file")))?;
        }
    }
    let module = target.join("debug").join("lib_funnel.so");
    std::fs::copy(&module, package.join("_funnel.abi3.so"))
        .with_context(|| format!("the extension module {} (built by `cargo build --all-targets`)", module.display()))?;
    let status = std::process::Command::new(&python)
        .args(["-m", "pytest", "-q"])
        .arg(root.join("python/tests"))
        .env("FUNNEL_BIN", target.join("debug").join("funnel"))
        .status()
        .context("cannot run pytest")?;
    ensure!(status.success(), "the Python package's tests failed");
    Ok(())
}

/// Runs every target of `fuzz/` for `seconds` each. No sanitizer: the stable toolchain builds
/// it, and Rust's own checks (bounds, and overflow: fuzz builds keep debug assertions) catch
/// what the targets do not assert.
fn fuzz(seconds: u64) -> Result<()> {
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed =
        std::process::Command::new(&cargo_bin).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        cargo(&["install", "cargo-fuzz", "--locked"], &[])?;
    }
    let time = format!("-max_total_time={seconds}");
    for target in ["frame_decoder", "host_decode"] {
        cargo(&["fuzz", "run", target, "--sanitizer", "none", "--", &time], &[])?;
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Test => {
            // Style, lints and docs first: they fail in seconds where the tests take minutes.
            cargo(&["fmt", "--all", "--", "--check"], &[])?;
            cargo(&["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"], &[])?;
            // One pass over the workspace with the ONNX Runtime backend (a second pass for it
            // alone re-checked most of the dependencies: 3 minutes of a cold run); the code
            // without it is checked by the decode-only pass below.
            cargo(
                &["clippy", "--workspace", "--all-targets", "--features", "funnel/ort", "--", "-D", "warnings"],
                &[],
            )?;
            cargo(&["doc", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", Path::new("-D warnings"))])?;
            // What only decodes builds without candle, plotters and clap.
            cargo(&["clippy", "-p", "funnel", "--no-default-features", "--all-targets", "--", "-D", "warnings"], &[])?;
            // Every test once, with the ONNX Runtime backend compiled in (its tests need it; the
            // rest runs as without it, and clippy above checks the build without it).
            let ort = onnxruntime_library()?;
            eprintln!("ONNX Runtime backend: {}", ort.display());
            let env = test_build(&ort)?;
            cargo(&["test", "--features", "funnel/ort"], &env)?;
            python_tests()?;
            // The firmware's app logic, on the host (the crate is not a default member).
            cargo(&["test", "-p", "funnel-firmware", "--lib"], &[])?;
            fuzz(45)?;
        }
        Cmd::Python => {
            test_build(&onnxruntime_library()?)?;
            python_tests()?;
        }
        Cmd::Fuzz { seconds } => fuzz(seconds)?,
        Cmd::Build { board, model, portable_kernels } => {
            let model = xtask::model_dir(&model)?;
            let elf = xtask::build_firmware(&BuildOptions { board: Board::parse(&board)?, model, portable_kernels })?;
            let s = xtask::elf_sizes(&elf)?;
            println!("{}: flash {} B, static RAM {} B", elf.display(), s.flash(), s.static_ram());
        }
        Cmd::Qemu { model, data, columns, samples, limit, out, board, portable_kernels } => {
            let model = xtask::model_dir(&model)?;
            let board = Board::parse(&board)?;
            let mut counts = load_counts(&model, data.as_deref(), &columns, samples.as_deref())?;
            let channels = channels_of(&model)?;
            if let Some(n) = limit {
                counts.truncate(n * channels);
            }
            let run = xtask::simulate(board, &model, &counts, portable_kernels, &QemuOptions::default())?;
            std::fs::write(&out, &run.frames).with_context(|| format!("cannot write {}", out.display()))?;
            for line in run.console.lines().filter(|l| l.starts_with("funnel-firmware:")) {
                eprintln!("{line}");
            }
            eprintln!(
                "wrote {} bytes of frames to {} ({} time steps in, QEMU {:.2} s)",
                run.frames.len(),
                out.display(),
                counts.len() / channels,
                run.wall.as_secs_f64()
            );
        }
        Cmd::Bench { model, data, columns, samples, windows, no_nucleo, record, sample_rate_hz, profile } => {
            if let Some(hz) = sample_rate_hz {
                ensure!(hz.is_finite() && hz > 0.0, "--sample-rate-hz must be a positive number (got {hz})");
            }
            let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
            let command = format!("cargo xtask {command}");
            let mut rows = Vec::new();
            let model = xtask::model_dir(&model)?;
            let blob = ModelDir::new(&model).load_blob()?;
            let enc = blob.encoder();
            let per_window = enc.window() * enc.channels();
            let mut counts =
                load_counts(&model, if samples.is_some() { None } else { Some(&data) }, &columns, samples.as_deref())?;
            counts.truncate((windows + 1) * per_window);
            let macs = enc.spec().macs();
            println!(
                "model {} ({}): window {}x{}, {} codes, {} MACs/window, blob {} B, {} windows\n",
                enc.model_id(),
                model.display(),
                enc.window(),
                enc.channels(),
                enc.code_len(),
                macs,
                blob.len(),
                counts.len() / per_window
            );
            println!("| image | core | kernels | flash B (text+rodata+data) | static RAM B (data+bss) | peak stack B | encode insns/window | insns/MAC | sample+frame+send insns/window | encode insns/s of signal |");
            println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
            // A window lasts `window / hz` seconds.
            let per_second = |per_window: f64| sample_rate_hz.map(|hz| per_window * hz / enc.window() as f64);
            let mut opts = QemuOptions {
                count_instructions: true,
                profile: profile.is_some(),
                timeout: Some(Duration::from_secs(300)),
            };
            let mut reference: Option<Vec<u8>> = None;
            let mut functions = Vec::new();
            for (board, portable, core, kernels) in [
                (Board::Qemu, false, "Cortex-M4F (mps2-an386)", "DSP (SXTB16/SMLAD)"),
                (Board::Qemu, true, "Cortex-M4F (mps2-an386)", "portable"),
                (Board::QemuM0, false, "Cortex-M0 (micro:bit)", "portable"),
            ] {
                let elf =
                    xtask::build_firmware(&BuildOptions { board, model: model.clone(), portable_kernels: portable })?;
                let s = xtask::elf_sizes(&elf)?;
                let run = xtask::run_qemu(board, &elf, &counts, &opts)?;
                if opts.profile {
                    functions = xtask::function_profile(&elf, &run.profile)?;
                    opts.profile = false;
                }
                match &reference {
                    None => reference = Some(run.frames.clone()),
                    Some(r) if *r != run.frames => {
                        bail!("{} ({kernels}) sent different frames than the first image", board.name())
                    }
                    Some(_) => {}
                }
                let w = run.per_window();
                if w.is_empty() {
                    bail!("no instruction counts (need at least 2 windows of data)");
                }
                let enc_mean = w.iter().map(|x| x.1).sum::<u64>() as f64 / w.len() as f64;
                let (enc_min, enc_max) = (w.iter().map(|x| x.1).min().unwrap(), w.iter().map(|x| x.1).max().unwrap());
                let other = w.iter().map(|x| x.0 + x.2).sum::<u64>() as f64 / w.len() as f64;
                let spread = if enc_min == enc_max { String::new() } else { format!(" ({enc_min}..{enc_max})") };
                rows.push(FirmwareBenchmark {
                    image: board.name().to_string(),
                    core: core.to_string(),
                    kernels: kernels.to_string(),
                    flash_bytes: s.flash(),
                    static_ram_bytes: s.static_ram(),
                    peak_stack_bytes: run.peak_stack.map(|v| v as u64),
                    encode_instructions_per_window: Some(enc_mean.round()),
                    sample_rate_hz,
                    encode_instructions_per_second: per_second(enc_mean).map(f64::round),
                    command: command.clone(),
                });
                println!(
                    "| {} | {core} | {kernels} | {} | {} | {} | {:.0}{spread} | {:.2} | {:.0} | {} |",
                    board.name(),
                    s.flash(),
                    s.static_ram(),
                    run.peak_stack.map_or("?".into(), |v| v.to_string()),
                    enc_mean,
                    enc_mean / macs.max(1) as f64,
                    other,
                    per_second(enc_mean).map_or("–".into(), |v| format!("{v:.0}"))
                );
            }
            if !no_nucleo {
                let elf = xtask::build_firmware(&BuildOptions {
                    board: Board::NucleoF411re,
                    model: model.clone(),
                    portable_kernels: false,
                })?;
                let s = xtask::elf_sizes(&elf)?;
                println!(
                    "| nucleo-f411re | Cortex-M4F (STM32F411) | DSP (SXTB16/SMLAD) | {} | {} | (hardware) | (as qemu) | | |",
                    s.flash(),
                    s.static_ram()
                );
                rows.push(FirmwareBenchmark {
                    image: "nucleo-f411re".to_string(),
                    core: "Cortex-M4F (STM32F411)".to_string(),
                    kernels: "DSP (SXTB16/SMLAD)".to_string(),
                    flash_bytes: s.flash(),
                    static_ram_bytes: s.static_ram(),
                    peak_stack_bytes: None,
                    encode_instructions_per_window: None,
                    sample_rate_hz,
                    encode_instructions_per_second: None,
                    command: command.clone(),
                });
            }
            if record {
                let dir = ModelDir::new(&model);
                let mut card = dir.load_card()?;
                card.firmware = rows;
                dir.save_card(&mut card)?;
                eprintln!("recorded in {}", dir.card_path().display());
            }
            println!("\nAll QEMU images sent identical frames. Instructions counted by xtask/plugins/insncount.c (QEMU TCG plugin) between `bench_mark` calls; sampling includes the semihosting file reads.");
            if let Some(n) = profile {
                let total: u64 = functions.iter().map(|f| f.1).sum();
                println!("\nWhere the first image's instructions went (the whole run: start-up, sampling and every window; functions as linked, callees inlined into them):\n");
                println!("| function | instructions | share |\n|---|---:|---:|");
                for (name, count) in functions.iter().take(n) {
                    println!("| `{name}` | {count} | {:.1} % |", 100.0 * *count as f64 / total.max(1) as f64);
                }
            }
        }
    }
    Ok(())
}

fn channels_of(model: &Path) -> Result<usize> {
    Ok(ModelDir::new(model).load_blob()?.channels())
}

/// Device counts from `--samples` (raw i16) or `--data` + columns (default: the card's).
fn load_counts(model: &Path, data: Option<&Path>, columns: &[String], samples: Option<&Path>) -> Result<Vec<i16>> {
    if let Some(path) = samples {
        return xtask::read_samples(path);
    }
    let data = data.context("give --data FILE.csv or --samples FILE")?;
    let columns = if columns.is_empty() { ModelDir::new(model).load_card()?.columns } else { columns.to_vec() };
    xtask::recording_counts(model, data, &columns)
}
