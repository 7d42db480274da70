//! Client REST DTOs with MarbleRun's exact JSON key spellings (marblerun-compat §1.3–§1.4).
//!
//! Byte fields are standard, padded base64 strings as Go's `encoding/json` emits them. Request
//! types accept the lower- and upper-case spellings Go's case-insensitive decoder would match and
//! ignore unknown keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// JSend envelope status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JSendStatus {
    /// 200, `data` carries the payload.
    Success,
    /// Client-side input problem (v2 only), JSON content type.
    Fail,
    /// Server-side or refused operation; plain-text content type.
    Error,
}

/// `{"status": ..., "data": ..., "message": ...}`; `message` is omitted when empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JSend<T> {
    /// Envelope status.
    pub status: JSendStatus,
    /// Payload (`null` for errors).
    pub data: Option<T>,
    /// Error text; omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl<T> JSend<T> {
    /// A success envelope around `data`.
    pub fn success(data: T) -> Self {
        Self {
            status: JSendStatus::Success,
            data: Some(data),
            message: String::new(),
        }
    }

    /// A success envelope whose `data` is `null`.
    pub fn success_null() -> Self {
        Self {
            status: JSendStatus::Success,
            data: None,
            message: String::new(),
        }
    }

    /// A fail envelope (v2 client input problems).
    pub fn fail(data: Option<T>, message: impl Into<String>) -> Self {
        Self {
            status: JSendStatus::Fail,
            data,
            message: message.into(),
        }
    }
}

impl JSend<serde_json::Value> {
    /// An error envelope: `data` is `null`.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: JSendStatus::Error,
            data: None,
            message: message.into(),
        }
    }
}

/// Serialises an error envelope exactly as MarbleRun writes it with Go's `http.Error`: the JSON
/// object followed by a newline (to be sent with a plain-text content type).
pub fn error_body(message: &str) -> String {
    let env = JSend::<serde_json::Value>::error(message);
    // Serialising a struct of strings and `null` cannot fail.
    let mut s = serde_json::to_string(&env).unwrap_or_else(|_| String::from("{}"));
    s.push('\n');
    s
}

/// `GET /api/v2/status` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusV2 {
    /// State code (1 recovery, 2 accepting manifest, 3 accepting marbles).
    pub code: i32,
    /// Human readable state message.
    pub message: String,
}

/// `GET /status` (v1) data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct StatusV1 {
    /// State code.
    pub StatusCode: i32,
    /// State message.
    pub StatusMessage: String,
}

/// `GET /api/v2/quote` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteV2 {
    /// PEM chain: intermediate, then root.
    pub cert: String,
    /// OE-wrapped SGX quote.
    #[serde(with = "b64_opt")]
    pub quote: Option<Vec<u8>>,
}

/// `GET /quote` (v1) data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct QuoteV1 {
    /// PEM chain: intermediate, then root.
    pub Cert: String,
    /// OE-wrapped SGX quote.
    #[serde(with = "b64_opt")]
    pub Quote: Option<Vec<u8>>,
}

/// `GET /api/v2/manifest` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestGetV2 {
    /// ASN.1 ECDSA signature of SHA-256(manifest) by the root key.
    #[serde(rename = "manifestSignatureRootECDSA", with = "b64_opt")]
    pub manifest_signature_root_ecdsa: Option<Vec<u8>>,
    /// Lowercase hex SHA-256 of the raw manifest.
    #[serde(rename = "manifestFingerprint")]
    pub manifest_fingerprint: String,
    /// The raw manifest bytes.
    #[serde(with = "b64_opt")]
    pub manifest: Option<Vec<u8>>,
}

/// `GET /manifest` (v1) data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct ManifestGetV1 {
    /// ASN.1 ECDSA signature by the root key.
    #[serde(with = "b64_opt")]
    pub ManifestSignatureRootECDSA: Option<Vec<u8>>,
    /// Hex SHA-256 of the manifest (v1 calls the fingerprint "signature").
    pub ManifestSignature: String,
    /// The raw manifest bytes.
    #[serde(with = "b64_opt")]
    pub Manifest: Option<Vec<u8>>,
}

/// `POST /api/v2/manifest` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestSetReqV2 {
    /// The raw manifest (JSON) bytes.
    #[serde(alias = "Manifest", alias = "MANIFEST", with = "b64")]
    pub manifest: Vec<u8>,
}

/// `POST /api/v2/manifest` and `POST /manifest` (v1) response data (capitalised key, as MarbleRun).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct ManifestSetResp {
    /// Encrypted recovery secrets per recovery key name; `null` when there are none.
    #[serde(with = "b64_map_opt")]
    pub RecoverySecrets: Option<BTreeMap<String, Vec<u8>>>,
}

/// v2 alias of [`ManifestSetResp`].
pub type ManifestSetRespV2 = ManifestSetResp;
/// v1 alias of [`ManifestSetResp`].
pub type ManifestSetRespV1 = ManifestSetResp;

/// `GET /api/v2/update` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateLogV2 {
    /// One JSON object per entry.
    #[serde(rename = "updateLog")]
    pub update_log: Vec<String>,
}

/// A secret in `GET /api/v2/secrets` / `GET /secrets` (Go field names, no JSON tags).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct Secret {
    /// Manifest type spelling.
    pub Type: String,
    /// Size in bits.
    pub Size: u64,
    /// Shared between marbles.
    pub Shared: bool,
    /// Uploaded by a user.
    pub UserDefined: bool,
    /// Certificate DER.
    #[serde(with = "b64_opt")]
    pub Cert: Option<Vec<u8>>,
    /// Validity in days.
    pub ValidFor: u64,
    /// Private key / key bytes.
    #[serde(with = "b64_opt")]
    pub Private: Option<Vec<u8>>,
    /// Public key / key bytes.
    #[serde(with = "b64_opt")]
    pub Public: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret values.
        f.debug_struct("Secret")
            .field("Type", &self.Type)
            .field("Size", &self.Size)
            .field("Shared", &self.Shared)
            .field("UserDefined", &self.UserDefined)
            .finish_non_exhaustive()
    }
}

/// `GET /api/v2/secrets` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretsGetV2 {
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
}

/// An uploaded user secret (`UserSecret`): keys are matched case-insensitively, byte values
/// are base64 strings. `Cert` given as a JSON object (Go x509 template) is refused.
#[derive(Clone, Default, PartialEq, Serialize)]
#[allow(non_snake_case)]
pub struct UserSecret {
    /// Certificate DER.
    #[serde(with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub Cert: Option<Vec<u8>>,
    /// Private key DER.
    #[serde(with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub Private: Option<Vec<u8>>,
    /// Key bytes (symmetric-key, plain).
    #[serde(with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub Key: Option<Vec<u8>>,
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSecret")
            .field("Cert", &self.Cert.as_ref().map(Vec::len))
            .field("Private", &self.Private.is_some())
            .field("Key", &self.Key.is_some())
            .finish()
    }
}

impl<'de> Deserialize<'de> for UserSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        use serde::de::Error as _;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut out = UserSecret::default();
        for (k, v) in map {
            let slot = match k.to_ascii_lowercase().as_str() {
                "cert" => &mut out.Cert,
                "private" => &mut out.Private,
                "key" => &mut out.Key,
                _ => continue,
            };
            *slot = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(s.as_bytes())
                        .map_err(|e| D::Error::custom(format!("{k}: invalid base64: {e}")))?,
                ),
                serde_json::Value::Object(_) => {
                    return Err(D::Error::custom(format!(
                        "{k}: a certificate template object is not supported; upload the DER certificate as base64"
                    )))
                }
                other => {
                    return Err(D::Error::custom(format!(
                        "{k}: expected a base64 string, found {other}"
                    )))
                }
            };
        }
        Ok(out)
    }
}

/// `POST /api/v2/secrets` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretsSetReqV2 {
    /// Secrets by name.
    #[serde(alias = "Secrets", alias = "SECRETS")]
    pub secrets: BTreeMap<String, UserSecret>,
}

/// `POST /api/v2/update` response data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateRespV2 {
    /// Acknowledgements still needed.
    #[serde(rename = "missingAcknowledgments")]
    pub missing_acknowledgments: u64,
    /// Users that have not acknowledged yet (`null` when none).
    #[serde(rename = "missingUsers")]
    pub missing_users: Option<Vec<String>>,
    /// New recovery secrets; omitted when empty.
    #[serde(
        rename = "recoverySecrets",
        with = "b64_map_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub recovery_secrets: Option<BTreeMap<String, Vec<u8>>>,
}

/// `GET /api/v2/update-manifest` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateManifestGetV2 {
    /// The pending manifest.
    #[serde(with = "b64")]
    pub manifest: Vec<u8>,
    /// "N user(s) still need(s) to acknowledge the update manifest".
    pub message: String,
    /// Users that have not acknowledged yet.
    #[serde(rename = "missingUsers")]
    pub missing_users: Vec<String>,
}

/// `POST /api/v2/update-manifest` response data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateManifestAckRespV2 {
    /// Outcome text.
    pub message: String,
    /// Users that have not acknowledged yet.
    #[serde(rename = "missingUsers")]
    pub missing_users: Vec<String>,
    /// Acknowledgements still needed.
    #[serde(rename = "missingAcknowledgments")]
    pub missing_acknowledgments: u64,
    /// New recovery secrets; omitted when empty.
    #[serde(
        rename = "recoverySecrets",
        with = "b64_map_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub recovery_secrets: Option<BTreeMap<String, Vec<u8>>>,
}

/// `{"message": ...}` (update-cancel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageV2 {
    /// Text.
    pub message: String,
}

/// `POST /api/v2/sign-quote` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignQuoteReqV2 {
    /// Raw SGX quote or OE report.
    #[serde(
        rename = "sgxQuote",
        alias = "SGXQuote",
        alias = "sgxquote",
        with = "b64"
    )]
    pub sgx_quote: Vec<u8>,
}

/// `POST /api/v2/sign-quote` response data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignQuoteRespV2 {
    /// TCB status of the verified quote.
    #[serde(rename = "tcbStatus")]
    pub tcb_status: String,
    /// ASN.1 ECDSA root-key signature over SHA-256(base64(quote as sent) ‖ tcbStatus).
    #[serde(rename = "verificationSignature", with = "b64")]
    pub verification_signature: Vec<u8>,
}

/// `POST /api/v2/monotonic-counter` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonotonicCounterReqV2 {
    /// Counter name.
    #[serde(alias = "Name")]
    pub name: String,
    /// New value (kept only if greater).
    #[serde(alias = "Value")]
    pub value: u64,
}

/// `POST /api/v2/monotonic-counter` response data: the value before the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonotonicCounterRespV2 {
    /// Previous value.
    pub value: u64,
}

/// `POST /api/v2/recover` request (body limited to 20480 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoverReqV2 {
    /// The decrypted recovery secret (32 or 33 bytes), or its RSA-OAEP ciphertext for the
    /// Coordinator's ephemeral key.
    #[serde(
        rename = "recoverySecret",
        alias = "RecoverySecret",
        alias = "recoverysecret",
        with = "b64"
    )]
    pub recovery_secret: Vec<u8>,
    /// RSA PKCS#1 v1.5 SHA-256 signature over the decrypted secret by its recovery key.
    #[serde(
        rename = "recoverySecretSignature",
        alias = "RecoverySecretSignature",
        alias = "recoverysecretsignature",
        with = "b64"
    )]
    pub recovery_secret_signature: Vec<u8>,
}

/// `POST /api/v2/recover` response data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoverRespV2 {
    /// Secrets still needed (0 when recovered).
    pub remaining: u64,
    /// "Secret was processed successfully. ..." or "Recovery successful.".
    pub message: String,
}

/// `GET /api/v2/recover/public-key` response data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoverPublicKeyV2 {
    /// Always `"RSA"`.
    pub algorithm: String,
    /// PKIX DER of the ephemeral RSA-4096 key.
    #[serde(rename = "ephemeralPublicKey", with = "b64")]
    pub ephemeral_public_key: Vec<u8>,
}

/// Standard padded base64 for `Vec<u8>` (Go's `[]byte`).
pub mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as a base64 string.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    /// Deserialize from a base64 string (`null` → empty, as Go does).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Standard base64 for `Option<Vec<u8>>`: `None` ↔ `null`.
pub mod b64_opt {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as a base64 string or `null`.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize from a base64 string or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// `Option<BTreeMap<String, Vec<u8>>>` with base64 values; `None` ↔ `null`.
pub mod b64_map_opt {
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as `{name: base64}` or `null`.
    pub fn serialize<S: Serializer>(
        v: &Option<BTreeMap<String, Vec<u8>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(m) => s.collect_map(
                m.iter()
                    .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v))),
            ),
        }
    }

    /// Deserialize from `{name: base64}` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, D::Error> {
        let m: Option<BTreeMap<String, String>> = Option::deserialize(d)?;
        m.map(|m| {
            m.into_iter()
                .map(|(k, v)| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v.as_bytes())
                        .map(|v| (k, v))
                        .map_err(serde::de::Error::custom)
                })
                .collect()
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_and_update_keys() {
        let s = Secret {
            Type: "plain".into(),
            Size: 0,
            Shared: false,
            UserDefined: true,
            Cert: None,
            ValidFor: 0,
            Private: Some(b"a".to_vec()),
            Public: Some(b"a".to_vec()),
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"Type":"plain","Size":0,"Shared":false,"UserDefined":true,"Cert":null,"ValidFor":0,"Private":"YQ==","Public":"YQ=="}"#
        );
        let r: SecretsSetReqV2 = serde_json::from_str(
            r#"{"secrets":{"pw":{"key":"YQBi"},"c":{"Cert":"AQ==","PRIVATE":null}}}"#,
        )
        .unwrap();
        assert_eq!(r.secrets["pw"].Key.as_deref(), Some(&b"a\0b"[..]));
        assert_eq!(r.secrets["c"].Cert.as_deref(), Some(&[1u8][..]));
        assert!(serde_json::from_str::<SecretsSetReqV2>(
            r#"{"secrets":{"c":{"Cert":{"Subject":{}}}}}"#
        )
        .is_err());
        let u = UpdateRespV2 {
            missing_acknowledgments: 0,
            missing_users: None,
            recovery_secrets: None,
        };
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"missingAcknowledgments":0,"missingUsers":null}"#
        );
    }

    #[test]
    fn envelope_shapes() {
        let s = serde_json::to_string(&JSend::success(StatusV2 {
            code: 2,
            message: "m".into(),
        }))
        .unwrap();
        assert_eq!(s, r#"{"status":"success","data":{"code":2,"message":"m"}}"#);
        assert_eq!(
            error_body("boom"),
            "{\"status\":\"error\",\"data\":null,\"message\":\"boom\"}\n"
        );
        let n = serde_json::to_string(&JSend::<()>::success_null()).unwrap();
        assert_eq!(n, r#"{"status":"success","data":null}"#);
    }

    #[test]
    fn manifest_keys() {
        let g = ManifestGetV2 {
            manifest_signature_root_ecdsa: Some(vec![1]),
            manifest_fingerprint: "ab".into(),
            manifest: Some(b"{}".to_vec()),
        };
        let s = serde_json::to_string(&g).unwrap();
        assert_eq!(
            s,
            r#"{"manifestSignatureRootECDSA":"AQ==","manifestFingerprint":"ab","manifest":"e30="}"#
        );
        let r: ManifestSetReqV2 = serde_json::from_str(r#"{"Manifest":"e30=","x":1}"#).unwrap();
        assert_eq!(r.manifest, b"{}");
        let e = serde_json::to_string(&ManifestSetResp::default()).unwrap();
        assert_eq!(e, r#"{"RecoverySecrets":null}"#);
        let mut m = BTreeMap::new();
        m.insert("r".to_string(), vec![0xff]);
        let e = serde_json::to_string(&ManifestSetResp {
            RecoverySecrets: Some(m),
        })
        .unwrap();
        assert_eq!(e, r#"{"RecoverySecrets":{"r":"/w=="}}"#);
    }

    #[test]
    fn v1_keys() {
        let s = serde_json::to_string(&StatusV1 {
            StatusCode: 3,
            StatusMessage: "x".into(),
        })
        .unwrap();
        assert_eq!(s, r#"{"StatusCode":3,"StatusMessage":"x"}"#);
        let q = serde_json::to_string(&QuoteV1 {
            Cert: "c".into(),
            Quote: None,
        })
        .unwrap();
        assert_eq!(q, r#"{"Cert":"c","Quote":null}"#);
    }
}
