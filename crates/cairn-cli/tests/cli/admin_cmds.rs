//! `cairn secret set|get`, `cairn manifest update ...` and `cairn manifest log` against the real
//! `cairn-coordinator` (simulation, loopback, ports chosen at run time) with the user keys of
//! `testdata/manifests/keys/`.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use base64::Engine;
use cairn_e2e::Coordinator;
use serde_json::{json, Value};

fn testdata(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/manifests")
        .join(p)
}

fn key_file(name: &str) -> String {
    testdata(&format!("keys/{name}")).display().to_string()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// A Coordinator with a manifest set through the CLI, and a config dir holding its cached root.
struct Deployment {
    coordinator: Coordinator,
    addr: String,
    cfg: PathBuf,
    dir: tempfile::TempDir,
}

impl Deployment {
    fn start(manifest: &[u8]) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = Coordinator::start(&dir.path().join("seal"), &[]).unwrap();
        let d = Deployment {
            addr: coordinator.client_addr.clone(),
            cfg: dir.path().join("config"),
            coordinator,
            dir,
        };
        let path = d.write("manifest.json", manifest);
        let o = d
            .cairn()
            .args(["manifest", "set", &path, &d.addr])
            .args(d.attest_flags())
            .output()
            .unwrap();
        d.check(&o, 0);
        d
    }

    /// Flags that attest the Coordinator (instead of pinning the cached root).
    fn attest_flags(&self) -> Vec<String> {
        let uid = cairn_e2e::measure(&cairn_e2e::bin("cairn-coordinator").unwrap()).unwrap();
        vec![
            "--simulation-root".into(),
            self.coordinator.sim_root().display().to_string(),
            "--unique-id".into(),
            uid,
        ]
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    fn cairn(&self) -> Command {
        let mut c = Command::cargo_bin("cairn").unwrap();
        c.env("XDG_CONFIG_HOME", &self.cfg)
            .env_remove("HOME")
            .current_dir(self.dir.path());
        c
    }

    /// `cairn ARGS --cert USER.crt --key USER.key`.
    fn as_user(&self, user: &str, args: &[&str]) -> Output {
        self.cairn()
            .args(args)
            .args(["--cert", &key_file(&format!("{user}.crt"))])
            .args(["--key", &key_file(&format!("{user}.key"))])
            .output()
            .unwrap()
    }

    /// Asserts the exit code, showing the command's and the Coordinator's output otherwise.
    fn check(&self, o: &Output, code: i32) {
        assert_eq!(
            o.status.code(),
            Some(code),
            "{}\n--- coordinator\n{}",
            show(o),
            self.coordinator.proc.lines.text()
        );
    }

    /// The update log without the time stamps (checked to be present separately).
    fn log_entries(&self) -> Vec<Value> {
        let o = self
            .cairn()
            .args(["manifest", "log", &self.addr])
            .output()
            .unwrap();
        self.check(&o, 0);
        stdout(&o)
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                let t = v.as_object_mut().unwrap().remove("time").unwrap();
                assert!(t.as_str().unwrap().starts_with("20"), "{l}");
                v
            })
            .collect()
    }
}

fn users_roles() -> Vec<u8> {
    std::fs::read(testdata("valid-users-roles.json")).unwrap()
}

/// valid-users-roles.json plus a role that lets alice and bob update the whole manifest.
fn with_manifest_updaters() -> Value {
    let mut m: Value = serde_json::from_slice(&users_roles()).unwrap();
    m["Roles"]["updateManifest"] = json!({
        "ResourceType": "Manifest",
        "ResourceNames": [],
        "Actions": ["UpdateManifest"]
    });
    for u in ["alice", "bob"] {
        m["Users"][u]["Roles"]
            .as_array_mut()
            .unwrap()
            .push("updateManifest".into());
    }
    m
}

const UNAUTHORIZED: &str =
    "unauthorized user: client certificate did not match any MarbleRun users";

#[test]
fn admin_commands_have_help_with_an_example() {
    for args in [
        &["secret", "set", "--help"][..],
        &["secret", "get", "--help"],
        &["manifest", "update", "apply", "--help"],
        &["manifest", "update", "acknowledge", "--help"],
        &["manifest", "update", "cancel", "--help"],
        &["manifest", "update", "get", "--help"],
        &["manifest", "log", "--help"],
    ] {
        let o = Command::cargo_bin("cairn")
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", show(&o));
        let s = stdout(&o);
        assert!(s.contains("Example"), "{args:?}: {s}");
        assert!(s.contains("--insecure"), "{args:?}: {s}");
        assert!(s.contains("--simulation-root"), "{args:?}: {s}");
    }
}

#[test]
fn secrets_set_then_get_exact_values_and_refusals() {
    let d = Deployment::start(&users_roles());
    let user_key: Vec<u8> = (0u8..16).collect();
    let file = d.write(
        "secrets.json",
        json!({
            "userKey": {"Key": b64(&user_key)},
            "apiKey": {"key": b64(b"s3cret value")}
        })
        .to_string()
        .as_bytes(),
    );

    // alice (secretAdmin) uploads, pinning the root cached by `manifest set`.
    let o = d.as_user("alice", &["secret", "set", &file, &d.addr]);
    d.check(&o, 0);
    assert_eq!(stdout(&o), "Secrets set: apiKey, userKey\n");

    let o = d.as_user("alice", &["secret", "get", "userKey", "apiKey", &d.addr]);
    d.check(&o, 0);
    assert_eq!(
        stdout(&o),
        format!(
            "apiKey:\n  Type:        plain\n  UserDefined: true\n  Data:        s3cret value\n\
             userKey:\n  Type:        symmetric-key\n  UserDefined: true\n  Size:        128 bits\n  \
             Key (hex):   {}\n  Key (b64):   {}\n",
            hex::encode(&user_key),
            b64(&user_key)
        )
    );

    // A certificate secret from a PEM file (--from-pem), read back as JSON (hex) and as the
    // Coordinator's map (-o, base64).
    let crt = std::fs::read(key_file("usercert-ed25519.crt")).unwrap();
    let key = std::fs::read(key_file("usercert-ed25519.key")).unwrap();
    let pem_file = d.write("usercert.pem", &[crt.clone(), key.clone()].concat());
    let o = d.as_user(
        "alice",
        &[
            "secret",
            "set",
            &pem_file,
            &d.addr,
            "--from-pem",
            "userCert",
        ],
    );
    d.check(&o, 0);
    assert_eq!(stdout(&o), "Secrets set: userCert\n");
    let cert_der = pem::parse(&crt).unwrap().into_contents();
    let key_der = pem::parse(&key).unwrap().into_contents();
    let o = d.as_user("alice", &["secret", "get", "userCert", &d.addr, "--json"]);
    d.check(&o, 0);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["userCert"]["type"], "cert-ed25519");
    assert_eq!(v["userCert"]["userDefined"], true);
    assert_eq!(v["userCert"]["cert"], hex::encode(&cert_der));
    assert_eq!(v["userCert"]["private"], hex::encode(&key_der));
    let out = d.dir.path().join("got.json");
    let o = d.as_user(
        "alice",
        &[
            "secret", "get", "userKey", &d.addr,
            // A bare name: written in the working directory, 0600.
            "-o", "got.json",
        ],
    );
    d.check(&o, 0);
    assert_eq!(stdout(&o), "");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let got: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got["userKey"]["Private"], b64(&user_key));
    assert_eq!(got["userKey"]["Type"], "symmetric-key");

    // bob (readShared only) may read sharedKey but not userKey, and may write nothing.
    let o = d.as_user("bob", &["secret", "get", "sharedKey", &d.addr, "--json"]);
    d.check(&o, 0);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sharedKey"]["size"], 128);
    assert_eq!(v["sharedKey"]["private"].as_str().unwrap().len(), 32);
    let o = d.as_user("bob", &["secret", "get", "userKey", &d.addr]);
    d.check(&o, 1);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: reading secrets refused: the Coordinator answered HTTP 500: user \"bob\" is not \
         allowed to ReadSecret on userKey: none of the user's roles grants it (the manifest must \
         give the user a role with ResourceType \"Secrets\", Actions [\"ReadSecret\"] and these \
         ResourceNames)\n"
    );
    let o = d.as_user("bob", &["secret", "set", &file, &d.addr]);
    d.check(&o, 1);
    assert!(
        stderr(&o).starts_with(
            "error: secret upload refused: the Coordinator answered HTTP 500: user \"bob\" is not \
             allowed to WriteSecret on "
        ),
        "{}",
        show(&o)
    );

    // mallory is no user at all: 401 with the server's message.
    let o = d.as_user("mallory", &["secret", "get", "sharedKey", &d.addr]);
    d.check(&o, 1);
    assert_eq!(
        stderr(&o),
        format!(
            "error: reading secrets refused: the Coordinator answered HTTP 401: {UNAUTHORIZED}\n"
        )
    );
    let o = d.as_user("mallory", &["secret", "set", &file, &d.addr]);
    d.check(&o, 1);
    assert_eq!(
        stderr(&o),
        format!(
            "error: secret upload refused: the Coordinator answered HTTP 401: {UNAUTHORIZED}\n"
        )
    );

    // The values are unchanged by the refused writes.
    let o = d.as_user("alice", &["secret", "get", "apiKey", &d.addr, "--json"]);
    d.check(&o, 0);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["apiKey"]["private"], hex::encode(b"s3cret value"));

    // A secret the Coordinator refuses (wrong size) names the secret; nothing is stored.
    let bad = d.write(
        "bad.json",
        json!({"userKey": {"Key": b64(&[1, 2, 3])}})
            .to_string()
            .as_bytes(),
    );
    let o = d.as_user("alice", &["secret", "set", &bad, &d.addr]);
    d.check(&o, 1);
    assert_eq!(
        stderr(&o),
        "error: secret upload refused: the Coordinator answered HTTP 500: secret userKey: \
         declared size and actual size don't match: expected 16 bytes (Size 128 bits), got 3\n"
    );

    // Local file problems name the file and field (exit 1) before anything is sent.
    let broken = d.write("broken.json", br#"{"userKey": {"Key": 5}}"#);
    let o = d.as_user("alice", &["secret", "set", &broken, &d.addr]);
    d.check(&o, 1);
    assert_eq!(
        stderr(&o),
        format!("error: {broken}: secret \"userKey\": Key: expected a base64 string, found 5\n")
    );

    // Usage and I/O errors exit 2: a key that does not belong to the certificate, a missing
    // file, no cached root without attestation flags.
    let o = d
        .cairn()
        .args(["secret", "get", "userKey", &d.addr])
        .args([
            "--cert",
            &key_file("alice.crt"),
            "--key",
            &key_file("bob.key"),
        ])
        .output()
        .unwrap();
    d.check(&o, 2);
    assert!(
        stderr(&o).contains("the private key does not belong to the certificate"),
        "{}",
        show(&o)
    );
    let o = d.as_user("alice", &["secret", "set", "/nonexistent.json", &d.addr]);
    d.check(&o, 2);
    assert!(
        stderr(&o).contains("cannot read secret file /nonexistent.json"),
        "{}",
        show(&o)
    );
    let fresh = d.dir.path().join("fresh-config");
    let mut c = d.cairn();
    c.env("XDG_CONFIG_HOME", &fresh);
    let o = c
        .args(["secret", "get", "userKey", &d.addr])
        .args([
            "--cert",
            &key_file("alice.crt"),
            "--key",
            &key_file("alice.key"),
        ])
        .output()
        .unwrap();
    d.check(&o, 2);
    assert!(stderr(&o).contains("cairn verify"), "{}", show(&o));

    // With attestation flags and no cache, the Coordinator is attested first.
    let mut c = d.cairn();
    c.env("XDG_CONFIG_HOME", &fresh);
    let o = c
        .args(["secret", "get", "apiKey", &d.addr, "--json"])
        .args(d.attest_flags())
        .args([
            "--cert",
            &key_file("alice.crt"),
            "--key",
            &key_file("alice.key"),
        ])
        .output()
        .unwrap();
    d.check(&o, 0);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["apiKey"]["private"], hex::encode(b"s3cret value"));
    // ... and a wrong expected measurement is refused before the user's request is sent.
    let mut c = d.cairn();
    c.env("XDG_CONFIG_HOME", &fresh);
    let o = c
        .args(["secret", "set", &file, &d.addr])
        .args(["--simulation-root"])
        .arg(d.coordinator.sim_root())
        .args(["--unique-id", &"00".repeat(32)])
        .args([
            "--cert",
            &key_file("alice.crt"),
            "--key",
            &key_file("alice.key"),
        ])
        .output()
        .unwrap();
    d.check(&o, 1);
    assert!(stderr(&o).contains("UniqueID"), "{}", show(&o));

    assert_eq!(
        d.log_entries(),
        vec![
            json!({"update": "Initial manifest set"}),
            json!({"update": "Secret set", "user": "alice", "secret": "apiKey", "type": "plain"}),
            json!({"update": "Secret set", "user": "alice", "secret": "userKey", "type": "symmetric-key"}),
            json!({"update": "Secret set", "user": "alice", "secret": "userCert", "type": "cert-ed25519"}),
        ]
    );
}

#[test]
fn updates_apply_acknowledge_cancel_get_and_log() {
    let v1 = with_manifest_updaters();
    let d = Deployment::start(serde_json::to_string_pretty(&v1).unwrap().as_bytes());

    // Package update by alice (UpdateSecurityVersion on frontend) applies at once.
    let svn = testdata("update-svn-bump.json").display().to_string();
    let o = d.as_user("alice", &["manifest", "update", "apply", &svn, &d.addr]);
    d.check(&o, 0);
    assert_eq!(stdout(&o), "Manifest update applied.\n");
    // bob holds no UpdateSecurityVersion role; carol holds no role; mallory is no user.
    let o = d.as_user("bob", &["manifest", "update", "apply", &svn, &d.addr]);
    d.check(&o, 1);
    assert!(
        stderr(&o).starts_with(
            "error: manifest update refused: the Coordinator answered HTTP 500: user \"bob\" is \
             not allowed to UpdateSecurityVersion on frontend"
        ),
        "{}",
        show(&o)
    );
    let o = d.as_user("mallory", &["manifest", "update", "apply", &svn, &d.addr]);
    d.check(&o, 1);
    assert_eq!(
        stderr(&o),
        format!(
            "error: manifest update refused: the Coordinator answered HTTP 401: {UNAUTHORIZED}\n"
        )
    );

    // Nothing pending yet.
    let o = d
        .cairn()
        .args(["manifest", "update", "get", &d.addr])
        .output()
        .unwrap();
    d.check(&o, 1);
    assert_eq!(
        stderr(&o),
        "error: no manifest update is pending (no update in progress)\n"
    );

    // A full update by alice needs bob's acknowledgement too.
    let mut v2 = v1.clone();
    v2["Packages"]["frontend"]["SecurityVersion"] = json!(5);
    v2["Marbles"]["backend"]["Parameters"]["Env"] = json!({"MODE": "v2"});
    let v2_bytes = serde_json::to_string_pretty(&v2).unwrap();
    let v2_path = d.write("v2.json", v2_bytes.as_bytes());
    let pending_text = format!(
        "Manifest update pending: 1 user still needs to acknowledge the update manifest (bob).\n\
         Each of them acknowledges with: cairn manifest update acknowledge {v2_path} {} \
         --cert USER.crt --key USER.key\n",
        d.addr
    );
    let o = d.as_user("alice", &["manifest", "update", "apply", &v2_path, &d.addr]);
    d.check(&o, 0);
    assert_eq!(stdout(&o), pending_text);

    // get: the exact pending bytes on stdout, the acknowledgement status on stderr.
    let o = d
        .cairn()
        .args(["manifest", "update", "get", &d.addr])
        .output()
        .unwrap();
    d.check(&o, 0);
    assert_eq!(stdout(&o), format!("{v2_bytes}\n"));
    assert_eq!(
        stderr(&o),
        "1 user still needs to acknowledge the update manifest\n"
    );
    let o = d
        .cairn()
        .args(["manifest", "update", "get", &d.addr, "--missing"])
        .output()
        .unwrap();
    d.check(&o, 0);
    assert_eq!(
        stdout(&o),
        "1 user still needs to acknowledge the update manifest\n  bob\n"
    );

    // carol (no UpdateManifest) can neither cancel nor acknowledge; bob cancels.
    let o = d.as_user("carol", &["manifest", "update", "cancel", &d.addr]);
    d.check(&o, 1);
    assert!(
        stderr(&o).starts_with(
            "error: cancelling the update refused: the Coordinator answered HTTP 500: user \
             \"carol\" is not allowed to UpdateManifest"
        ),
        "{}",
        show(&o)
    );
    let o = d.as_user("bob", &["manifest", "update", "cancel", &d.addr]);
    d.check(&o, 0);
    assert_eq!(stdout(&o), "Update successfully cancelled\n");
    let o = d.as_user("bob", &["manifest", "update", "cancel", &d.addr]);
    d.check(&o, 1);
    assert_eq!(
        stderr(&o),
        "error: cancelling the update refused: the Coordinator answered HTTP 404: no update in progress\n"
    );
    let o = d
        .cairn()
        .args(["manifest", "update", "get", &d.addr])
        .output()
        .unwrap();
    d.check(&o, 1);

    // Again; an acknowledgement must upload the byte-identical manifest.
    let o = d.as_user("alice", &["manifest", "update", "apply", &v2_path, &d.addr]);
    d.check(&o, 0);
    assert_eq!(stdout(&o), pending_text);
    let v2_newline = d.write("v2-newline.json", format!("{v2_bytes}\n").as_bytes());
    let o = d.as_user(
        "bob",
        &["manifest", "update", "acknowledge", &v2_newline, &d.addr],
    );
    d.check(&o, 1);
    assert!(
        stderr(&o).contains("is not byte-identical to the pending update"),
        "{}",
        show(&o)
    );
    let o = d.as_user(
        "carol",
        &["manifest", "update", "acknowledge", &v2_path, &d.addr],
    );
    d.check(&o, 1);
    assert!(
        stderr(&o).starts_with(
            "error: acknowledgement refused: the Coordinator answered HTTP 500: user \"carol\" is \
             not allowed to acknowledge the pending update"
        ),
        "{}",
        show(&o)
    );
    let o = d.as_user(
        "bob",
        &["manifest", "update", "acknowledge", &v2_path, &d.addr],
    );
    d.check(&o, 0);
    assert_eq!(stdout(&o), "Manifest update applied.\n");

    // The Coordinator now serves v2 byte for byte, and nothing is pending.
    let o = d
        .cairn()
        .args(["manifest", "get", &d.addr])
        .args(d.attest_flags())
        .output()
        .unwrap();
    d.check(&o, 0);
    assert_eq!(stdout(&o), format!("{v2_bytes}\n"));
    let o = d
        .cairn()
        .args(["manifest", "update", "get", &d.addr, "--missing"])
        .output()
        .unwrap();
    d.check(&o, 1);

    // The log, written to a file with -o, holds the same lines as stdout.
    let log_file = d.dir.path().join("update.log");
    let o = d
        .cairn()
        .args(["manifest", "log", &d.addr, "-o", log_file.to_str().unwrap()])
        .output()
        .unwrap();
    d.check(&o, 0);
    let entries = d.log_entries();
    assert_eq!(
        std::fs::read_to_string(&log_file).unwrap().lines().count(),
        entries.len()
    );
    let fp = hex::encode(cairn_crypto::sha256(v2_bytes.as_bytes()));
    let started = json!({
        "update": "Complete Manifest update initiated by user. Waiting for acknowledgments to apply the update",
        "user": "alice",
        "manifestFingerprint": fp,
        "missingAcknowledgments": 1,
        "missingUsers": ["bob"],
    });
    assert_eq!(
        entries,
        vec![
            json!({"update": "Initial manifest set"}),
            json!({"update": "SecurityVersion increased", "user": "alice", "package": "frontend", "new version": 5}),
            started.clone(),
            json!({"update": "Complete Manifest update cancelled by user", "user": "bob"}),
            started,
            json!({"update": "Complete Manifest update acknowledged by user", "user": "bob"}),
            json!({"update": "Complete Manifest updated", "manifestFingerprint": fp}),
        ]
    );
}
