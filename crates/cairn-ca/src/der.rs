//! Minimal DER helpers for the one place rcgen cannot help: a certificate whose subject key is
//! on a curve rcgen has no algorithm for (P-224). The TBS is built by rcgen with a placeholder
//! key, the SubjectPublicKeyInfo is swapped, and the TBS is signed again with the issuer key.

use cairn_crypto::KeyType;

use crate::CaError;

/// Header length and content length of the DER element at the start of `b`.
pub(crate) fn header(b: &[u8]) -> Result<(usize, usize), CaError> {
    let bad = || CaError::Generate("malformed DER in generated certificate".into());
    let first = *b.get(1).ok_or_else(bad)?;
    if first < 0x80 {
        let len = usize::from(first);
        if b.len() < 2 + len {
            return Err(bad());
        }
        return Ok((2, len));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return Err(bad());
    }
    let len_bytes = b.get(2..2 + n).ok_or_else(bad)?;
    let len = len_bytes
        .iter()
        .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
    if b.len() < 2 + n + len {
        return Err(bad());
    }
    Ok((2 + n, len))
}

/// DER tag ‖ length ‖ content.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8); // < 0x80 checked above
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8); // at most 8 length bytes
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Replaces the SubjectPublicKeyInfo of `cert_der` with `new_spki` and re-signs the TBS with
/// the ECDSA `issuer_key` (same algorithm as the original signature).
pub(crate) fn replace_spki_and_resign(
    cert_der: &[u8],
    new_spki: &[u8],
    key_type: KeyType,
    issuer_key: &[u8],
) -> Result<Vec<u8>, CaError> {
    use x509_parser::prelude::*;
    let bad = |m: &str| CaError::Generate(format!("re-signing certificate: {m}"));
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| bad(&e.to_string()))?;
    let tbs_raw: &[u8] = cert.tbs_certificate.as_ref();
    let spki_raw: &[u8] = cert.tbs_certificate.subject_pki.raw;
    // Offsets of borrowed sub-slices inside their parent buffers.
    let tbs_off = (tbs_raw.as_ptr() as usize)
        .checked_sub(cert_der.as_ptr() as usize)
        .ok_or_else(|| bad("tbs offset"))?;
    let spki_off = (spki_raw.as_ptr() as usize)
        .checked_sub(tbs_raw.as_ptr() as usize)
        .ok_or_else(|| bad("spki offset"))?;
    let (tbs_hdr, _) = header(tbs_raw)?;
    if spki_off < tbs_hdr || spki_off + spki_raw.len() > tbs_raw.len() {
        return Err(bad("spki outside tbs"));
    }
    let mut content = Vec::with_capacity(tbs_raw.len() + new_spki.len());
    content.extend_from_slice(&tbs_raw[tbs_hdr..spki_off]);
    content.extend_from_slice(new_spki);
    content.extend_from_slice(&tbs_raw[spki_off + spki_raw.len()..]);
    let new_tbs = tlv(0x30, &content);

    // signatureAlgorithm follows the TBS in the outer SEQUENCE; keep it byte for byte.
    let after_tbs = cert_der
        .get(tbs_off + tbs_raw.len()..)
        .ok_or_else(|| bad("truncated"))?;
    let (h, l) = header(after_tbs)?;
    let sig_alg = &after_tbs[..h + l];

    let sig = cairn_crypto::ecdsa_sign_der(key_type, issuer_key, &new_tbs)?;
    let mut bits = Vec::with_capacity(sig.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(&sig);

    let mut outer = new_tbs;
    outer.extend_from_slice(sig_alg);
    outer.extend_from_slice(&tlv(0x03, &bits));
    Ok(tlv(0x30, &outer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_and_header_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let enc = tlv(0x04, &content);
            let (h, l) = header(&enc).unwrap();
            assert_eq!(l, len);
            assert_eq!(&enc[h..], &content[..]);
        }
        assert!(header(&[0x30]).is_err());
        assert!(header(&[0x30, 0x82, 0x01]).is_err());
        assert!(header(&[0x30, 0x05, 0x00]).is_err());
    }
}
