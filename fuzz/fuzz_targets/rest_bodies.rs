//! REST bodies as the Coordinator and the CLI decode them: the `POST /api/v2/manifest` request
//! (JSON, base64 manifest, then the manifest parser as the server runs it), the JSend response
//! envelopes the CLI decodes, and the URL-safe base64 `nonce` query value.
//!
//! Every input is tried against every type. Property: whatever decodes re-encodes and decodes to
//! the same value.
#![no_main]

use base64::Engine as _;
use cairn_api::{
    JSend, ManifestGetV1, ManifestGetV2, ManifestSetReqV2, ManifestSetResp, QuoteV1, QuoteV2,
    StatusV1, StatusV2, UpdateLogV2,
};
use cairn_manifest::ValidManifest;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn roundtrip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v: T = serde_json::from_slice(data).ok()?;
    let json = match serde_json::to_vec(&v) {
        Ok(j) => j,
        Err(e) => panic!("cannot re-serialise {v:?}: {e}"),
    };
    match serde_json::from_slice::<T>(&json) {
        Ok(again) => assert_eq!(again, v, "round trip changed the value"),
        Err(e) => panic!("cannot decode own output {:?}: {e}", String::from_utf8_lossy(&json)),
    }
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    // Server side: request bodies.
    if let Some(req) = roundtrip::<ManifestSetReqV2>(data) {
        let _ = ValidManifest::parse(&req.manifest);
    }
    // Client side: response envelopes from a possibly hostile Coordinator.
    let _ = roundtrip::<JSend<StatusV2>>(data);
    let _ = roundtrip::<JSend<StatusV1>>(data);
    let _ = roundtrip::<JSend<QuoteV2>>(data);
    let _ = roundtrip::<JSend<QuoteV1>>(data);
    let _ = roundtrip::<JSend<ManifestGetV2>>(data);
    let _ = roundtrip::<JSend<ManifestGetV1>>(data);
    let _ = roundtrip::<JSend<ManifestSetResp>>(data);
    let _ = roundtrip::<JSend<UpdateLogV2>>(data);
    let _ = roundtrip::<JSend<String>>(data);
    let _ = serde_json::from_slice::<JSend<serde_json::Value>>(data);
    // `GET /api/v2/quote?nonce=...`: URL-safe base64 with padding.
    let url_safe = base64::engine::general_purpose::URL_SAFE;
    if let Ok(nonce) = url_safe.decode(data) {
        assert_eq!(url_safe.encode(&nonce).as_bytes(), data, "non-canonical nonce accepted");
    }
});
