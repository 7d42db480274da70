//! `cairn manifest check` / `cairn manifest signature` against the fixtures.

use std::path::PathBuf;

use assert_cmd::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/manifests")
        .join(rel)
}

fn cairn() -> Command {
    Command::cargo_bin("cairn").unwrap()
}

struct Run {
    code: i32,
    stdout: String,
}

fn run(args: &[&str]) -> Run {
    let out = cairn().args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(cairn_manifest::fingerprint_of(bytes))
}

const VERDICTS: &[(&str, Option<&str>)] = &[
    ("valid-minimal.json", None),
    ("valid-basic.json", None),
    ("valid-templates.json", None),
    ("valid-users-roles.json", None),
    ("update-svn-bump.json", Some("E_CHECK")),
    ("invalid-no-marbles.json", Some("E_CHECK")),
    ("invalid-unknown-package.json", Some("E_CHECK")),
    ("invalid-uniqueid-and-signerid.json", Some("E_CHECK")),
    ("invalid-unknown-secret-type.json", Some("E_CHECK")),
    ("invalid-user-unknown-role.json", Some("E_CHECK")),
    ("invalid-template-undefined-secret.json", Some("E_TEMPLATE")),
    ("samples/estore-manifest.json", None),
    ("samples/gramine-hello-manifest.json", None),
    ("samples/gramine-nginx-manifest.json", None),
    ("samples/gramine-redis-manifest.json", None),
    ("samples/helloc++-manifest.json", None),
    ("samples/helloworld-manifest.json", None),
    ("samples/occlum-hello-manifest.json", None),
    ("samples/sample-manifest.json", Some("E_CHECK")),
    ("samples/manifest-template.json", Some("E_PARSE")),
];

#[test]
fn check_gives_every_fixture_its_verdict() {
    for (file, kind) in VERDICTS {
        let path = fixture(file);
        let p = path.to_str().unwrap();
        let bytes = std::fs::read(&path).unwrap();

        let r = run(&["manifest", "check", p, "--json"]);
        assert_eq!(
            r.code,
            if kind.is_some() { 1 } else { 0 },
            "{file}: {}",
            r.stdout
        );
        assert_eq!(r.stdout.lines().count(), 1, "{file}: one JSON object");
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["valid", "fingerprint", "errors", "warnings"],
            "{file}"
        );
        assert_eq!(v["valid"], kind.is_none(), "{file}");
        assert_eq!(v["fingerprint"], sha256_hex(&bytes), "{file}");
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.is_empty(), kind.is_none(), "{file}");
        for e in errors {
            assert!(e["path"].is_string() && e["message"].as_str().is_some_and(|m| !m.is_empty()));
        }

        let r = run(&["manifest", "check", p]);
        assert!(
            r.stdout
                .starts_with(&format!("fingerprint: {}\n", sha256_hex(&bytes))),
            "{file}"
        );
        match kind {
            None => assert!(
                r.stdout.ends_with("manifest is valid\n"),
                "{file}: {}",
                r.stdout
            ),
            Some(k) => assert!(
                r.stdout.contains(&format!("manifest is invalid ({k}, ")),
                "{file}: {}",
                r.stdout
            ),
        }
    }
}

#[test]
fn check_reports_paths_and_messages() {
    let r = run(&[
        "manifest",
        "check",
        fixture("invalid-unknown-package.json").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["errors"],
        serde_json::json!([{"path": "Marbles.marble.Package", "message": "package \"ghost\" is not defined"}])
    );
    let r = run(&[
        "manifest",
        "check",
        fixture("invalid-template-undefined-secret.json")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        r.stdout.contains("error: Marbles.marble.Parameters.Files[\"/key\"]: marble \"marble\", file \"/key\": byte 7: secret \"missingKey\" does not exist\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn strict_turns_warnings_into_failure() {
    let p = fixture("valid-basic.json");
    let p = p.to_str().unwrap();
    let r = run(&["manifest", "check", p, "--json"]);
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["warnings"][0]["path"], "Packages.tools.SignerID");
    let r = run(&["manifest", "check", p, "--strict", "--json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], serde_json::json!([]));
    // No warnings: --strict passes.
    let r = run(&[
        "manifest",
        "check",
        fixture("valid-minimal.json").to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn unreadable_file_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let out = cairn()
        .args(["manifest", "check", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let out = cairn()
        .args(["manifest", "signature", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A directory is unreadable as a file too.
    let out = cairn()
        .args(["manifest", "check", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn not_json_or_yaml_and_hostile_input_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text.txt",
            b"just some text".to_vec(),
            "a manifest must be a JSON object, found a string",
        ),
        (
            "broken.yaml",
            b"a: [1, 2\nb: {".to_vec(),
            "manifest is neither JSON nor valid YAML",
        ),
        (
            "deep.json",
            vec![b'['; 100_000],
            "manifest is nested deeper than 64 levels",
        ),
        (
            "big.json",
            vec![b' '; (16 << 20) + 1],
            "the limit is 16777216 bytes",
        ),
        (
            "types.json",
            br#"{"Marbles":{"m":{"Package":7}}}"#.to_vec(),
            "Marbles.m.Package: expected a string, found a number",
        ),
    ];
    for (name, body, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &body).unwrap();
        let r = run(&["manifest", "check", p.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}: {}", r.stdout);
        assert!(r.stdout.contains(needle), "{name}: {}", r.stdout);
        assert!(
            r.stdout.contains("manifest is invalid (E_PARSE, 1 error)"),
            "{name}: {}",
            r.stdout
        );
    }
}

#[test]
fn yaml_manifest_is_converted_and_fingerprinted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.yaml");
    let yaml = "Packages:\n  pkg:\n    UniqueID: 6b2822ac2585040d4b9397675d54977a71ef292ab5b3c0a6acceca26074ae585\nMarbles:\n  marble:\n    Package: pkg\n    Parameters:\n      Env:\n        A: \"<x>\"\n";
    std::fs::write(&p, yaml).unwrap();
    let json = r#"{"Marbles":{"marble":{"Package":"pkg","Parameters":{"Env":{"A":"\u003cx\u003e"}}}},"Packages":{"pkg":{"UniqueID":"6b2822ac2585040d4b9397675d54977a71ef292ab5b3c0a6acceca26074ae585"}}}"#;
    let fp = sha256_hex(json.as_bytes());
    let r = run(&["manifest", "check", p.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["fingerprint"], fp);
    let r = run(&["manifest", "signature", p.to_str().unwrap()]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, format!("{fp}\n"));
}

#[test]
fn signature_of_json_is_sha256_of_the_bytes() {
    let p = fixture("valid-basic.json");
    let bytes = std::fs::read(&p).unwrap();
    let r = run(&["manifest", "signature", p.to_str().unwrap()]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, format!("{}\n", sha256_hex(&bytes)));
}
