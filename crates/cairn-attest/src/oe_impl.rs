//! The 16-byte OpenEnclave report header: `u32 version=1 | u32 type=2 | u64 size`, little-endian.

use crate::FormatError;

/// Length of the OE report header.
pub const OE_HEADER_LEN: usize = 16;
const OE_VERSION: u32 = 1;
const OE_TYPE_SGX_REMOTE: u32 = 2;

/// Prepends the OE header (version 1, type 2 = SGX remote) to a raw quote.
pub fn wrap(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OE_HEADER_LEN + raw.len());
    out.extend_from_slice(&OE_VERSION.to_le_bytes());
    out.extend_from_slice(&OE_TYPE_SGX_REMOTE.to_le_bytes());
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(raw);
    out
}

/// True when `ev` starts with an OE header (version 1, type 2). A raw quote never does: its first
/// four bytes are `u16 version (3..5) | u16 key type`, which is not the little-endian u32 `1`.
pub fn is_wrapped(ev: &[u8]) -> bool {
    ev.len() >= 8 && le_u32(ev, 0) == OE_VERSION && le_u32(ev, 4) == OE_TYPE_SGX_REMOTE
}

/// Strips the OE header if present; a raw quote passes through unchanged.
///
/// Invariant: the returned slice is exactly the `size` bytes the header announces, so trailing
/// bytes outside the envelope never reach the verifier.
pub fn unwrap(ev: &[u8]) -> Result<&[u8], FormatError> {
    if !is_wrapped(ev) {
        return Ok(ev);
    }
    if ev.len() < OE_HEADER_LEN {
        return Err(FormatError::Truncated {
            what: "OE report header",
            need: OE_HEADER_LEN,
            have: ev.len(),
        });
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&ev[8..16]);
    let size = u64::from_le_bytes(size);
    let have = (ev.len() - OE_HEADER_LEN) as u64;
    if size != have {
        return Err(FormatError::OeSizeMismatch {
            header: size,
            actual: have,
        });
    }
    Ok(&ev[OE_HEADER_LEN..])
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_round_trip() {
        let raw = [3u8, 0, 2, 0, 0, 0, 0, 0, 9, 9];
        let w = wrap(&raw);
        assert_eq!(&w[..16], &[1, 0, 0, 0, 2, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0]);
        assert!(is_wrapped(&w));
        assert_eq!(unwrap(&w).unwrap(), &raw);
        assert_eq!(unwrap(&raw).unwrap(), &raw);
    }

    #[test]
    fn size_mismatch_and_truncated_header() {
        let mut w = wrap(&[3, 0, 2, 0]);
        w.push(0);
        assert!(matches!(
            unwrap(&w),
            Err(FormatError::OeSizeMismatch {
                header: 4,
                actual: 5
            })
        ));
        assert!(matches!(
            unwrap(&w[..10]),
            Err(FormatError::Truncated {
                need: 16,
                have: 10,
                ..
            })
        ));
    }
}
