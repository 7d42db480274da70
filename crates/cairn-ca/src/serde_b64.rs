//! serde helpers: byte strings as standard base64, key types as their `p256`/`p384` name.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cairn_crypto::{KeyType, Zeroizing};
use serde::{de, Deserialize, Deserializer, Serializer};

pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s.as_bytes()).map_err(de::Error::custom)
    }
}

pub(crate) mod secret {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &Zeroizing<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let enc = Zeroizing::new(STANDARD.encode(v.as_slice()));
        s.serialize_str(&enc)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        // The error names no bytes of the key.
        STANDARD
            .decode(s.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| de::Error::custom("private key is not valid base64"))
    }
}

pub(crate) mod key_type {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &KeyType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyType, D::Error> {
        let s = String::deserialize(d)?;
        KeyType::parse(&s).ok_or_else(|| de::Error::custom(format!("unknown key type {s:?}")))
    }
}
