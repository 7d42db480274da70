//! Feature-gated endpoints: MonotonicCounter (marble-authenticated counters in the sealed
//! state) and SignQuoteEndpoint (verify a quote and sign the verdict with the root key).

use base64::Engine as _;
use cairn_manifest::FeatureGate;
use x509_parser::prelude::*;

use crate::coordinator::{wrong_state, CoordinatorCore};
use crate::error::CoreError;
use crate::secrets_api::manifest_of;
use crate::Phase;

/// The 403 message for a sign-quote call without the gate.
pub const SIGN_QUOTE_DISABLED: &str = "SignQuoteEndpoint feature is not enabled in the manifest";
/// The 403 message for a monotonic-counter call without the gate.
pub const COUNTER_DISABLED: &str = "MonotonicCounter feature is not enabled in the manifest";

/// A verified and signed quote.
#[derive(Debug, Clone)]
pub struct SignedQuote {
    /// TCB status string of the verdict.
    pub tcb_status: String,
    /// ASN.1 ECDSA root-key signature over SHA-256(base64std(quote as sent) ‖ tcb_status).
    pub signature: Vec<u8>,
}

/// Why sign-quote refused a quote.
#[derive(Debug, Clone)]
pub enum SignQuoteError {
    /// The quote did not verify (HTTP 400 fail); the text names the reason.
    Verification(String),
    /// Any other error (gate, state, internal).
    Core(CoreError),
}

impl From<CoreError> for SignQuoteError {
    fn from(e: CoreError) -> Self {
        SignQuoteError::Core(e)
    }
}

impl CoordinatorCore {
    /// Sets the marble's counter `name` to `value` if that is strictly greater and returns the
    /// value before the call (0 for a new counter). The caller is the marble whose leaf
    /// certificate (first TLS chain certificate) is `peer_cert`.
    pub fn monotonic_counter(
        &self,
        peer_cert: Option<&[u8]>,
        name: &str,
        value: u64,
    ) -> Result<u64, CoreError> {
        // Re-run on the latest state when another Coordinator instance committed first (HA).
        self.retry_conflicts(|| self.monotonic_counter_once(peer_cert, name, value))
    }

    fn monotonic_counter_once(
        &self,
        peer_cert: Option<&[u8]>,
        name: &str,
        value: u64,
    ) -> Result<u64, CoreError> {
        let mut inner = self.lock()?;
        if inner.phase != Phase::AcceptingMarbles {
            return Err(wrong_state(inner.phase));
        }
        let vm = manifest_of(inner.manifest.as_deref())?;
        if !vm.manifest().feature_enabled(FeatureGate::MonotonicCounter) {
            return Err(CoreError::FeatureDisabled(COUNTER_DISABLED.into()));
        }
        let now = self.deps.clock.now();
        let (marble_type, uuid) = authenticate_marble(
            peer_cert,
            &inner.state.ca.marble_root_cert,
            now.unix_timestamp(),
        )?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let id = format!(
            "{}:{}:{}",
            b64.encode(marble_type.as_bytes()),
            b64.encode(uuid.as_bytes()),
            b64.encode(name.as_bytes())
        );
        let previous = inner.state.counters.get(&id).copied().unwrap_or(0);
        if value > previous {
            let mut next = inner.state.clone();
            next.counters.insert(id, value);
            self.commit_next(&mut inner, next)?;
        }
        Ok(previous)
    }

    /// Verifies `quote` (raw SGX or OE-wrapped) with the Coordinator's verifier and signs
    /// SHA-256(base64std(quote exactly as sent) ‖ tcbStatus) with the root key.
    pub fn sign_quote(&self, quote: &[u8]) -> Result<SignedQuote, SignQuoteError> {
        let ca = {
            let inner = self.lock()?;
            let enabled = inner
                .manifest
                .as_ref()
                .is_some_and(|m| m.manifest().feature_enabled(FeatureGate::SignQuoteEndpoint));
            if !enabled {
                return Err(CoreError::FeatureDisabled(SIGN_QUOTE_DISABLED.into()).into());
            }
            inner.state.ca.clone()
        };
        let evidence = if is_raw_sgx_quote(quote) {
            cairn_attest::oe::wrap(quote)
        } else {
            quote.to_vec()
        };
        let now_unix = u64::try_from(self.deps.clock.now().unix_timestamp()).unwrap_or(0);
        let verdict = self
            .deps
            .verifier
            .verify(&evidence, now_unix)
            .map_err(|e| match e {
                CoreError::PermissionDenied(m) => SignQuoteError::Verification(
                    m.strip_prefix("quote verification failed: ")
                        .unwrap_or(&m)
                        .to_string(),
                ),
                other => SignQuoteError::Core(other),
            })?;
        // Invariant: the signed message is built from the caller's bytes, never the OE-wrapped copy.
        let mut msg = base64::engine::general_purpose::STANDARD
            .encode(quote)
            .into_bytes();
        msg.extend_from_slice(verdict.tcb_status.as_bytes());
        let signature = ca
            .sign_manifest(&msg)
            .map_err(|e| CoreError::internal("signing the quote verdict", e))?;
        Ok(SignedQuote {
            tcb_status: verdict.tcb_status,
            signature,
        })
    }
}

/// MarbleRun's raw-quote detection: length ≥ 48, version 3, attestation key type ≤ 3, TEE type
/// 0 (SGX), QE SVN > 0 and PCE SVN > 0.
pub fn is_raw_sgx_quote(q: &[u8]) -> bool {
    if q.len() < 48 {
        return false;
    }
    let u16_at = |i: usize| u16::from_le_bytes([q[i], q[i + 1]]);
    let tee = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
    u16_at(0) == 3 && u16_at(2) <= 3 && tee == 0 && u16_at(8) > 0 && u16_at(10) > 0
}

/// Authenticates a marble: its leaf must be signed by the CURRENT marble root (= intermediate
/// key), be within its validity period, carry CN = UUID and the marble-type extension.
fn authenticate_marble(
    peer_cert: Option<&[u8]>,
    marble_root_der: &[u8],
    now_unix: i64,
) -> Result<(String, uuid::Uuid), CoreError> {
    let unauth = |why: &str| CoreError::Unauthenticated(format!("not a marble certificate: {why}"));
    let Some(der) = peer_cert else {
        return Err(unauth("no TLS client certificate"));
    };
    let (_, leaf) = X509Certificate::from_der(der).map_err(|_| unauth("unparsable certificate"))?;
    let (_, root) = X509Certificate::from_der(marble_root_der)
        .map_err(|e| CoreError::internal("parsing the marble root", e))?;
    // Invariant: the client's leaf is accepted only if the current marble root key signed it.
    if leaf.issuer().as_raw() != root.subject().as_raw()
        || leaf.verify_signature(Some(root.public_key())).is_err()
    {
        return Err(unauth("not issued by the current marble root"));
    }
    let v = leaf.validity();
    if now_unix < v.not_before.timestamp() || now_unix > v.not_after.timestamp() {
        return Err(unauth("certificate expired or not yet valid"));
    }
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or_else(|| unauth("no common name"))?;
    let uuid = uuid::Uuid::parse_str(cn).map_err(|_| unauth("common name is not a UUID"))?;
    let marble_type = leaf
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.9903.2.1")
        .map(|e| String::from_utf8_lossy(e.value).into_owned())
        .ok_or_else(|| unauth("no marble type extension"))?;
    Ok((marble_type, uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_detection() {
        let mut q = vec![0u8; 48];
        q[0] = 3;
        q[2] = 2;
        q[8] = 1;
        q[10] = 1;
        assert!(is_raw_sgx_quote(&q));
        assert!(!is_raw_sgx_quote(&cairn_attest::oe::wrap(&q)));
        q[4] = 0x81; // TDX
        assert!(!is_raw_sgx_quote(&q));
        assert!(!is_raw_sgx_quote(&q[..40]));
    }
}
