//! The part of Funnel that runs on both sides of the link, `no_std` and allocation-free:
//!
//! - [`wire`]: stream headers and data frames of latent codes on a byte link, and the
//!   resynchronising [`wire::FrameDecoder`];
//! - [`blob`]: the versioned, checksummed model blob the firmware reads in place from flash;
//! - [`kernels`]: int8 dense / conv1d kernels with TFLite-style fixed-point requantization;
//! - [`entropy`]: static per-latent tables and the rANS coder of the codes;
//! - [`encoder`]: the whole int8 encoder, `window -> codes`, over caller-provided scratch;
//! - [`decoder`]: the integer decoder, `codes -> window` in device counts, the same on both sides;
//! - [`stream`]: consecutive windows of a stream to headers and frames.
//!
//! The host simulator and the firmware call the same functions, which is what keeps the
//! simulator bit-exact.
#![no_std]
#![deny(unsafe_code)]

pub mod blob;
pub mod decoder;
pub mod encoder;
pub mod entropy;
pub mod kernels;
pub mod residual;
pub mod stream;
pub mod wire;
