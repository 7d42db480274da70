//! `input_to_json` (the CLI's YAML-or-JSON manifest input) and `yaml_to_json` on arbitrary bytes.
//!
//! Properties: any output is JSON that `input_to_json` passes through unchanged (idempotence), and
//! `yaml_to_json` output is JSON too. The result is then handed to the manifest parser.
#![no_main]

use cairn_manifest::{input_to_json, yaml_to_json, ValidManifest};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = yaml_to_json(data) {
        assert!(
            serde_json::from_slice::<IgnoredAny>(&json).is_ok(),
            "yaml_to_json produced invalid JSON: {:?}",
            String::from_utf8_lossy(&json)
        );
    }
    let Ok(json) = input_to_json(data) else {
        return;
    };
    match input_to_json(&json) {
        Ok(again) => assert_eq!(again, json, "input_to_json is not idempotent"),
        Err(e) => panic!("input_to_json rejects its own output: {e}"),
    }
    let _ = ValidManifest::parse(&json);
});
