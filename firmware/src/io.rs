//! Byte-sink adapters.

use embedded_hal_nb::serial;

/// Adapts a non-blocking `embedded_hal_nb::serial::Write<u8>` UART to a blocking
/// `embedded_io::Write` sink (busy-waits while the transmitter is full).
pub struct NbSerial<T>(pub T);

/// Error of [`NbSerial`]: the UART's own error.
#[derive(Debug)]
pub struct SerialError<E>(pub E);

impl<E: core::fmt::Display> core::fmt::Display for SerialError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "serial port: {}", self.0)
    }
}

impl<E: serial::Error> embedded_io::Error for SerialError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<T: serial::ErrorType> embedded_io::ErrorType for NbSerial<T> {
    type Error = SerialError<T::Error>;
}

impl<T: serial::Write<u8>> embedded_io::Write for NbSerial<T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            nb::block!(self.0.write(b)).map_err(SerialError)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        nb::block!(self.0.flush()).map_err(SerialError)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use embedded_io::Write;

    /// A UART whose transmitter is busy every other poll.
    struct FlakyUart {
        sent: std::vec::Vec<u8>,
        busy: bool,
    }
    impl serial::ErrorType for FlakyUart {
        type Error = serial::ErrorKind;
    }
    impl serial::Write<u8> for FlakyUart {
        fn write(&mut self, word: u8) -> nb::Result<(), Self::Error> {
            self.busy = !self.busy;
            if self.busy {
                return Err(nb::Error::WouldBlock);
            }
            self.sent.push(word);
            Ok(())
        }
        fn flush(&mut self) -> nb::Result<(), Self::Error> {
            Ok(())
        }
    }

    #[test]
    fn waits_for_the_transmitter_and_sends_every_byte() {
        let mut w = NbSerial(FlakyUart { sent: std::vec::Vec::new(), busy: false });
        w.write_all(b"\x01\x02frame\x00").unwrap();
        w.flush().unwrap();
        assert_eq!(w.0.sent, b"\x01\x02frame\x00");
    }
}
