//! Recordings and what training and evaluation cut from them.
//!
//! Conventions:
//! * A CSV row is one time step; the selected columns are the channels (interleaved in the file).
//! * A window is `[C][T]` channels-first, flattened channel-major: element `c * T + t`.
//! * Windows do not overlap (hop = window). The first 80 % of the windows (in time order) are the
//!   training part, the last 20 % the held-out part that training never sees.

mod dataset;
mod normalization;
mod recording;
#[cfg(test)]
mod test_support;
mod windows;

pub use dataset::{fit_validation_counts, train_window_count, Dataset, SplitInfo, TrainingWindows, TRAIN_FRACTION};
pub use normalization::{counts_per_unit, grid_counts_per_unit, Normalization};
pub use recording::{DataError, Recording};
pub use windows::{channels_first_to_interleaved, interleaved_to_channels_first, Windows};
