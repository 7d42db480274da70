//! Integration tests: fixtures, field cases, templates, updates, hostile input.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use cairn_manifest::template::{self, Context, SecretValue, TemplateData};
use cairn_manifest::update::{self, UpdateKind};
use cairn_manifest::{
    input_to_json, render_parameters, yaml_to_json, ErrorKind, ManifestErrors, SecretKind,
    TemplateError, ValidManifest, MAX_MANIFEST_BYTES,
};
use proptest::prelude::*;
use time::macros::datetime;

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/manifests")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(testdata(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn key(rel: &str) -> String {
    String::from_utf8(read(&format!("keys/{rel}"))).unwrap()
}

fn reject(json: &[u8]) -> ManifestErrors {
    match ValidManifest::parse(json) {
        Ok(_) => panic!("accepted: {}", String::from_utf8_lossy(json)),
        Err(e) => e,
    }
}

fn rendered(errors: &[cairn_manifest::Diagnostic]) -> Vec<String> {
    errors.iter().map(|d| d.to_string()).collect()
}

const U: &str = "6b2822ac2585040d4b9397675d54977a71ef292ab5b3c0a6acceca26074ae585";
const S: &str = "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a";

// ------------------------------------------------------------------ fixtures

#[test]
fn every_fixture_gets_its_verdict() {
    let cases: &[(&str, Option<ErrorKind>)] = &[
        ("valid-minimal.json", None),
        ("valid-basic.json", None),
        ("valid-templates.json", None),
        ("valid-users-roles.json", None),
        ("update-svn-bump.json", Some(ErrorKind::Check)),
        ("invalid-no-marbles.json", Some(ErrorKind::Check)),
        ("invalid-unknown-package.json", Some(ErrorKind::Check)),
        ("invalid-uniqueid-and-signerid.json", Some(ErrorKind::Check)),
        ("invalid-unknown-secret-type.json", Some(ErrorKind::Check)),
        ("invalid-user-unknown-role.json", Some(ErrorKind::Check)),
        (
            "invalid-template-undefined-secret.json",
            Some(ErrorKind::Template),
        ),
        ("samples/estore-manifest.json", None),
        ("samples/gramine-hello-manifest.json", None),
        ("samples/gramine-nginx-manifest.json", None),
        ("samples/gramine-redis-manifest.json", None),
        ("samples/helloc++-manifest.json", None),
        ("samples/helloworld-manifest.json", None),
        ("samples/occlum-hello-manifest.json", None),
        ("samples/sample-manifest.json", Some(ErrorKind::Check)),
        ("samples/manifest-template.json", Some(ErrorKind::Parse)),
    ];
    let listed: Vec<&str> = cases.iter().map(|(f, _)| *f).collect();
    for dir in ["", "samples"] {
        for entry in std::fs::read_dir(testdata(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                let rel = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                assert!(
                    listed.contains(&rel.as_str()),
                    "fixture {rel} has no expectation"
                );
            }
        }
    }
    for (file, expected) in cases {
        let bytes = read(file);
        match (
            ValidManifest::parse_at(&bytes, datetime!(2026-12-03 00:00 UTC)),
            expected,
        ) {
            (Ok(v), None) => {
                assert_eq!(v.raw(), bytes.as_slice());
                assert_eq!(v.fingerprint(), cairn_manifest::fingerprint_of(&bytes));
            }
            (Err(e), Some(kind)) => assert_eq!(e.kind, *kind, "{file}: {e}"),
            (Ok(_), Some(kind)) => panic!("{file}: accepted, expected {kind}"),
            (Err(e), None) => panic!("{file}: rejected: {e:?}"),
        }
    }
}

#[test]
fn invalid_fixtures_name_their_defect() {
    let cases = [
        ("invalid-no-marbles.json", "Marbles: no allowed marbles defined"),
        ("invalid-unknown-package.json", "Marbles.marble.Package: package \"ghost\" is not defined"),
        (
            "invalid-uniqueid-and-signerid.json",
            "Packages.pkg.UniqueID: package \"pkg\" sets UniqueID together with SignerID, ProductID, SecurityVersion; pin either UniqueID alone or SignerID, ProductID and SecurityVersion",
        ),
        (
            "invalid-unknown-secret-type.json",
            "Secrets.dsaCert.Type: unknown secret type \"cert-dsa\"; expected symmetric-key, cert-rsa, cert-ecdsa, cert-ed25519 or plain",
        ),
        ("invalid-user-unknown-role.json", "Users.alice.Roles[0]: role \"ghostRole\" is not defined"),
        (
            "invalid-template-undefined-secret.json",
            "Marbles.marble.Parameters.Files[\"/key\"]: marble \"marble\", file \"/key\": byte 7: secret \"missingKey\" does not exist",
        ),
        (
            "samples/manifest-template.json",
            "Roles[\"<RoleName>\"].ResourceNames: expected an array, found a string",
        ),
    ];
    for (file, expected) in cases {
        let e = reject(&read(file));
        assert_eq!(rendered(&e.errors), vec![expected.to_string()], "{file}");
    }
}

#[test]
fn svn_bump_as_initial_manifest() {
    let e = reject(&read("update-svn-bump.json"));
    assert_eq!(
        rendered(&e.errors),
        vec![
            "Packages.frontend.SignerID: package \"frontend\" has no UniqueID and is missing SignerID, ProductID",
            "Marbles: no allowed marbles defined",
        ]
    );
}

#[test]
fn sample_manifest_reports_every_error() {
    let e = reject(&read("samples/sample-manifest.json"));
    assert_eq!(e.kind, ErrorKind::Check);
    let all = rendered(&e.errors);
    for needle in [
        "Roles.secrets-admin.ResourceNames[0]: role \"secrets-admin\" grants WriteSecret on secret \"symmetricKeyShared\", which is not user-defined",
        "Users.Alice.Certificate: certificate is not PEM",
        "Marbles.backendFirst.Parameters.Env.API_KEY: marble \"backendFirst\", env \"API_KEY\": byte 3: raw is only available in Files; in Env use hex, base64, pem or string",
    ] {
        assert!(all.iter().any(|x| x == needle), "missing {needle} in {all:#?}");
    }
}

#[test]
fn valid_fixture_warnings() {
    let v = ValidManifest::parse(&read("valid-basic.json")).unwrap();
    assert_eq!(
        rendered(v.warnings()),
        vec!["Packages.tools.SignerID: package \"tools\" has no UniqueID and is missing SignerID, ProductID, SecurityVersion (allowed because the package is Debug)".to_string()]
    );
    let v = ValidManifest::parse(&read("samples/gramine-nginx-manifest.json")).unwrap();
    let w = rendered(v.warnings());
    assert!(
        w.contains(&"Secrets.ServerCert.Cert.Subject.DNSNames: unknown key".to_string()),
        "{w:?}"
    );
    assert!(w.iter().any(|x| x.starts_with("Packages.nginx.UniqueID: UniqueID \"<replace with mrenclave printed during the build>\" is not 64 hexadecimal characters")));
    let v = ValidManifest::parse_at(
        &read("valid-users-roles.json"),
        datetime!(2026-12-03 00:00 UTC),
    )
    .unwrap();
    assert!(v.warnings().is_empty(), "{:?}", v.warnings());
    let m = v.manifest();
    assert_eq!(m.packages["frontend"].product_id, Some(44));
    assert_eq!(m.secrets["apiKey"].kind, SecretKind::Plain);
    assert!(m.secrets["apiKey"].user_defined);
    assert_eq!(m.users["carol"].roles, Vec::<String>::new());
    let alice_der = pem::parse(key("alice.crt")).unwrap().into_contents();
    assert_eq!(m.users["alice"].certificate_der, alice_der);
}

#[test]
fn basic_model_values() {
    let v = ValidManifest::parse(&read("valid-basic.json")).unwrap();
    let m = v.manifest();
    assert_eq!(m.marbles["backend-first"].max_activations, 1);
    assert_eq!(
        m.marbles["backend-first"].parameters.files["/tmp/name.txt"].data,
        b"MarbleRun"
    );
    assert_eq!(
        m.marbles["backend-first"].parameters.argv,
        vec!["./backend", "--first"]
    );
    assert_eq!(m.secrets["sharedCert"].valid_for, Some(7));
    assert_eq!(
        m.secrets["sharedCert"].cert.subject.common_name,
        "shared.example"
    );
    assert_eq!(m.secrets["rsaCert"].cert.dns_names, vec!["backend.example"]);
    assert_eq!(m.secrets["ecdsaCert"].size, 384);
    assert!(m.tls["public"].incoming[0].disable_client_auth);
    assert_eq!(m.config.feature_gates.len(), 2);
    assert!(m.feature_enabled(cairn_manifest::FeatureGate::MonotonicCounter));
    assert_eq!(
        m.packages["backend"]
            .unique_id_bytes()
            .map(hex::encode)
            .as_deref(),
        Some(U)
    );
}

// ------------------------------------------------------------------ field cases

fn fr01(pkg: &str) -> String {
    format!(r#"{{"Packages":{{"p":{pkg}}},"Marbles":{{"m":{{"Package":"p"}}}}}}"#)
}

#[test]
fn fr01_package_identity_rules() {
    let e = reject(fr01(&format!(r#"{{"SignerID":"{S}","ProductID":1}}"#)).as_bytes());
    assert_eq!(e.kind, ErrorKind::Check);
    assert_eq!(
        rendered(&e.errors),
        vec!["Packages.p.SecurityVersion: package \"p\" has no UniqueID and is missing SecurityVersion"]
    );
    let e = reject(fr01(&format!(r#"{{"UniqueID":"{U}","SignerID":"{S}"}}"#)).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Packages.p.UniqueID: package \"p\" sets UniqueID together with SignerID; pin either UniqueID alone or SignerID, ProductID and SecurityVersion"]
    );
    let v = ValidManifest::parse(
        fr01(&format!(
            r#"{{"SignerID":"{S}","ProductID":1,"Debug":true}}"#
        ))
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        rendered(v.warnings()),
        vec!["Packages.p.SecurityVersion: package \"p\" has no UniqueID and is missing SecurityVersion (allowed because the package is Debug)"]
    );
    // An unreferenced bad package is rejected too.
    let json = format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{U}"}},"unused":{{"SignerID":"{S}"}}}},"Marbles":{{"m":{{"Package":"p"}}}}}}"#
    );
    let e = reject(json.as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Packages.unused.ProductID: package \"unused\" has no UniqueID and is missing ProductID, SecurityVersion"]
    );
    // Non-hex identities are errors outside Debug packages.
    let e = reject(fr01(r#"{"UniqueID":"zz"}"#).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Packages.p.UniqueID: UniqueID \"zz\" is not 64 hexadecimal characters"]
    );
}

fn fr04(params: &str) -> String {
    format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{U}"}}}},"Marbles":{{"m":{{"Package":"p","Parameters":{params}}}}},"Secrets":{{"k":{{"Type":"symmetric-key","Size":128}},"pw":{{"Type":"plain","UserDefined":true}}}}}}"#
    )
}

#[test]
fn fr04_template_dry_run() {
    let e = reject(fr04(r#"{"Env":{"A":"{{ hex .Secrets.nope }}"}}"#).as_bytes());
    assert_eq!(e.kind, ErrorKind::Template);
    assert_eq!(
        rendered(&e.errors),
        vec!["Marbles.m.Parameters.Env.A: marble \"m\", env \"A\": byte 7: secret \"nope\" does not exist"]
    );
    let e = reject(fr04(r#"{"Env":{"A":"{{ pem .Secrets.k }}"}}"#).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Marbles.m.Parameters.Env.A: marble \"m\", env \"A\": byte 3: pem is not valid for a symmetric-key secret; use hex, base64 or raw"]
    );
    let e = reject(fr04(r#"{"Env":{"A":"{{ raw .Secrets.k }}"}}"#).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Marbles.m.Parameters.Env.A: marble \"m\", env \"A\": byte 3: raw is only available in Files; in Env use hex, base64, pem or string"]
    );
    ValidManifest::parse(fr04(r#"{"Files":{"/k":"{{ raw .Secrets.k }}"}}"#).as_bytes()).unwrap();
    // Misspelt secret: suggestion.
    let e = reject(fr04(r#"{"Files":{"/k":"{{ raw .Secrets.kk }}"}}"#).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Marbles.m.Parameters.Files[\"/k\"]: marble \"m\", file \"/k\": byte 7: secret \"kk\" does not exist (did you mean \"k\"?)"]
    );
    // Every failing template is reported.
    let e = reject(
        fr04(r#"{"Env":{"A":"{{ if .Secrets.k }}","B":"{{ printf .Secrets.k }}"}}"#).as_bytes(),
    );
    assert_eq!(e.errors.len(), 2);
    assert!(e.errors[0].message.contains("\"if\" is not supported"));
    assert!(e.errors[1]
        .message
        .contains("Go builtin \"printf\" is not supported"));
}

#[test]
fn fr40_string_only_for_plain() {
    ValidManifest::parse(
        fr04(
            r#"{"Env":{"PW":"{{ string .Secrets.pw }}"},"Files":{"/pw":"{{ raw .Secrets.pw }}"}}"#,
        )
        .as_bytes(),
    )
    .unwrap();
    let e = reject(fr04(r#"{"Env":{"K":"{{ string .Secrets.k }}"}}"#).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Marbles.m.Parameters.Env.K: marble \"m\", env \"K\": byte 3: string accepts only secrets of type plain"]
    );
    let e = reject(fr04(r#"{"Files":{"/pw":"{{ string .Secrets.pw }}"}}"#).as_bytes());
    assert!(e.errors[0]
        .message
        .ends_with("string is only available in Env; in Files use raw"));
    // A NUL in a static Env value is refused; in a file it is fine.
    let e = reject(fr04(r#"{"Env":{"Z":"a\u0000b"}}"#).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Marbles.m.Parameters.Env.Z: marble \"m\", env \"Z\": environment value contains a NUL byte at output position 1"]
    );
    ValidManifest::parse(fr04(r#"{"Files":{"/z":"a\u0000b"}}"#).as_bytes()).unwrap();
    // Runtime: the uploaded value with a NUL fails the render, naming env PW.
    let v = ValidManifest::parse(fr04(r#"{"Env":{"PW":"{{ string .Secrets.pw }}"}}"#).as_bytes())
        .unwrap();
    let mut data = template::dummy_data(v.manifest());
    data.secrets.insert("pw".into(), plain(b"a\0b"));
    let e = render_parameters(v.manifest(), "m", &data).unwrap_err();
    assert!(
        matches!(&e, TemplateError::InParameter { what: "env", key, .. } if key == "PW"),
        "{e:?}"
    );
    assert!(e.to_string().contains("NUL"), "{e}");
}

fn plain(b: &[u8]) -> SecretValue {
    SecretValue {
        kind: SecretKind::Plain,
        cert: None,
        private: b.to_vec(),
        public: b.to_vec(),
    }
}

// ------------------------------------------------------------------ other rules

fn with_secret(def: &str) -> String {
    format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{U}"}}}},"Marbles":{{"m":{{"Package":"p"}}}},"Secrets":{{"s.x":{def}}}}}"#
    )
}

#[test]
fn impossible_secret_sizes() {
    for (def, msg) in [
        (r#"{"Type":"cert-rsa","Size":1024}"#, "Secrets[\"s.x\"].Size: cert-rsa size 1024 cannot be generated; use 2048, 3072, 4096 or 8192"),
        (r#"{"Type":"cert-ecdsa","Size":512}"#, "Secrets[\"s.x\"].Size: cert-ecdsa size 512 cannot be generated; use 224, 256, 384 or 521"),
        (r#"{"Type":"symmetric-key","Size":12}"#, "Secrets[\"s.x\"].Size: symmetric-key size 12 is not a positive multiple of 8 bits"),
        (r#"{"Type":"symmetric-key"}"#, "Secrets[\"s.x\"].Size: symmetric-key size 0 is not a positive multiple of 8 bits"),
        (r#"{"Type":"symmetric-key","Size":1099511627776,"Shared":true}"#, "Secrets[\"s.x\"].Size: symmetric-key size 1099511627776 exceeds 65280 bits (8160 bytes, the longest key HKDF-SHA256 derives per marble)"),
        (r#"{"Type":"symmetric-key","Size":65288}"#, "Secrets[\"s.x\"].Size: symmetric-key size 65288 exceeds 65280 bits (8160 bytes, the longest key HKDF-SHA256 derives per marble)"),
        (r#"{"Type":"cert-ed25519","Size":256}"#, "Secrets[\"s.x\"].Size: cert-ed25519 takes no size, found 256"),
        (r#"{"Type":"plain"}"#, "Secrets[\"s.x\"].UserDefined: a plain secret cannot be generated; it must be UserDefined"),
    ] {
        let e = reject(with_secret(def).as_bytes());
        assert_eq!(e.kind, ErrorKind::SecretGen, "{def}");
        assert_eq!(rendered(&e.errors), vec![msg.to_string()]);
    }
    for def in [
        r#"{"Type":"symmetric-key","Size":65280,"Shared":true}"#,
        r#"{"Type":"symmetric-key","Size":65280}"#,
        r#"{"Type":"cert-rsa","Size":3072}"#,
        r#"{"Type":"cert-ecdsa","Size":224}"#,
        r#"{"Type":"cert-ed25519"}"#,
        r#"{"Type":"plain","UserDefined":true}"#,
    ] {
        ValidManifest::parse(with_secret(def).as_bytes()).unwrap();
    }
    let e = reject(with_secret(r#"{"Type":"cert-ecdsa","Size":256,"ValidFor":3,"Cert":{"NotAfter":"2030-01-01T00:00:00Z"}}"#).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["Secrets[\"s.x\"].ValidFor: ValidFor and Cert.NotAfter cannot both be set"]
    );
    let v = ValidManifest::parse(with_secret(r#"{"Type":"cert-ecdsa","Size":256,"Cert":{"NotAfter":"2030-01-01T00:00:00Z","KeyUsage":33,"ExtKeyUsage":[1,2],"IPAddresses":["10.0.0.1","::1"],"IsCA":true,"Subject":{"Organization":["O"]}}}"#).as_bytes()).unwrap();
    let c = &v.manifest().secrets["s.x"].cert;
    assert_eq!(c.not_after, Some(datetime!(2030-01-01 00:00 UTC)));
    assert_eq!(c.key_usage, Some(33));
    assert_eq!(c.ext_key_usage, Some(vec![1, 2]));
    assert_eq!(c.ip_addresses.len(), 2);
    assert!(c.is_ca);
    assert_eq!(c.subject.organization, vec!["O"]);
}

fn with_users(users: &str, recovery: &str) -> String {
    format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{U}"}}}},"Marbles":{{"m":{{"Package":"p"}}}},"Users":{users},"RecoveryKeys":{recovery}}}"#
    )
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn user_certificate_expiry_warnings() {
    let json = with_users(
        &format!(
            r#"{{"dave":{{"Certificate":{}}},"alice":{{"Certificate":{}}}}}"#,
            js(&key("dave.crt")),
            js(&key("alice.crt"))
        ),
        "{}",
    );
    let v = ValidManifest::parse_at(json.as_bytes(), datetime!(2026-12-03 00:00 UTC)).unwrap();
    assert_eq!(
        rendered(v.warnings()),
        vec!["Users.dave.Certificate: certificate of user \"dave\" expired on 2020-01-02"]
    );
    let v = ValidManifest::parse_at(json.as_bytes(), datetime!(2124-12-15 00:00 UTC)).unwrap();
    assert_eq!(v.warnings().len(), 2);
    assert_eq!(
        v.warnings()[0].message,
        "certificate of user \"alice\" expires on 2125-01-01, within 30 days"
    );
    // Without a clock: no expiry warnings.
    assert!(ValidManifest::parse(json.as_bytes())
        .unwrap()
        .warnings()
        .is_empty());
    // Two users with one certificate.
    let json = with_users(
        &format!(
            r#"{{"a":{{"Certificate":{0}}},"b":{{"Certificate":{0}}}}}"#,
            js(&key("alice.crt"))
        ),
        "{}",
    );
    assert_eq!(
        rendered(&reject(json.as_bytes()).errors),
        vec!["Users.b.Certificate: users \"a\" and \"b\" have the same certificate"]
    );
}

#[test]
fn recovery_keys_must_be_pkix_rsa() {
    ValidManifest::parse(
        with_users("{}", &format!(r#"{{"r":{}}}"#, js(&key("recovery1.pub")))).as_bytes(),
    )
    .unwrap();
    let e = reject(
        with_users(
            "{}",
            &format!(r#"{{"r":{}}}"#, js(&key("recovery1.pkcs1.pub"))),
        )
        .as_bytes(),
    );
    assert_eq!(
        rendered(&e.errors),
        vec!["RecoveryKeys.r: recovery key is a PKCS#1 \"RSA PUBLIC KEY\"; use a PKIX \"PUBLIC KEY\" PEM"]
    );
    let e =
        reject(with_users("{}", &format!(r#"{{"r":{}}}"#, js(&key("ec-recovery.pub")))).as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec!["RecoveryKeys.r: recovery key must be an RSA key, found algorithm 1.2.840.10045.2.1"]
    );
}

#[test]
fn roles_tls_and_config_rules() {
    let json = format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{U}"}}}},"Marbles":{{"m":{{"Package":"p","TLS":["web","nope"]}}}},
        "Secrets":{{"k":{{"Type":"symmetric-key","Size":128}}}},
        "Roles":{{"admin":{{"ResourceType":"Secrets","ResourceNames":["k"],"Actions":["readsecret","Delete"]}},
                  "m":{{"ResourceType":"Manifest","ResourceNames":["x"],"Actions":["UpdateManifest"]}},
                  "bad":{{"ResourceType":"secrets","Actions":[]}}}},
        "TLS":{{"web":{{"Incoming":[{{"Cert":"k"}}],"Outgoing":[{{"Port":"1"}}]}}}},
        "Config":{{"SealMode":"Sideways","FeatureGates":["signquoteendpoint","Teleport"],"UpdateThreshold":1,"RecoveryThreshold":1}}}}"#
    );
    let e = reject(json.as_bytes());
    assert_eq!(e.kind, ErrorKind::Check);
    assert_eq!(
        rendered(&e.errors),
        vec![
            "Config.SealMode: unknown seal mode \"Sideways\"; expected ProductKey, UniqueKey or Disabled",
            "Config.FeatureGates[1]: unknown feature gate \"Teleport\"; expected SignQuoteEndpoint, MonotonicCounter or AzureHSMSealing",
            "Marbles.m.TLS[1]: TLS tag \"nope\" is not defined",
            "Roles.admin.Actions[1]: action \"Delete\" is not valid for resource type Secrets; expected ReadSecret or WriteSecret",
            "Roles.admin.ResourceNames[0]: role \"admin\" grants ReadSecret on secret \"k\", which is neither shared nor user-defined",
            "Roles.bad.ResourceType: unknown resource type \"secrets\"; expected Packages, Secrets or Manifest",
            "Roles.m.ResourceNames[0]: a Manifest role takes no resource names",
            "TLS.web.Incoming[0].Port: an Incoming entry needs a Port",
            "TLS.web.Incoming[0].Cert: secret \"k\" is a symmetric-key secret, not a certificate",
            "TLS.web.Incoming[0].DisableClientAuth: an Incoming entry with Cert requires DisableClientAuth: true",
            "TLS.web.Outgoing[0].Addr: an Outgoing entry needs an Addr",
            "Config.UpdateThreshold: UpdateThreshold 1 is higher than the number of users allowed to update the manifest (0)",
            "Config.RecoveryThreshold: RecoveryThreshold 1 is not allowed; use 0 (all keys) or at least 2",
        ]
    );
}

// ------------------------------------------------------------------ templates

#[test]
fn render_parameters_of_valid_templates() {
    let v = ValidManifest::parse(&read("valid-templates.json")).unwrap();
    let sym = vec![0x00, 0x10, 0xff, 0x41];
    let sv = |kind, cert: Option<&[u8]>, p: &[u8], q: &[u8]| SecretValue {
        kind,
        cert: cert.map(<[u8]>::to_vec),
        private: p.to_vec(),
        public: q.to_vec(),
    };
    let mut secrets = BTreeMap::new();
    secrets.insert(
        "symShared".to_string(),
        sv(SecretKind::SymmetricKey, None, &sym, &sym),
    );
    secrets.insert(
        "symUnique".to_string(),
        sv(SecretKind::SymmetricKey, None, &[1, 2], &[1, 2]),
    );
    secrets.insert(
        "certShared".to_string(),
        sv(
            SecretKind::CertEcdsa,
            Some(b"\x30\x01"),
            b"\x30\x02",
            b"\x30\x03",
        ),
    );
    secrets.insert("apiToken".to_string(), plain(b"tok"));
    let mut previous = secrets.clone();
    previous.insert(
        "symShared".to_string(),
        sv(SecretKind::SymmetricKey, None, &[7], &[7]),
    );
    let data = TemplateData {
        secrets,
        previous,
        marble_root_ca: b"R".to_vec(),
        marble_cert: b"L".to_vec(),
        marble_key: b"K".to_vec(),
        marble_public: b"P".to_vec(),
        coordinator_root: b"C".to_vec(),
        coordinator_intermediate: b"I".to_vec(),
    };
    let r = render_parameters(v.manifest(), "tpl", &data).unwrap();
    let f = |k: &str| r.files[k].clone();
    assert_eq!(f("/out/sym.raw"), sym);
    assert_eq!(f("/out/sym.hex"), b"0010ff41");
    assert_eq!(f("/out/sym.b64"), b"ABD/QQ==");
    assert_eq!(f("/out/sym-private-part.hex"), b"0010ff41");
    assert_eq!(f("/out/sym-previous.hex"), b"07");
    assert_eq!(f("/out/unique.hex"), b"0102");
    assert_eq!(f("/out/cert.der"), b"\x30\x01");
    assert_eq!(
        f("/out/cert.pem"),
        b"-----BEGIN CERTIFICATE-----\nMAE=\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(
        f("/out/cert-key.pem"),
        b"-----BEGIN PRIVATE KEY-----\nMAI=\n-----END PRIVATE KEY-----\n"
    );
    assert_eq!(
        f("/out/cert-pub.pem"),
        b"-----BEGIN PUBLIC KEY-----\nMAM=\n-----END PUBLIC KEY-----\n"
    );
    assert_eq!(f("/out/cert-bare.hex"), b"3003");
    assert_eq!(
        f("/out/root-ca.pem"),
        b"-----BEGIN CERTIFICATE-----\nUg==\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(
        f("/out/marble.key"),
        b"-----BEGIN PRIVATE KEY-----\nSw==\n-----END PRIVATE KEY-----\n"
    );
    assert_eq!(
        f("/out/coordinator-intermediate.pem"),
        b"-----BEGIN CERTIFICATE-----\nSQ==\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(f("/out/mixed.txt"), b"key=0010ff41;end");
    assert_eq!(f("/out/literal.txt"), b"{{ raw .Secrets.doesNotExist }}");
    assert_eq!(f("/out/from-hex.txt"), b"MarbleRun");
    assert_eq!(r.env["API_TOKEN"], b"tok");
    assert_eq!(r.env["PLAIN"], b"static-value");
    assert_eq!(r.argv, vec!["tpl", "--key", "{{ hex .Secrets.symShared }}"]);
    // A user-defined secret not uploaded yet fails at runtime, naming it.
    let mut missing = data.clone();
    missing.secrets.insert("apiToken".to_string(), plain(b""));
    let e = render_parameters(v.manifest(), "tpl", &missing).unwrap_err();
    assert_eq!(
        e.to_string(),
        "marble \"tpl\", env \"API_TOKEN\": byte 3: secret \"apiToken\" has not been uploaded yet (empty value)"
    );
    assert!(matches!(
        render_parameters(v.manifest(), "ghost", &data),
        Err(TemplateError::UnknownMarble(_))
    ));
}

#[test]
fn dummy_data_is_0x41() {
    let v = ValidManifest::parse(&read("valid-templates.json")).unwrap();
    let d = template::dummy_data(v.manifest());
    assert_eq!(d.secrets["symShared"].public, vec![0x41; 16]);
    assert!(d.secrets["certShared"]
        .cert
        .as_ref()
        .unwrap()
        .iter()
        .all(|b| *b == 0x41));
    assert!(d.secrets["symShared"].cert.is_none());
    assert_eq!(
        template::render(b"{{ hex .Secrets.symShared }}", &d, Context::Env).unwrap(),
        b"41414141414141414141414141414141"
    );
}

// ------------------------------------------------------------------ updates

#[test]
fn svn_bump_update() {
    let current = ValidManifest::parse(&read("valid-users-roles.json")).unwrap();
    let kind = update::classify(&read("update-svn-bump.json")).unwrap();
    let svns = BTreeMap::from([("frontend".to_string(), 5u64)]);
    assert_eq!(kind, UpdateKind::Package(svns.clone()));
    update::check_package_update(current.manifest(), &svns).unwrap();
    let applied = update::apply_package_update(current.manifest(), &svns);
    assert_eq!(applied.packages["frontend"].security_version, Some(5));
    // Equal is allowed, lower is not.
    update::check_package_update(
        current.manifest(),
        &BTreeMap::from([("frontend".to_string(), 3)]),
    )
    .unwrap();
    let e = update::check_package_update(
        current.manifest(),
        &BTreeMap::from([("frontend".to_string(), 2)]),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "Packages.frontend.SecurityVersion: SecurityVersion 2 is lower than the current 3; downgrades are not allowed");
    let e = update::check_package_update(
        current.manifest(),
        &BTreeMap::from([("ghost".to_string(), 9)]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Packages.ghost: package \"ghost\" is not defined in the current manifest"
    );
    assert!(update::check_package_update(current.manifest(), &BTreeMap::new()).is_err());
    // A whole manifest is a full update.
    assert_eq!(
        update::classify(&read("valid-users-roles.json")).unwrap(),
        UpdateKind::Full
    );
    let e = update::classify(br#"{"Packages":{"frontend":{"SecurityVersion":5,"UniqueID":"aa"}}}"#)
        .unwrap_err();
    assert!(e.errors[0]
        .message
        .starts_with("update manifest contains unupdatable values"));
}

/// SGX carries 16-bit ProductID and SecurityVersion: larger values could never match and, in a
/// package update, would lock the package out for good (no downgrades).
#[test]
fn product_id_and_security_version_fit_16_bits() {
    let m = format!(
        r#"{{"Packages":{{"p":{{"SignerID":"{U}","ProductID":70000,"SecurityVersion":65536}}}},"Marbles":{{"m":{{"Package":"p"}}}}}}"#
    );
    let e = reject(m.as_bytes());
    assert_eq!(
        rendered(&e.errors),
        vec![
            "Packages.p.ProductID: ProductID 70000 exceeds 65535: SGX enclaves carry a 16-bit value, so no enclave could match".to_string(),
            "Packages.p.SecurityVersion: SecurityVersion 65536 exceeds 65535: SGX enclaves carry a 16-bit value, so no enclave could match".to_string(),
        ]
    );
    let ok = format!(
        r#"{{"Packages":{{"p":{{"SignerID":"{U}","ProductID":65535,"SecurityVersion":65535}}}},"Marbles":{{"m":{{"Package":"p"}}}}}}"#
    );
    ValidManifest::parse(ok.as_bytes()).unwrap();
    let e =
        update::classify(br#"{"Packages":{"frontend":{"SecurityVersion":18446744073709551615}}}"#)
            .unwrap_err();
    assert_eq!(e.errors[0].path, "Packages.frontend.SecurityVersion");
    assert!(
        e.errors[0]
            .message
            .starts_with("SecurityVersion 18446744073709551615 exceeds 65535"),
        "{e}"
    );
}

// ------------------------------------------------------------------ hostile input

#[test]
fn bad_input_is_a_clear_parse_error() {
    let e = reject(b"not json");
    assert_eq!(e.kind, ErrorKind::Parse);
    assert!(
        e.errors[0]
            .message
            .starts_with("manifest is not valid JSON"),
        "{e}"
    );
    let e = reject(b"[1,2]");
    assert_eq!(
        e.errors[0].message,
        "a manifest must be a JSON object, found an array"
    );
    let e = reject(br#"{"Marbles":{"m":{"Package":1}},"Packages":[]}"#);
    assert_eq!(
        rendered(&e.errors),
        vec![
            "Packages: expected an object, found an array",
            "Marbles.m.Package: expected a string, found a number"
        ]
    );
    let e = reject(br#"{"Packages":{"p":{"ProductID":1.5}}}"#);
    assert_eq!(rendered(&e.errors), vec!["Packages.p.ProductID: expected an unsigned integer up to 18446744073709551615, found 1.5"]);

    let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
    let e = reject(&big);
    assert!(
        e.errors[0].message.contains("limit is 16777216 bytes"),
        "{e}"
    );
    assert!(input_to_json(&big).is_err());

    let deep = vec![b'['; 100_000];
    let e = reject(&deep);
    assert_eq!(
        e.errors[0].message,
        "manifest is nested deeper than 64 levels"
    );
    assert_eq!(
        input_to_json(&deep).unwrap_err().errors[0].message,
        "manifest is nested deeper than 64 levels"
    );
    let mut deep_obj = String::new();
    for _ in 0..65 {
        deep_obj.push_str("{\"a\":");
    }
    deep_obj.push('1');
    deep_obj.push_str(&"}".repeat(65));
    assert_eq!(reject(deep_obj.as_bytes()).kind, ErrorKind::Parse);
    // Deep YAML block nesting.
    let mut yaml = String::new();
    for i in 0..100 {
        yaml.push_str(&" ".repeat(i));
        yaml.push_str("a:\n");
    }
    assert_eq!(
        yaml_to_json(yaml.as_bytes()).unwrap_err().errors[0].message,
        "manifest is nested deeper than 64 levels"
    );
    // Alias expansion bomb: refused, not expanded.
    let mut bomb = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for i in 1..10 {
        let prev = (b'a' + i - 1) as char;
        let cur = (b'a' + i) as char;
        bomb.push_str(&format!("{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    let e = input_to_json(bomb.as_bytes()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Parse);
}

#[test]
fn yaml_manifest_fingerprint() {
    let json = read("valid-minimal.json");
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let yaml = serde_norway::to_string(&value).unwrap();
    let converted = input_to_json(yaml.as_bytes()).unwrap();
    // Same value, Go-style compact sorted JSON.
    let back: serde_json::Value = serde_json::from_slice(&converted).unwrap();
    assert_eq!(back, value);
    assert!(!converted.contains(&b'\n') && !converted.contains(&b' '));
    let v = ValidManifest::parse(&converted).unwrap();
    assert_eq!(v.fingerprint(), cairn_manifest::fingerprint_of(&converted));
    // JSON stays byte for byte.
    assert_eq!(input_to_json(&json).unwrap(), json);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ValidManifest::parse(&bytes);
        let _ = input_to_json(&bytes);
        let _ = update::classify(&bytes);
    }

    #[test]
    fn arbitrary_json_shapes_never_panic(s in r#"[{}\[\]":,a-zA-Z0-9 .\-]{0,200}"#) {
        let _ = ValidManifest::parse(s.as_bytes());
    }

    #[test]
    fn arbitrary_templates_never_panic(s in r#"[{}()|. \-/*a-zA-Z0-9$"\n]{0,120}"#, raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let m = ValidManifest::parse(&read("valid-templates.json")).unwrap();
        let data = template::dummy_data(m.manifest());
        for ctx in [Context::File, Context::Env] {
            let _ = template::render(s.as_bytes(), &data, ctx);
            let _ = template::render(&raw, &data, ctx);
            let t = format!("{{{{ {s} }}}}");
            let _ = template::render(t.as_bytes(), &data, ctx);
        }
    }
}
