//! The QEMU boards: samples replayed from a host file over semihosting, a status report on the
//! semihosting console, the exit status back to QEMU.
//!
//! Files are relative to QEMU's working directory: `samples.i16` (raw i16 little-endian,
//! `[T][C]` interleaved device counts, as `cargo xtask qemu` writes them) in, and for boards
//! without a modelled UART `frames.bin` out.
#![allow(unsafe_code)]

use core::ffi::CStr;

use semihosting::io::{Read, Write as _};
use semihosting::{eprintln, fs, process};

use crate::{model, stack, App, SampleSource};
use funnel_shared::encoder::QuantizedEncoder;
use funnel_shared::stream::StreamConfig;

pub const SAMPLES_FILE: &CStr = c"samples.i16";
pub const FRAMES_FILE: &CStr = c"frames.bin";

/// Exit statuses the xtask reports.
pub const EXIT_BAD_BLOB: i32 = 3;
pub const EXIT_NO_SAMPLES: i32 = 4;
pub const EXIT_RUN_FAILED: i32 = 5;

/// A file name to print: `CStr`'s `Debug` (escaping, Unicode tables) costs the Cortex-M0
/// image a kilobyte of flash; the names here are ASCII.
pub fn file_name(path: &CStr) -> &str {
    path.to_str().unwrap_or("(a non-UTF-8 name)")
}

/// i16 LE samples from a host file, read in chunks.
pub struct FileSource {
    file: fs::File,
    buf: [u8; 512],
    pos: usize,
    len: usize,
}

impl FileSource {
    pub fn open(path: &CStr) -> semihosting::io::Result<Self> {
        Ok(FileSource { file: fs::File::open(path)?, buf: [0; 512], pos: 0, len: 0 })
    }

    fn next(&mut self) -> semihosting::io::Result<Option<i16>> {
        if self.len - self.pos < 2 {
            // Keep a dangling odd byte, refill behind it.
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
            while self.len < 2 {
                let n = self.file.read(&mut self.buf[self.len..])?;
                if n == 0 {
                    return Ok(None);
                }
                self.len += n;
            }
        }
        let v = i16::from_le_bytes([self.buf[self.pos], self.buf[self.pos + 1]]);
        self.pos += 2;
        Ok(Some(v))
    }
}

impl SampleSource for FileSource {
    type Error = semihosting::io::Error;
    fn read(&mut self, sample: &mut [i16]) -> Result<bool, Self::Error> {
        for s in sample {
            match self.next()? {
                Some(v) => *s = v,
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

/// A host file as an `embedded_io::Write` sink.
pub struct FileSink(pub fs::File);

#[derive(Debug)]
pub struct FileSinkError(pub semihosting::io::Error);

impl core::fmt::Display for FileSinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "host file: {}", self.0)
    }
}

impl embedded_io::Error for FileSinkError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl embedded_io::ErrorType for FileSink {
    type Error = FileSinkError;
}

impl embedded_io::Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf).map_err(FileSinkError)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The CMSDK APB UART of Arm's MPS2 boards (UART0 of mps2-an386 at `0x4000_4000`), transmit
/// only, as an `embedded_hal_nb` serial port.
pub struct CmsdkUart {
    base: usize,
}

impl CmsdkUart {
    const DATA: usize = 0x0;
    const STATE: usize = 0x4;
    const CTRL: usize = 0x8;
    const BAUDDIV: usize = 0x10;
    const STATE_TX_FULL: u32 = 1;
    const CTRL_TX_EN: u32 = 1;

    /// # Safety
    /// `base` must be the address of a CMSDK UART that nothing else drives.
    pub unsafe fn new(base: usize) -> Self {
        let uart = CmsdkUart { base };
        uart.write_reg(Self::BAUDDIV, 16);
        uart.write_reg(Self::CTRL, Self::CTRL_TX_EN);
        uart
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: a register of the UART this value owns (see `new`).
        unsafe { ((self.base + offset) as *mut u32).write_volatile(value) }
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: as above.
        unsafe { ((self.base + offset) as *const u32).read_volatile() }
    }
}

impl embedded_hal_nb::serial::ErrorType for CmsdkUart {
    type Error = core::convert::Infallible;
}

impl embedded_hal_nb::serial::Write<u8> for CmsdkUart {
    fn write(&mut self, word: u8) -> nb::Result<(), Self::Error> {
        if self.read_reg(Self::STATE) & Self::STATE_TX_FULL != 0 {
            return Err(nb::Error::WouldBlock);
        }
        self.write_reg(Self::DATA, u32::from(word));
        Ok(())
    }
    fn flush(&mut self) -> nb::Result<(), Self::Error> {
        if self.read_reg(Self::STATE) & Self::STATE_TX_FULL != 0 {
            return Err(nb::Error::WouldBlock);
        }
        Ok(())
    }
}

/// The whole QEMU application: paint the stack, validate the model, stream `samples.i16`
/// through [`App`] into `sink`, report and exit QEMU. A bad blob halts here with the reason.
pub fn run<W: embedded_io::Write<Error: core::fmt::Display>>(sink: impl FnOnce() -> W) -> ! {
    stack::paint();
    let source = match FileSource::open(SAMPLES_FILE) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("funnel-firmware: cannot open {} over semihosting: {e}", file_name(SAMPLES_FILE));
            process::exit(EXIT_NO_SAMPLES)
        }
    };
    let encoder = match QuantizedEncoder::from_blob(model::MODEL_BLOB) {
        Ok(encoder) => encoder,
        Err(e) => {
            eprintln!("funnel-firmware: bad model blob: {e}; halting");
            process::exit(EXIT_BAD_BLOB)
        }
    };
    // Session 0 and the model's windows per frame, as `funnel encode` without flags: the QEMU
    // tests compare the two byte for byte.
    let mut started =
        App::<_, _, { model::WINDOW_SAMPLES }, { model::SCRATCH_LEN }, { model::BOUNDED }, { model::CODES }>::new(
            encoder,
            StreamConfig { windows_per_frame: model::WINDOWS_PER_FRAME, ..StreamConfig::DEFAULT },
            source,
            sink(),
        );
    // The app is used where `new` left it: moved out of the `Result`, it took its size (5.8 KB
    // with a bounded model) twice on the stack.
    let app = match &mut started {
        Ok(app) => app,
        Err(e) => {
            eprintln!("funnel-firmware: {e}; halting");
            process::exit(EXIT_BAD_BLOB)
        }
    };
    let enc = app.encoder();
    eprintln!(
        "funnel-firmware: model {} window {}x{} codes {} scratch {} B",
        enc.model_id(),
        enc.window(),
        enc.channels(),
        enc.code_len(),
        app.scratch_len() * core::mem::size_of::<i16>()
    );
    match app.run() {
        Ok(s) => {
            eprintln!(
                "funnel-firmware: done samples={} windows={} frames={} bytes={} dropped_tail={} peak_stack={} stack_capacity={}",
                s.samples,
                s.windows,
                s.frames,
                s.bytes,
                s.dropped_tail,
                stack::peak_used(),
                stack::stack_capacity()
            );
            process::exit(0)
        }
        Err(e) => {
            eprintln!("funnel-firmware: {e}");
            process::exit(EXIT_RUN_FAILED)
        }
    }
}
