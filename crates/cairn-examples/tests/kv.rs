//! The example marbles talk over mutual TLS with certificates of one deployment, and refuse
//! each other across deployments (as after a SecurityVersion update).
#![allow(clippy::unwrap_used)]

#[path = "../../cairn-marble/tests/support/pki.rs"]
mod pki;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(env: &HashMap<String, String>) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-example-kv-server"))
        .arg("127.0.0.1:0")
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("kv-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr }
}

fn client(env: &HashMap<String, String>, addr: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-example-kv-client"))
        .args([addr, "k1", "v 1"])
        .envs(env)
        .output()
        .unwrap()
}

#[test]
fn same_deployment_round_trip_and_other_deployment_refused() {
    let d = pki::Deployment::new();
    let server = start_server(&d.marble_env("server"));
    // "localhost" resolves through the SANs of the marble leaf
    let out = client(&d.marble_env("client"), &server.addr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("GET k1 -> VALUE v 1"), "{stdout}");

    let other = pki::Deployment::new();
    let out = client(&other.marble_env("client"), &server.addr);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("marble root"), "{stderr}");
}

#[test]
fn missing_marble_env_is_explained() {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn-example-kv-client"))
        .arg("127.0.0.1:1")
        .env_remove("MARBLE_PREDEFINED_ROOT_CA")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("MARBLE_PREDEFINED_ROOT_CA") && stderr.contains("cairn-premain"),
        "{stderr}"
    );
}

#[test]
fn example_manifests_are_valid_without_warnings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for m in ["kv/manifest.json", "nginx/manifest.json"] {
        let bytes = std::fs::read(root.join(m)).unwrap();
        match cairn_manifest::ValidManifest::parse(&bytes) {
            Ok(v) => assert!(
                v.warnings().is_empty(),
                "{m}: {:?}",
                v.warnings()
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
            ),
            Err(e) => panic!(
                "{m}: {:?}",
                e.errors.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            ),
        }
        // FR-37: every Argv element is one argument
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for (name, marble) in v["Marbles"].as_object().unwrap() {
            if let Some(argv) = marble["Parameters"]["Argv"].as_array() {
                assert!(!argv[0].as_str().unwrap().contains(' '), "{m}: {name}");
            }
        }
    }
}
