//! mps2-an386 (Cortex-M4F) under QEMU: samples from `samples.i16` over semihosting, frames on
//! UART0 (`-serial file:frames.bin`). Run it with `cargo xtask qemu`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use funnel_firmware::io::NbSerial;
use funnel_firmware::semihosted::{self, CmsdkUart};

// Panics print their message on the semihosting console and exit QEMU with status 101.
use semihosting as _;

const UART0: usize = 0x4000_4000;

#[entry]
fn main() -> ! {
    // SAFETY: UART0 of the board; this is its only user.
    #[allow(unsafe_code)]
    semihosted::run(|| NbSerial(unsafe { CmsdkUart::new(UART0) }))
}
