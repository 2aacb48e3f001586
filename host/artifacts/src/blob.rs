//! `encoder.fq8`, the device's model blob, as a validated value: parsed once, its model id
//! checked against the hash of its payload, its facts at hand without parsing again.

use funnel_shared::blob::{BlobError, CodeQuant, ModelBlob, HEADER_LEN, TRAILER_LEN};
use funnel_shared::encoder::QuantizedEncoder;
use funnel_shared::wire::ModelId;
use sha2::{Digest, Sha256};

/// Why bytes are not a usable model blob.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobCheckError {
    /// The format check of the `shared` parser (the firmware's) failed.
    #[error(transparent)]
    Format(#[from] BlobError),
    /// The header's model id is not the one its payload hashes to: the blob was edited or
    /// assembled by hand, and frames it makes could pass for another model's.
    #[error("model blob id {stored} does not match its payload (which hashes to {computed})")]
    IdMismatch { stored: ModelId, computed: ModelId },
}

/// The model id: the first bytes of SHA-256 of the blob payload.
pub fn model_id_of(payload: &[u8]) -> ModelId {
    let digest = Sha256::digest(payload);
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest[..4]);
    ModelId(id)
}

/// A model blob that passed every check; immutable, so the checks stay true.
#[derive(Clone, Debug, PartialEq)]
pub struct Blob {
    bytes: Vec<u8>,
    model_id: ModelId,
    window: usize,
    channels: usize,
    latent: usize,
    counts_per_unit: f32,
    codes: CodeQuant,
    macs_per_window: u64,
    scratch_bytes: usize,
}

impl Blob {
    /// Parses `bytes` as the firmware does and checks the model id against the payload.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Blob, BlobCheckError> {
        // The parsed view borrows `bytes`; keep only plain facts from it.
        let (model_id, window, channels, latent, counts_per_unit, codes, macs_per_window, scratch_bytes) = {
            let parsed = ModelBlob::parse(&bytes)?;
            let computed = model_id_of(&bytes[HEADER_LEN..bytes.len() - TRAILER_LEN]);
            if computed != parsed.model_id {
                return Err(BlobCheckError::IdMismatch { stored: parsed.model_id, computed });
            }
            let spec = &parsed.spec;
            (
                parsed.model_id,
                usize::from(spec.window),
                usize::from(spec.channels),
                spec.code_len(),
                spec.counts_per_unit,
                spec.codes,
                spec.macs(),
                spec.scratch_len(),
            )
        };
        Ok(Blob { bytes, model_id, window, channels, latent, counts_per_unit, codes, macs_per_window, scratch_bytes })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The device's int8 encoder over these bytes (a zero-copy view).
    pub fn encoder(&self) -> QuantizedEncoder<'_> {
        QuantizedEncoder::from_blob(&self.bytes).expect("checked by Blob::from_bytes; the bytes are immutable")
    }

    pub fn model_id(&self) -> ModelId {
        self.model_id
    }

    /// Samples per channel in a window.
    pub fn window(&self) -> usize {
        self.window
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Codes per window.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// Device counts per unit of the recording.
    pub fn counts_per_unit(&self) -> f32 {
        self.counts_per_unit
    }

    /// The latent value of one code.
    pub fn dequantize(&self, code: i8) -> f32 {
        self.codes.scale * (f32::from(code) - f32::from(self.codes.zero_point))
    }

    pub fn macs_per_window(&self) -> u64 {
        self.macs_per_window
    }

    /// Scratch RAM the encoder needs on the device.
    pub fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }

    /// Size in bytes (what goes into flash).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_by_the_format_check() {
        let e = Blob::from_bytes(b"certainly not a Funnel model blob".to_vec()).unwrap_err();
        assert!(matches!(e, BlobCheckError::Format(BlobError::BadMagic)), "{e}");
        let e = Blob::from_bytes(vec![]).unwrap_err();
        assert!(matches!(e, BlobCheckError::Format(BlobError::Truncated { .. })), "{e}");
    }

    #[test]
    fn model_ids_are_hash_prefixes() {
        assert_eq!(model_id_of(b"").to_string(), "e3b0c442"); // SHA-256 of nothing
        assert_ne!(model_id_of(b"a"), model_id_of(b"b"));
    }
}
