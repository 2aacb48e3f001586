//! Funnel firmware: sample a sensor, encode each full window with the int8 encoder of
//! `funnel-shared`, send the frames and stream headers of wire format v4.
//!
//! The application logic here is generic and `#![no_std]`, heap-free and host-testable
//! (`cargo test -p funnel-firmware --lib`):
//!
//! - a [`SampleSource`] gives one sample per channel at a time (adapters: [`sensors::Lis3dh`]
//!   for an I2C accelerometer written against `embedded_hal::i2c::I2c`, a semihosting file in
//!   the QEMU board, the STM32 ADC on the Nucleo);
//! - an `embedded_io::Write` sink takes the frame bytes ([`io::NbSerial`] adapts any
//!   `embedded_hal_nb::serial::Write<u8>` UART);
//! - [`App`] keeps the samples of a window in a `heapless` buffer and, for every full window, runs
//!   `StreamEncoder::encode_window`, the call `funnel encode` makes on the host, so the bytes
//!   on the link are identical.
//!
//! The board binaries in `src/bin/` are thin: set up clocks and peripherals, build the
//! source and sink, run [`App`].
#![no_std]
#![deny(unsafe_code)]

pub mod app;
pub mod io;
#[cfg(all(target_arch = "arm", target_os = "none", any(feature = "board-qemu", feature = "board-microbit")))]
pub mod semihosted;
pub mod sensors;
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub mod stack;

pub use app::{App, AppError, SampleSource, StartError, Step};

/// The model embedded at build time (see `build.rs`: `FUNNEL_MODEL`, default `models/ecg`).
pub mod model {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}

/// Marks benchmark boundaries for the QEMU instruction-count plugin
/// (`shared/tools/insncount.c`, `mark=<address of bench_mark>`). [`App`] calls it right before
/// and after encoding each window and after the frame is written, so the plugin's deltas are
/// the instructions spent sampling, encoding and sending one window. It does nothing and costs
/// a call and a return.
// Unmangled so `llvm-nm` finds it; the name is unique to this crate.
#[allow(unsafe_code)]
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_mark() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A small conv + dense model and host-side references for the unit tests.
    extern crate std;
    use crate::SampleSource;
    use funnel_shared::blob::*;
    use funnel_shared::entropy::CodeTables;
    use funnel_shared::stream::StreamConfig;
    use funnel_shared::wire::ModelId;
    use std::vec::Vec;

    fn le32(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A blob with `window` samples of `channels` channels: conv1d (4 filters, kernel 3,
    /// stride 2, padding 1, ReLU) then dense to 6 codes.
    pub fn tiny_blob(window: u16, channels: u8) -> Vec<u8> {
        blob_with_tables(window, channels, false)
    }

    /// [`tiny_blob`] whose codes are entropy coded (each latent's table: every code of
    /// −128 ..= 127 equally likely), so that its streams end with a last frame.
    pub fn tiny_blob_coded(window: u16, channels: u8) -> Vec<u8> {
        blob_with_tables(window, channels, true)
    }

    fn blob_with_tables(window: u16, channels: u8, coded: bool) -> Vec<u8> {
        let c = usize::from(channels);
        let t_out = usize::from(window) / 2;
        let conv_w: Vec<u8> = (0..4 * c * 3).map(|i| ((i * 53 + 7) % 255) as u8).collect();
        let dense_w: Vec<u8> = (0..6 * 4 * t_out).map(|i| ((i * 29 + 3) % 251) as u8).collect();
        let (conv_b, conv_m, conv_s) = (
            le32(&[100, -50, 0, 7]),
            le32(&[1 << 30, 1_500_000_000, 1_200_000_000, 2_000_000_000]),
            [0xF8u8, 0xF9, 0xF8, 0xF7],
        );
        let (dense_b, dense_m) = (le32(&[1, -2, 3, -4, 5, -6]), le32(&[1_300_000_000; 6]));
        let dense_s = [0xF6u8; 6];
        let offsets = le32(&std::vec![-10; c]);
        let in_m = le32(&std::vec![1 << 30; c]);
        let in_s = std::vec![0xFEu8; c];
        let ql =
            |w: &'static [u8], b: &'static [u8], m: &'static [u8], s: &'static [u8], zi: i8, zo: i8, relu: bool| {
                QuantLayer {
                    weights: Weights::Int8(I8s::new(w)),
                    bias: I32s::new(b).unwrap(),
                    requant: RequantParams { multipliers: I32s::new(m).unwrap(), shifts: I8s::new(s) },
                    input_zero_point: zi,
                    output_zero_point: zo,
                    relu,
                    accumulator: AccumulatorWidth::Bits32,
                }
            };
        let leak = |v: Vec<u8>| -> &'static [u8] { std::boxed::Box::leak(v.into_boxed_slice()) };
        let mut layers = heapless::Vec::new();
        layers
            .push(Layer::Conv1d {
                in_channels: channels.into(),
                out_channels: 4,
                in_len: window,
                kernel: 3,
                stride: 2,
                padding: 1,
                q: ql(leak(conv_w), leak(conv_b), leak(conv_m), leak(conv_s.to_vec()), 0, -128, true),
            })
            .unwrap();
        layers
            .push(Layer::Dense {
                in_features: (4 * t_out) as u16,
                out_features: 6,
                q: ql(leak(dense_w), leak(dense_b), leak(dense_m), leak(dense_s.to_vec()), -128, 1, false),
            })
            .unwrap();
        let spec = EncoderSpec {
            window,
            channels,
            counts_per_unit: 200.0,
            input: InputQuant {
                offsets: I32s::new(leak(offsets)).unwrap(),
                requant: RequantParams { multipliers: I32s::new(leak(in_m)).unwrap(), shifts: I8s::new(leak(in_s)) },
            },
            layers,
            codes: CodeQuant { scale: 0.1, zero_point: 1, dead_zones: U8s::EMPTY },
            tables: None,
            residual: None,
            decoder: None,
        };
        let (lowest, cumulative) = (leak(std::vec![0x80, 0xFF].repeat(6)), (0..6 * 256).map(|i| (i % 256) as u16 * 16));
        let highest = leak(std::vec![0x7F, 0x00].repeat(6));
        let cumulative = leak(cumulative.flat_map(u16::to_le_bytes).collect());
        let tables = CodeTables {
            lowest: I16s::new(lowest).unwrap(),
            highest: I16s::new(highest).unwrap(),
            cumulative: U16s::new(cumulative).unwrap(),
            lags: U8s::new(&[]).unwrap(),
            classes: U16s::new(&[]).unwrap(),
        };
        let spec = EncoderSpec { tables: coded.then_some(tables), ..spec };
        let mut buf = std::vec![0u8; 1 << 16];
        let n = write_blob(&spec, &mut buf, |_| ModelId([0xF0, 0x0D, 0xCA, 0xFE])).unwrap();
        buf.truncate(n);
        buf
    }

    /// The encoder of a blob the tests made.
    pub fn encoder(blob: &[u8]) -> funnel_shared::encoder::QuantizedEncoder<'_> {
        funnel_shared::encoder::QuantizedEncoder::from_blob(blob).unwrap()
    }

    /// What `funnel encode` does: every full window through `StreamEncoder`, then the end of
    /// the stream (a last frame, for a blob with code tables).
    pub fn host_frames(blob: &[u8], config: StreamConfig, samples: &[i16]) -> Vec<u8> {
        use funnel_shared::{encoder::QuantizedEncoder, stream::StreamEncoder, stream::MAX_WINDOW_OUTPUT};
        let enc = QuantizedEncoder::from_blob(blob).unwrap();
        let (n, channels) = (enc.window() * enc.channels(), enc.channels());
        let mut stream = StreamEncoder::<true>::new(enc, config).unwrap();
        let mut scratch = std::vec![0i16; stream.scratch_len()];
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_WINDOW_OUTPUT];
        let mut windows = samples.chunks_exact(n);
        for w in &mut windows {
            let encoded = stream.encode_window(w, &mut scratch, &mut buf).unwrap();
            out.extend_from_slice(&buf[..encoded.len]);
        }
        let rest = windows.remainder();
        let mut partial = std::vec![0i16; n];
        partial[..rest.len()].copy_from_slice(rest);
        let end = stream.finish(&mut partial, rest.len() / channels, &mut scratch, &mut buf).unwrap();
        out.extend_from_slice(&buf[..end.len]);
        out
    }

    /// Replays interleaved `[T][C]` samples.
    pub struct VecSource<'a> {
        samples: &'a [i16],
        channels: usize,
    }

    impl<'a> VecSource<'a> {
        pub fn new(samples: &'a [i16], channels: usize) -> Self {
            VecSource { samples, channels }
        }
    }

    impl SampleSource for VecSource<'_> {
        type Error = core::convert::Infallible;
        fn read(&mut self, sample: &mut [i16]) -> Result<bool, Self::Error> {
            assert_eq!(sample.len(), self.channels);
            if self.samples.len() < self.channels {
                return Ok(false);
            }
            let (now, rest) = self.samples.split_at(self.channels);
            sample.copy_from_slice(now);
            self.samples = rest;
            Ok(true)
        }
    }

    pub struct FailingSink;
    impl embedded_io::ErrorType for FailingSink {
        type Error = embedded_io::ErrorKind;
    }
    impl embedded_io::Write for FailingSink {
        fn write(&mut self, _: &[u8]) -> Result<usize, Self::Error> {
            Err(embedded_io::ErrorKind::BrokenPipe)
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
}
