//! The template evaluator (`Parameters.Files` / `Parameters.Env`) on arbitrary template text.
//!
//! Input layout: byte 0 selects the context (bit 0: File/Env) and the data set (bits 1-2: full
//! values, dummy data of a declared manifest, nothing uploaded yet, empty); the rest is the
//! template source.
//! Properties: Env output never contains NUL, error offsets lie inside the source, and text
//! without `{{` renders verbatim.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cairn_manifest::template::{self, Context, SecretValue, TemplateData};
use cairn_manifest::{SecretKind, ValidManifest};
use libfuzzer_sys::fuzz_target;

/// A manifest declaring one secret of every kind; its dummy data is what the dry run sees.
const MANIFEST: &str = r#"{
 "Packages": {"pkg": {"UniqueID": "6b2822ac2585040d4b9397675d54977a71ef292ab5b3c0a6acceca26074ae585"}},
 "Marbles": {"m": {"Package": "pkg"}},
 "Secrets": {
  "symShared": {"Type": "symmetric-key", "Size": 128, "Shared": true},
  "symUnique": {"Type": "symmetric-key", "Size": 256},
  "certShared": {"Type": "cert-ecdsa", "Size": 256, "Shared": true, "ValidFor": 30,
                 "Cert": {"Subject": {"CommonName": "tpl.example"}}},
  "certRsa": {"Type": "cert-rsa", "Size": 2048},
  "certEd": {"Type": "cert-ed25519"},
  "apiToken": {"Type": "plain", "UserDefined": true}
 }
}"#;

struct Sets {
    full: TemplateData,
    dummy: TemplateData,
    not_uploaded: TemplateData,
    empty: TemplateData,
}

fn sets() -> &'static Sets {
    static SETS: OnceLock<Sets> = OnceLock::new();
    SETS.get_or_init(|| {
        let vm = match ValidManifest::parse(MANIFEST.as_bytes()) {
            Ok(vm) => vm,
            Err(e) => panic!("fuzz fixture manifest is invalid: {e}"),
        };
        let dummy = template::dummy_data(vm.manifest());
        // Distinct, non-trivial bytes per field (including NUL and high bytes) so that hex/base64/
        // pem/string see something other than 0x41.
        let bytes = |seed: u8, len: usize| -> Vec<u8> {
            (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
        };
        let mut secrets = BTreeMap::new();
        for (name, kind, seed) in [
            ("symShared", SecretKind::SymmetricKey, 1u8),
            ("symUnique", SecretKind::SymmetricKey, 2),
            ("certShared", SecretKind::CertEcdsa, 3),
            ("certRsa", SecretKind::CertRsa, 4),
            ("certEd", SecretKind::CertEd25519, 5),
            ("apiToken", SecretKind::Plain, 6),
        ] {
            secrets.insert(
                name.to_string(),
                SecretValue {
                    kind,
                    cert: kind.is_cert().then(|| bytes(seed ^ 0x80, 300)),
                    private: bytes(seed, 48),
                    public: if kind == SecretKind::Plain {
                        b"plain-token".to_vec()
                    } else {
                        bytes(seed ^ 0x40, 65)
                    },
                },
            );
        }
        let full = TemplateData {
            previous: secrets.clone(),
            secrets,
            marble_root_ca: bytes(10, 200),
            marble_cert: bytes(11, 200),
            marble_key: bytes(12, 100),
            marble_public: bytes(13, 91),
            coordinator_root: bytes(14, 200),
            coordinator_intermediate: bytes(15, 200),
        };
        let mut not_uploaded = dummy.clone();
        for v in not_uploaded.secrets.values_mut().chain(not_uploaded.previous.values_mut()) {
            if v.kind == SecretKind::Plain {
                v.private.clear();
                v.public.clear();
            }
        }
        Sets { full, dummy, not_uploaded, empty: TemplateData::default() }
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, src)) = input.split_first() else {
        return;
    };
    let ctx = if sel & 1 == 0 { Context::File } else { Context::Env };
    let s = sets();
    let data = match (sel >> 1) & 3 {
        0 => &s.full,
        1 => &s.dummy,
        2 => &s.not_uploaded,
        _ => &s.empty,
    };
    match template::render(src, data, ctx) {
        Ok(out) => {
            if ctx == Context::Env {
                assert!(!out.contains(&0), "Env output contains NUL");
            }
            if !src.windows(2).any(|w| w == b"{{") {
                assert_eq!(out, src, "text without actions must render verbatim");
            }
        }
        Err(e) => {
            if let Some(off) = e.offset() {
                assert!(off <= src.len(), "error offset {off} beyond source length {}: {e}", src.len());
            }
            // Display must not panic either.
            let _ = e.to_string();
        }
    }
});
