//! Developer tasks around the firmware, as a library so the end-to-end tests run exactly the
//! code path `cargo xtask` runs:
//!
//! - [`build_firmware`]: `cargo build --profile firmware` of one board binary with a model
//!   (`FUNNEL_MODEL`), into `target/firmware` so it never contends with host builds;
//! - [`run_qemu`]: runs a QEMU board image on a slice of device counts and collects its frames
//!   (UART0 on mps2-an386, a semihosting file on the micro:bit), its console and exit status,
//!   optionally counting guest instructions with the `insncount` TCG plugin;
//! - [`elf_sizes`]: flash and static RAM of an image (`llvm-size -A`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use funnel_artifacts::{ModelDir, Recording};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where firmware builds go (kept apart from the host's `target/debug`).
pub fn firmware_target_dir(portable_kernels: bool) -> PathBuf {
    root().join(if portable_kernels { "target/firmware-portable" } else { "target/firmware" })
}

/// The firmware's board binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// mps2-an386, Cortex-M4F (thumbv7em-none-eabihf), frames on UART0. Runs in QEMU.
    Qemu,
    /// BBC micro:bit, nRF51822 Cortex-M0 (thumbv6m-none-eabi), frames to a semihosting file.
    /// Runs in QEMU.
    QemuM0,
    /// ST Nucleo-F411RE (thumbv7em-none-eabihf): real hardware, build only here.
    NucleoF411re,
}

impl Board {
    pub const ALL: [Board; 3] = [Board::Qemu, Board::QemuM0, Board::NucleoF411re];

    pub fn name(self) -> &'static str {
        match self {
            Board::Qemu => "qemu",
            Board::QemuM0 => "qemu-m0",
            Board::NucleoF411re => "nucleo-f411re",
        }
    }

    pub fn parse(name: &str) -> Result<Board> {
        Board::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .with_context(|| format!("unknown board {name:?} (one of: {})", Board::ALL.map(Board::name).join(", ")))
    }

    pub fn target(self) -> &'static str {
        match self {
            Board::Qemu | Board::NucleoF411re => "thumbv7em-none-eabihf",
            Board::QemuM0 => "thumbv6m-none-eabi",
        }
    }

    pub fn feature(self) -> &'static str {
        match self {
            Board::Qemu => "board-qemu",
            Board::QemuM0 => "board-microbit",
            Board::NucleoF411re => "board-nucleo-f411re",
        }
    }

    /// QEMU machine arguments, `None` for hardware boards.
    fn qemu_machine(self) -> Option<&'static [&'static str]> {
        match self {
            Board::Qemu => Some(&["-cpu", "cortex-m4", "-machine", "mps2-an386"]),
            Board::QemuM0 => Some(&["-machine", "microbit"]),
            Board::NucleoF411re => None,
        }
    }
}

/// Resolves a model directory given on the command line (relative to the current directory,
/// falling back to the repository root) to an absolute path holding `encoder.fq8`.
pub fn model_dir(dir: &Path) -> Result<PathBuf> {
    let candidates = [std::env::current_dir()?.join(dir), root().join(dir)];
    for c in &candidates {
        if ModelDir::new(c).has_blob() {
            return Ok(c.canonicalize()?);
        }
    }
    bail!("{} has no encoder.fq8 (quantize the model first, or pass --model DIR)", dir.display())
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub board: Board,
    /// Absolute model directory (`FUNNEL_MODEL`).
    pub model: PathBuf,
    /// Build the `shared` kernels without the Cortex-M4 DSP instructions
    /// (`FUNNEL_PORTABLE_KERNELS=1`), into a separate target directory.
    pub portable_kernels: bool,
}

/// Builds one board binary with `cargo build --profile firmware` and returns the ELF's path.
pub fn build_firmware(opts: &BuildOptions) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = firmware_target_dir(opts.portable_kernels);
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root())
        .args(["build", "--profile", "firmware", "-p", "funnel-firmware", "--bin", opts.board.name()])
        .args(["--features", opts.board.feature(), "--target", opts.board.target()])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("FUNNEL_MODEL", &opts.model)
        // Settings of an outer cargo (e.g. `cargo test`) must not leak into this build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if opts.portable_kernels {
        cmd.env("FUNNEL_PORTABLE_KERNELS", "1");
    } else {
        cmd.env_remove("FUNNEL_PORTABLE_KERNELS");
    }
    let status = cmd.status().context("cannot run cargo to build the firmware")?;
    ensure!(status.success(), "building the {} firmware failed ({status})", opts.board.name());
    let elf = target_dir.join(opts.board.target()).join("firmware").join(opts.board.name());
    ensure!(elf.is_file(), "cargo succeeded but {} is missing", elf.display());
    Ok(elf)
}

/// Fails with instructions when `qemu-system-arm` is not installed.
pub fn require_qemu() -> Result<()> {
    match Command::new("qemu-system-arm").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "qemu-system-arm is not installed or does not run: the firmware tests and `cargo xtask qemu` \
             need it (Debian/Ubuntu: `apt-get install qemu-system-arm`, version 7.2 or later)"
        ),
    }
}

/// The result of one QEMU run.
#[derive(Clone, Debug, Default)]
pub struct QemuRun {
    /// Bytes the firmware sent (UART0 or `frames.bin`).
    pub frames: Vec<u8>,
    /// Semihosting console and plugin output.
    pub console: String,
    /// Peak stack from the firmware's stack painting.
    pub peak_stack: Option<usize>,
    /// Instruction-count deltas at each `bench_mark` (when the plugin was loaded).
    pub mark_deltas: Vec<u64>,
    /// Instructions executed in total (when the plugin was loaded).
    pub total_insns: Option<u64>,
    /// Instructions executed at each address, `(address, count)` (with [`QemuOptions::profile`]).
    pub profile: Vec<(u64, u64)>,
    pub wall: Duration,
}

impl QemuRun {
    /// Per-window instruction counts `(sampling, encoding, framing+sending)`, from the three
    /// marks the firmware sets per window; the first window (boot included) is left out.
    pub fn per_window(&self) -> Vec<(u64, u64, u64)> {
        self.mark_deltas.chunks_exact(3).skip(1).map(|c| (c[0], c[1], c[2])).collect()
    }
}

/// Options of [`run_qemu`].
#[derive(Clone, Debug, Default)]
pub struct QemuOptions {
    /// Count instructions with the insncount plugin, marking at `bench_mark`.
    pub count_instructions: bool,
    /// With `count_instructions`, also count the instructions at each address.
    pub profile: bool,
    pub timeout: Option<Duration>,
}

/// Runs a QEMU board image on `samples` (`[T][C]` device counts) and collects what it sent.
/// Fails when QEMU is missing, times out, or the firmware exits non-zero (with its console).
pub fn run_qemu(board: Board, elf: &Path, samples: &[i16], opts: &QemuOptions) -> Result<QemuRun> {
    require_qemu()?;
    let machine = board.qemu_machine().with_context(|| format!("{} is hardware, not a QEMU board", board.name()))?;
    let work = scratch_dir("qemu")?;
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(work.join("samples.i16"), bytes)?;
    let frames_path = work.join("frames.bin");
    let mut cmd = Command::new("qemu-system-arm");
    cmd.current_dir(&work).args(machine).args([
        "-nographic",
        "-monitor",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
    ]);
    if board == Board::Qemu {
        cmd.arg("-serial").arg("file:frames.bin");
    } else {
        cmd.args(["-serial", "null"]);
    }
    if opts.count_instructions {
        let plugin = insncount_plugin()?;
        let mark = symbol_address(elf, "bench_mark")?;
        let profile =
            if opts.profile { format!(",profile={}", work.join("profile.txt").display()) } else { String::new() };
        cmd.arg("-plugin").arg(format!("{},mark={mark:#x}{profile}", plugin.display())).args(["-d", "plugin"]);
    }
    cmd.arg("-kernel").arg(elf);
    let console_path = work.join("console.txt");
    let console = std::fs::File::create(&console_path)?;
    cmd.stdin(Stdio::null()).stdout(console.try_clone()?).stderr(console);
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start qemu-system-arm")?;
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(600));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "QEMU did not finish within {timeout:?}; console:\n{}",
                std::fs::read_to_string(&console_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let console = std::fs::read_to_string(&console_path).unwrap_or_default();
    ensure!(status.success(), "the firmware failed under QEMU ({status}); console:\n{console}");
    let frames =
        std::fs::read(&frames_path).with_context(|| format!("the firmware wrote no {}", frames_path.display()))?;
    let mut run = QemuRun { frames, wall, ..Default::default() };
    for line in console.lines() {
        if let Some(rest) = line.strip_prefix("insncount: mark ") {
            if let Some(d) = rest.split("delta=").nth(1) {
                run.mark_deltas.push(d.trim().parse()?);
            }
        } else if let Some(t) = line.strip_prefix("insncount: total insns ") {
            run.total_insns = Some(t.trim().parse()?);
        } else if line.starts_with("funnel-firmware: done") {
            run.peak_stack = field(line, "peak_stack=");
        }
    }
    if opts.count_instructions && opts.profile {
        let profile =
            std::fs::read_to_string(work.join("profile.txt")).context("the insncount plugin wrote no profile")?;
        for line in profile.lines() {
            let parsed = line
                .split_once(' ')
                .and_then(|(addr, count)| Some((u64::from_str_radix(addr, 16).ok()?, count.parse().ok()?)));
            // "outside COUNT": addresses beyond the profiled span, left out.
            run.profile.extend(parsed);
        }
    }
    run.console = console;
    let _ = std::fs::remove_dir_all(&work);
    Ok(run)
}

/// A legacy-mangled Rust name as `llvm-nm --demangle` leaves it, without its hash and escapes
/// (`StreamEncoder$LT$_$C$_$GT$::send::h5b61…` → `StreamEncoder<_,_>::send`).
fn readable(name: &str) -> String {
    let name = match name.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => path,
        _ => name,
    };
    [("$LT$", "<"), ("$GT$", ">"), ("$C$", ","), ("$u20$", " "), ("$RF$", "&"), ("..", "::")]
        .iter()
        .fold(name.to_string(), |n, (escape, c)| n.replace(escape, c))
}

/// `profile`'s counts summed per function of `elf` (its text symbols, `llvm-nm -S`), most first;
/// addresses in no symbol are summed as "(no symbol)".
pub fn function_profile(elf: &Path, profile: &[(u64, u64)]) -> Result<Vec<(String, u64)>> {
    let symbols = llvm_nm(elf, &["-S", "--defined-only", "--demangle"])?;
    // `address size type name`, the name possibly with spaces; Thumb addresses without bit 0.
    let mut functions: Vec<(u64, u64, String)> = symbols
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(4, ' ');
            let (addr, size, kind, name) = (it.next()?, it.next()?, it.next()?, it.next()?);
            let text = matches!(kind, "t" | "T" | "w" | "W");
            text.then(|| {
                Some((u64::from_str_radix(addr, 16).ok()? & !1, u64::from_str_radix(size, 16).ok()?, readable(name)))
            })?
        })
        .filter(|f| f.1 > 0)
        .collect();
    functions.sort();
    let mut sums: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for &(addr, count) in profile {
        let at = functions.partition_point(|f| f.0 <= addr);
        let name = match at.checked_sub(1).map(|i| &functions[i]) {
            Some((start, size, name)) if addr < start + size => name.as_str(),
            _ => "(no symbol)",
        };
        *sums.entry(name).or_default() += count;
    }
    let mut sums: Vec<(String, u64)> = sums.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
    sums.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(sums)
}

fn field(line: &str, key: &str) -> Option<usize> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok())
}

/// A fresh directory under `target/firmware/runs`.
fn scratch_dir(kind: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = firmware_target_dir(false).join("runs").join(format!(
        "{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Builds `xtask/plugins/insncount.c` (QEMU TCG plugin, API v1) with the system C compiler.
pub fn insncount_plugin() -> Result<PathBuf> {
    let src = root().join("xtask/plugins/insncount.c");
    let out = firmware_target_dir(false).join("libinsncount.so");
    let fresh = match (std::fs::metadata(&src), std::fs::metadata(&out)) {
        (Ok(s), Ok(o)) => o.modified()? >= s.modified()?,
        _ => false,
    };
    if !fresh {
        std::fs::create_dir_all(out.parent().unwrap())?;
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = Command::new(&cc)
            .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .with_context(|| format!("cannot run the C compiler {cc:?} to build the insncount plugin"))?;
        ensure!(status.success(), "building the insncount plugin failed");
    }
    Ok(out)
}

/// The symbol table of an ELF, `llvm-nm` with `options`.
fn llvm_nm(elf: &Path, options: &[&str]) -> Result<String> {
    let out = Command::new(llvm_tool("nm"))
        .args(options)
        .arg(elf)
        .output()
        .context("cannot run llvm-nm (Debian package `llvm`)")?;
    ensure!(out.status.success(), "llvm-nm failed on {}", elf.display());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Address of a symbol in an ELF (`llvm-nm`).
pub fn symbol_address(elf: &Path, name: &str) -> Result<u64> {
    llvm_nm(elf, &[])?
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            let (addr, _kind, sym) = (it.next()?, it.next()?, it.next()?);
            (sym == name).then(|| u64::from_str_radix(addr, 16).ok()).flatten()
        })
        .with_context(|| format!("no symbol {name} in {}", elf.display()))
}

/// `llvm-<tool>`, or the `LLVM_<TOOL>` environment variable.
fn llvm_tool(tool: &str) -> String {
    std::env::var(format!("LLVM_{}", tool.to_uppercase())).unwrap_or_else(|_| format!("llvm-{tool}"))
}

/// Section sizes of a firmware image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElfSizes {
    pub vector_table: u64,
    pub text: u64,
    pub rodata: u64,
    pub data: u64,
    pub bss: u64,
    pub uninit: u64,
}

impl ElfSizes {
    /// Flash: vector table + code + read-only data (the model blob is in `.rodata`) + the
    /// initial values of `.data`.
    pub fn flash(&self) -> u64 {
        self.vector_table + self.text + self.rodata + self.data
    }
    /// Static RAM: `.data` + `.bss` + `.uninit` (the stack comes on top).
    pub fn static_ram(&self) -> u64 {
        self.data + self.bss + self.uninit
    }
}

/// Reads the section sizes with `llvm-size -A`.
pub fn elf_sizes(elf: &Path) -> Result<ElfSizes> {
    let out = Command::new(llvm_tool("size"))
        .arg("-A")
        .arg(elf)
        .output()
        .context("cannot run llvm-size (Debian package `llvm`)")?;
    ensure!(out.status.success(), "llvm-size failed on {}", elf.display());
    let mut s = ElfSizes::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(size)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
        match name {
            ".vector_table" => s.vector_table += size,
            ".text" => s.text += size,
            ".rodata" => s.rodata += size,
            ".data" => s.data += size,
            ".bss" => s.bss += size,
            ".uninit" => s.uninit += size,
            _ => {}
        }
    }
    ensure!(s.text > 0, "no .text in {}", elf.display());
    Ok(s)
}

/// Reads raw i16 little-endian samples.
pub fn read_samples(path: &Path) -> Result<Vec<i16>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(bytes.len() % 2 == 0, "{} is not raw i16 samples (odd length)", path.display());
    Ok(bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect())
}

/// The recording as device counts, as `funnel encode` converts it (with the blob's scale, after
/// checking the blob and the columns against the card).
pub fn recording_counts(model: &Path, data: &Path, columns: &[String]) -> Result<Vec<i16>> {
    let dir = ModelDir::new(model);
    let card = dir.load_card()?;
    let blob = dir.load_blob_of(&card)?;
    card.check_columns(columns).with_context(|| format!("model {}", model.display()))?;
    Ok(Recording::from_csv(data, columns)?.device_counts(blob.counts_per_unit()))
}

/// The whole device path in the simulator: build the board image with `model`, run it on
/// `samples`, return the run (frames included).
pub fn simulate(
    board: Board,
    model: &Path,
    samples: &[i16],
    portable_kernels: bool,
    opts: &QemuOptions,
) -> Result<QemuRun> {
    let elf = build_firmware(&BuildOptions { board, model: model.to_path_buf(), portable_kernels })?;
    run_qemu(board, &elf, samples, opts)
}
