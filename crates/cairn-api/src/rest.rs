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
