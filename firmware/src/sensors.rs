//! Sample sources written against `embedded-hal` traits.

use embedded_hal::i2c::I2c;

use crate::SampleSource;

/// ST LIS3DH 3-axis accelerometer on I2C (also LIS2DH12 and LIS3DH clones): one sample is
/// `[x, y, z]` in raw left-justified counts (12-bit high-resolution mode, ±2 g: 16 counts per
/// mg after the left justification is kept, as the model's `counts_per_unit` expects).
pub struct Lis3dh<I> {
    i2c: I,
    address: u8,
}

impl<I: I2c> Lis3dh<I> {
    /// Default address with SA0 high.
    pub const ADDRESS: u8 = 0x19;
    const WHO_AM_I: u8 = 0x0F;
    const CTRL_REG1: u8 = 0x20;
    const CTRL_REG4: u8 = 0x23;
    const OUT_X_L: u8 = 0x28;
    /// Register auto-increment bit of multi-byte reads.
    const AUTO_INCREMENT: u8 = 0x80;

    /// Checks the chip id and starts it at `odr` (CTRL_REG1 ODR field, e.g. 0b0101 = 100 Hz),
    /// all axes, high-resolution, block data update.
    pub fn new(mut i2c: I, address: u8, odr: u8) -> Result<Self, Lis3dhError<I::Error>> {
        let mut id = [0u8];
        i2c.write_read(address, &[Self::WHO_AM_I], &mut id).map_err(Lis3dhError::I2c)?;
        if id[0] != 0x33 {
            return Err(Lis3dhError::WrongChip(id[0]));
        }
        i2c.write(address, &[Self::CTRL_REG1, (odr & 0x0F) << 4 | 0x07]).map_err(Lis3dhError::I2c)?;
        i2c.write(address, &[Self::CTRL_REG4, 0x88]).map_err(Lis3dhError::I2c)?;
        Ok(Lis3dh { i2c, address })
    }

    pub fn release(self) -> I {
        self.i2c
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Lis3dhError<E> {
    I2c(E),
    /// WHO_AM_I returned this instead of 0x33.
    WrongChip(u8),
}

impl<I: I2c> SampleSource for Lis3dh<I> {
    type Error = Lis3dhError<I::Error>;

    /// Reads x, y, z (as many as `sample` holds, at most 3). Never exhausted.
    fn read(&mut self, sample: &mut [i16]) -> Result<bool, Self::Error> {
        let mut raw = [0u8; 6];
        self.i2c
            .write_read(self.address, &[Self::OUT_X_L | Self::AUTO_INCREMENT], &mut raw)
            .map_err(Lis3dhError::I2c)?;
        for (out, axis) in sample.iter_mut().zip(raw.chunks_exact(2)) {
            *out = i16::from_le_bytes([axis[0], axis[1]]);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use embedded_hal::i2c::{ErrorKind, ErrorType, Operation};
    use std::vec::Vec;

    /// Register-file mock of the chip.
    struct MockLis3dh {
        regs: [u8; 0x40],
        writes: Vec<(u8, Vec<u8>)>,
    }
    impl ErrorType for MockLis3dh {
        type Error = ErrorKind;
    }
    impl I2c for MockLis3dh {
        fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
            assert_eq!(address, Lis3dh::<Self>::ADDRESS);
            let mut reg = 0usize;
            for op in ops {
                match op {
                    Operation::Write(bytes) => {
                        self.writes.push((address, bytes.to_vec()));
                        reg = usize::from(bytes[0] & 0x7F);
                        for (i, &b) in bytes[1..].iter().enumerate() {
                            self.regs[reg + i] = b;
                        }
                    }
                    Operation::Read(buf) => {
                        for (i, b) in buf.iter_mut().enumerate() {
                            *b = self.regs[reg + i];
                        }
                    }
                }
            }
            Ok(())
        }
    }

    #[test]
    fn configures_the_chip_and_reads_three_axes() {
        let mut regs = [0u8; 0x40];
        regs[0x0F] = 0x33;
        regs[0x28..0x2E].copy_from_slice(&[0x10, 0xFF, 0x00, 0x40, 0xF0, 0x7F]);
        let mut acc =
            Lis3dh::new(MockLis3dh { regs, writes: Vec::new() }, Lis3dh::<MockLis3dh>::ADDRESS, 0b0101).unwrap();
        let mut s = [0i16; 3];
        assert!(acc.read(&mut s).unwrap());
        assert_eq!(s, [-240, 0x4000, 0x7FF0]);
        let chip = acc.release();
        assert_eq!(chip.regs[0x20], 0x57);
        assert_eq!(chip.regs[0x23], 0x88);
    }

    #[test]
    fn refuses_another_chip() {
        let mut regs = [0u8; 0x40];
        regs[0x0F] = 0x32;
        let err = Lis3dh::new(MockLis3dh { regs, writes: Vec::new() }, Lis3dh::<MockLis3dh>::ADDRESS, 5).err();
        assert_eq!(err, Some(Lis3dhError::WrongChip(0x32)));
    }
}
