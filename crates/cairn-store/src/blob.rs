//! The sealed state blob (layout in the README): a data key sealed under the seal key, opaque
//! recovery data, and the state encrypted under the data key, with a trailing checksum.

use std::fmt;

use cairn_crypto::{SecretKey32, Zeroizing};

use crate::StoreError;

/// First bytes of every sealed state blob.
pub const MAGIC: &[u8; 7] = b"CAIRNSS";
/// Format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

const HEADER_LEN: usize = 9; // magic ‖ version ‖ mode
const CHECKSUM_LEN: usize = 32;
const AEAD_OVERHEAD: usize = 12 + 16; // nonce ‖ … ‖ tag
const SEALED_KEY_LEN: usize = AEAD_OVERHEAD + 32;

/// The result of unsealing: the state plaintext and what it was sealed with.
pub struct Unsealed {
    /// Decrypted state bytes.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The data key (re-used when the state is sealed again).
    pub data_key: SecretKey32,
    /// The recovery data stored beside the state (opaque to the store).
    pub recovery_data: Vec<u8>,
    /// Seal mode byte (opaque to the store; cairn-core assigns the values).
    pub mode: u8,
}

impl fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unsealed")
            .field("plaintext_len", &self.plaintext.len())
            .field("recovery_data_len", &self.recovery_data.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// What can be read from a blob without any key (the checksum is verified; nothing is
/// authenticated): the mode and the recovery data a Coordinator needs to start recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Format version byte.
    pub version: u8,
    /// Seal mode byte.
    pub mode: u8,
    /// Recovery data.
    pub recovery_data: Vec<u8>,
}

/// Seals `plaintext` under `data_key`, and `data_key` under `seal_key`.
pub fn seal_state(
    plaintext: &[u8],
    data_key: &SecretKey32,
    seal_key: &SecretKey32,
    mode: u8,
    recovery_data: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let recovery_len = u32::try_from(recovery_data.len())
        .map_err(|_| StoreError::Corrupted("recovery data larger than 4 GiB"))?;
    let mut out = Vec::with_capacity(
        HEADER_LEN + 2 + SEALED_KEY_LEN + 4 + recovery_data.len() + plaintext.len() + 64,
    );
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(mode);
    // The sealed data key is bound to magic, version and mode.
    let sealed_key = cairn_crypto::aead_seal(seal_key, data_key.as_bytes(), &out[..HEADER_LEN])?;
    let sealed_key_len = u16::try_from(sealed_key.len())
        .map_err(|_| StoreError::Corrupted("sealed data key too long"))?;
    out.extend_from_slice(&sealed_key_len.to_be_bytes());
    out.extend_from_slice(&sealed_key);
    out.extend_from_slice(&recovery_len.to_be_bytes());
    out.extend_from_slice(recovery_data);
    // The state ciphertext authenticates every byte before it as AAD.
    let ct = cairn_crypto::aead_seal(data_key, plaintext, &out)?;
    out.extend_from_slice(&ct);
    let sum = cairn_crypto::sha256(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Unseals with the platform seal key (normal start-up).
pub fn unseal_state(blob: &[u8], seal_key: &SecretKey32) -> Result<Unsealed, StoreError> {
    let parts = parse(blob)?;
    // Invariant: the data key is accepted only if AES-GCM under the seal key authenticates it
    // together with magic, version and mode.
    let key_bytes = cairn_crypto::aead_open(seal_key, parts.sealed_key, &blob[..HEADER_LEN])
        .map_err(|_| StoreError::SealKeyMismatch)?;
    let data_key = SecretKey32::from_slice(&key_bytes)
        .map_err(|_| StoreError::Corrupted("sealed data key has the wrong length"))?;
    open_state(
        blob,
        &parts,
        data_key,
        StoreError::Corrupted("state ciphertext"),
    )
}

/// Unseals with a data key obtained elsewhere (the recovery path); the sealed data key is
/// ignored but still authenticated as part of the AAD.
pub fn unseal_with_data_key(blob: &[u8], data_key: &SecretKey32) -> Result<Unsealed, StoreError> {
    let parts = parse(blob)?;
    open_state(blob, &parts, data_key.clone(), StoreError::DataKeyMismatch)
}

/// Reads version, mode and recovery data without keys.
pub fn inspect(blob: &[u8]) -> Result<BlobInfo, StoreError> {
    let parts = parse(blob)?;
    Ok(BlobInfo {
        version: FORMAT_VERSION,
        mode: parts.mode,
        recovery_data: parts.recovery_data.to_vec(),
    })
}

struct Parts<'a> {
    mode: u8,
    sealed_key: &'a [u8],
    recovery_data: &'a [u8],
    /// offset of the state ciphertext
    ct_start: usize,
    /// offset of the checksum (end of the ciphertext)
    ct_end: usize,
}

fn parse(blob: &[u8]) -> Result<Parts<'_>, StoreError> {
    if blob.len() < MAGIC.len() + 1 || &blob[..MAGIC.len()] != MAGIC {
        return Err(StoreError::NotCairnState);
    }
    let version = blob[MAGIC.len()];
    if version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let min = HEADER_LEN + 2 + 4 + AEAD_OVERHEAD + CHECKSUM_LEN;
    if blob.len() < min {
        return Err(StoreError::Corrupted("truncated"));
    }
    // Invariant: every later field is read only after SHA-256 of all preceding bytes matches
    // the trailing checksum, so accidental damage is reported as corruption, not a key error.
    let ct_end = blob.len() - CHECKSUM_LEN;
    if cairn_crypto::sha256(&blob[..ct_end])[..] != blob[ct_end..] {
        return Err(StoreError::Corrupted("checksum mismatch"));
    }
    let mode = blob[MAGIC.len() + 1];
    let mut pos = HEADER_LEN;
    let key_len = usize::from(u16::from_be_bytes([blob[pos], blob[pos + 1]]));
    pos += 2;
    let sealed_key = blob
        .get(pos..pos + key_len)
        .ok_or(StoreError::Corrupted("sealed data key length"))?;
    pos += key_len;
    let rl = blob
        .get(pos..pos + 4)
        .ok_or(StoreError::Corrupted("recovery data length"))?;
    let rec_len = usize::try_from(u32::from_be_bytes([rl[0], rl[1], rl[2], rl[3]]))
        .map_err(|_| StoreError::Corrupted("recovery data length"))?;
    pos += 4;
    let recovery_data = blob
        .get(pos..pos.saturating_add(rec_len))
        .ok_or(StoreError::Corrupted("recovery data length"))?;
    pos += rec_len;
    if pos > ct_end || ct_end - pos < AEAD_OVERHEAD {
        return Err(StoreError::Corrupted("state ciphertext truncated"));
    }
    Ok(Parts {
        mode,
        sealed_key,
        recovery_data,
        ct_start: pos,
        ct_end,
    })
}

fn open_state(
    blob: &[u8],
    parts: &Parts<'_>,
    data_key: SecretKey32,
    on_fail: StoreError,
) -> Result<Unsealed, StoreError> {
    // Invariant: the plaintext is returned only if AES-GCM under the data key authenticates the
    // ciphertext and every byte before it (header, sealed key, recovery data).
    let plaintext = cairn_crypto::aead_open(
        &data_key,
        &blob[parts.ct_start..parts.ct_end],
        &blob[..parts.ct_start],
    )
    .map_err(|_| on_fail)?;
    Ok(Unsealed {
        plaintext,
        data_key,
        recovery_data: parts.recovery_data.to_vec(),
        mode: parts.mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (SecretKey32, SecretKey32) {
        (
            cairn_crypto::random_key32().unwrap(),
            cairn_crypto::random_key32().unwrap(),
        )
    }

    #[test]
    fn round_trip() {
        let (dk, sk) = keys();
        for (pt, rec) in [
            (&b"{\"state\":2}"[..], &b""[..]),
            (&b""[..], &b"recovery"[..]),
        ] {
            let blob = seal_state(pt, &dk, &sk, 7, rec).unwrap();
            assert_eq!(&blob[..7], MAGIC);
            let u = unseal_state(&blob, &sk).unwrap();
            assert_eq!(u.plaintext.as_slice(), pt);
            assert_eq!(u.data_key, dk);
            assert_eq!(u.recovery_data, rec);
            assert_eq!(u.mode, 7);
            let u = unseal_with_data_key(&blob, &dk).unwrap();
            assert_eq!(u.plaintext.as_slice(), pt);
            let info = inspect(&blob).unwrap();
            assert_eq!(info.recovery_data, rec);
            assert_eq!(info.mode, 7);
            assert!(!format!("{u:?}").contains("state"));
        }
    }

    #[test]
    fn wrong_keys_are_specific_errors() {
        let (dk, sk) = keys();
        let blob = seal_state(b"secret state", &dk, &sk, 0, b"r").unwrap();
        let (other_dk, other_sk) = keys();
        assert!(matches!(
            unseal_state(&blob, &other_sk),
            Err(StoreError::SealKeyMismatch)
        ));
        assert!(matches!(
            unseal_with_data_key(&blob, &other_dk),
            Err(StoreError::DataKeyMismatch)
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (dk, sk) = keys();
        let blob = seal_state(b"{\"some\":\"state\"}", &dk, &sk, 1, b"recovery-data").unwrap();
        for i in 0..blob.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = blob.clone();
                b[i] ^= bit;
                let e1 = unseal_state(&b, &sk).unwrap_err();
                let e2 = unseal_with_data_key(&b, &dk).unwrap_err();
                for e in [e1, e2] {
                    let ok = if i < MAGIC.len() {
                        matches!(e, StoreError::NotCairnState)
                    } else if i == MAGIC.len() {
                        matches!(e, StoreError::UnsupportedVersion { .. })
                    } else {
                        matches!(e, StoreError::Corrupted(_))
                    };
                    assert!(ok, "byte {i}: {e:?}");
                }
            }
        }
    }

    #[test]
    fn forged_checksum_still_fails_authentication() {
        // An attacker can recompute the checksum; AES-GCM still rejects the change.
        let (dk, sk) = keys();
        let blob = seal_state(b"state", &dk, &sk, 1, b"rec").unwrap();
        let body_len = blob.len() - CHECKSUM_LEN;
        for i in MAGIC.len() + 1..body_len {
            let mut b = blob[..body_len].to_vec();
            b[i] ^= 0x01;
            let sum = cairn_crypto::sha256(&b);
            b.extend_from_slice(&sum);
            assert!(unseal_state(&b, &sk).is_err(), "byte {i}");
            assert!(unseal_with_data_key(&b, &dk).is_err(), "byte {i}");
        }
    }

    #[test]
    fn truncation_and_foreign_data() {
        let (dk, sk) = keys();
        let blob = seal_state(b"state", &dk, &sk, 1, b"").unwrap();
        for n in 0..blob.len() {
            assert!(unseal_state(&blob[..n], &sk).is_err(), "len {n}");
        }
        assert!(matches!(
            unseal_state(b"{\"json\": true}", &sk),
            Err(StoreError::NotCairnState)
        ));
        let mut v2 = blob.clone();
        v2[MAGIC.len()] = 2;
        assert!(matches!(
            unseal_state(&v2, &sk),
            Err(StoreError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
    }
}
