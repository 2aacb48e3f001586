//! BBC micro:bit (nRF51822, Cortex-M0, thumbv6m) under QEMU `-machine microbit`: the same
//! application for a core without DSP instructions; frames go to `frames.bin` over
//! semihosting. Run it with `cargo xtask qemu --m0`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use funnel_firmware::semihosted::{self, FileSink, FRAMES_FILE};
use semihosting::{eprintln, fs, process};

#[entry]
fn main() -> ! {
    semihosted::run(|| match fs::File::create(FRAMES_FILE) {
        Ok(f) => FileSink(f),
        Err(e) => {
            eprintln!("funnel-firmware: cannot create {}: {e}", semihosted::file_name(FRAMES_FILE));
            process::exit(semihosted::EXIT_NO_SAMPLES)
        }
    })
}
