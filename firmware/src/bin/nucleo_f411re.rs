//! ST Nucleo-F411RE: an analog sensor on A0 (PA0, ADC1 channel 0, e.g. an AD8232 ECG front
//! end) sampled at `FUNNEL_SAMPLE_RATE_HZ` (default 360 Hz) by TIM2, frames on USART2 (PA2),
//! which the on-board ST-LINK presents as a USB virtual COM port at 115200 baud.
//!
//! Flash and run: `cargo run --profile firmware -p funnel-firmware --features board-nucleo-f411re
//! --bin nucleo-f411re --target thumbv7em-none-eabihf` (probe-rs runner, `.cargo/config.toml`);
//! decode on the host with `funnel decode --model models/ecg --serial /dev/ttyACM0 --out ecg.csv`.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use funnel_firmware::{model, App, SampleSource};
use funnel_shared::stream::StreamConfig;
use panic_halt as _;
use stm32f4xx_hal::adc::config::{AdcConfig, SampleTime};
use stm32f4xx_hal::adc::Adc;
use stm32f4xx_hal::gpio::{Analog, Pin};
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::serial::Config;
use stm32f4xx_hal::timer::CounterHz;

/// Mid-scale of the 12-bit ADC: a biased single-supply front end reads 0 signal here.
const ADC_MIDSCALE: i16 = 2048;

/// One ADC channel, paced by a timer: the sample source of this board.
struct AdcSource {
    adc: Adc<pac::ADC1>,
    pin: Pin<'A', 0, Analog>,
    timer: CounterHz<pac::TIM2>,
}

impl SampleSource for AdcSource {
    type Error = core::convert::Infallible;
    fn read(&mut self, sample: &mut [i16]) -> Result<bool, Self::Error> {
        // Wait for the next sampling instant, then convert (12-bit, centred on mid-scale).
        let _ = nb::block!(self.timer.wait());
        let raw = self.adc.convert(&self.pin, SampleTime::Cycles_84);
        // One channel: start-up refuses models for more.
        sample[0] = (raw as i16).saturating_sub(ADC_MIDSCALE);
        Ok(true)
    }
}

#[entry]
fn main() -> ! {
    let dp = pac::Peripherals::take().unwrap();
    let rcc = dp.RCC.constrain();
    let clocks = rcc.cfgr.sysclk(84.MHz()).freeze();
    let gpioa = dp.GPIOA.split();

    let mut tx = dp.USART2.tx(gpioa.pa2, Config::default().baudrate(115_200.bps()), &clocks).unwrap();
    let mut timer = dp.TIM2.counter_hz(&clocks);
    timer.start(model::SAMPLE_RATE_HZ.Hz()).unwrap();
    let mut adc = Adc::adc1(dp.ADC1, true, AdcConfig::default());
    let pin = gpioa.pa0.into_analog();
    let config = StreamConfig {
        session: session_from_noise(&mut adc, &pin),
        windows_per_frame: model::WINDOWS_PER_FRAME,
        ..StreamConfig::DEFAULT
    };
    let source = AdcSource { adc, pin, timer };

    // Validate the embedded model before anything is sent; a bad blob, or a model for more
    // channels than this board samples, halts with the reason on the serial port (as text,
    // which `funnel decode` reports as a corrupt chunk).
    let encoder = match funnel_shared::encoder::QuantizedEncoder::from_blob(model::MODEL_BLOB) {
        Err(e) => {
            let _ = writeln!(tx, "\r\nfunnel-firmware: bad model blob: {e}; halting\r");
            halt();
        }
        Ok(encoder) if encoder.channels() != 1 => {
            let _ = writeln!(
                tx,
                "\r\nfunnel-firmware: the model takes {} channels, this board samples one (A0); halting\r",
                encoder.channels()
            );
            halt();
        }
        Ok(encoder) => encoder,
    };
    // Used where `new` left it: moved out of the `Result`, the app took its size twice on the
    // stack.
    let mut started =
        App::<_, _, { model::WINDOW_SAMPLES }, { model::SCRATCH_LEN }, { model::BOUNDED }, { model::CODES }>::new(
            encoder, config, source, tx,
        );
    let Ok(app) = &mut started else { halt() };
    loop {
        // Serial errors (overrun etc.) drop at most the frame being sent; the decoder
        // resynchronises on the next frame or header and reports the gap.
        let _ = app.step();
    }
}

/// A session id for the stream headers: the lowest bit of 16 quick conversions of the input.
/// ADC noise makes it differ between power-ups and resets, so a receiver tells a restart from
/// the stream going on even when the restart's first header is lost (1 chance in 65 536 not to).
fn session_from_noise(adc: &mut Adc<pac::ADC1>, pin: &Pin<'A', 0, Analog>) -> u16 {
    (0..16).fold(0u16, |session, _| (session << 1) | (adc.convert(pin, SampleTime::Cycles_3) & 1))
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
