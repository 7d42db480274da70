//! Quote/evidence parsing on arbitrary bytes: raw SGX v3, OE-wrapped (MarbleRun's `/quote`
//! format), and TDX via `parse_evidence`.
//!
//! Properties: `oe::unwrap(oe::wrap(x)) == x`, and wrapping an unwrapped input does not change
//! what the parsers return.
#![no_main]

use cairn_attest::{oe, parse_evidence, SgxQuote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sgx = SgxQuote::parse(data);
    let any = parse_evidence(data);
    if let Ok(q) = &sgx {
        assert!(q.cert_data.len() <= data.len());
    }
    let _ = oe::unwrap(data);

    let wrapped = oe::wrap(data);
    assert!(oe::is_wrapped(&wrapped));
    match oe::unwrap(&wrapped) {
        Ok(inner) => assert_eq!(inner, data, "unwrap(wrap(x)) != x"),
        Err(e) => panic!("unwrap rejects wrap's output: {e}"),
    }
    if !oe::is_wrapped(data) {
        assert_eq!(
            format!("{:?}", SgxQuote::parse(&wrapped)),
            format!("{sgx:?}"),
            "SgxQuote::parse differs for the OE-wrapped form"
        );
        assert_eq!(
            format!("{:?}", parse_evidence(&wrapped)),
            format!("{any:?}"),
            "parse_evidence differs for the OE-wrapped form"
        );
    }
});
