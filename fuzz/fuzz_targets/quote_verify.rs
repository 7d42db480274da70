//! Full DCAP verification (`cairn_attest::verify`) of arbitrary evidence against fixed, real
//! collateral (dcap-qvl's SGX test vector, Intel production root, pinned time), as the
//! Coordinator does for a marble's activation quote.
//!
//! Properties: no panic, and an accepted quote always yields the fields `parse_evidence` reads.
#![no_main]

use std::sync::OnceLock;

use cairn_attest::{parse_evidence, verify, Collateral, TrustRoot};
use libfuzzer_sys::fuzz_target;

/// Inside the collateral's validity window (same instant as cairn-attest's tests).
const NOW: u64 = 1_751_328_000;

fn collateral() -> &'static Collateral {
    static C: OnceLock<Collateral> = OnceLock::new();
    C.get_or_init(|| {
        let json = include_bytes!("../../testdata/attestation/dcap-qvl/sgx_quote_collateral.json");
        match serde_json::from_slice(json) {
            Ok(c) => c,
            Err(e) => panic!("fixture collateral does not decode: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = verify(data, collateral(), NOW, &TrustRoot::IntelProduction) {
        let f = match parse_evidence(data) {
            Ok(f) => f,
            Err(e) => panic!("verified evidence does not parse: {e}"),
        };
        assert_eq!(v.mr_enclave, f.mr_enclave);
        assert_eq!(v.report_data, f.report_data);
    }
});
