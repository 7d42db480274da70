//! Issue 7 with the real binaries: backup a Coordinator's seal dir, restore it on a "new host"
//! (another simulated platform, so another seal key) and recover it with `cairn recover`:
//! 2 of 3 Shamir shares, one uploaded online with the key, one prepared offline
//! (`recover public-key | decrypt | sign`) and uploaded with `--signature`.

use std::path::Path;

use base64::Engine as _;
use cairn_e2e::{bin, cairn, measure, show, Coordinator};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests/keys");

fn key(name: &str) -> String {
    format!("{KEYS}/{name}")
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(o)))
}

/// `cairn <args> --simulation-root ROOT --unique-id UID` against `c`.
fn attested(c: &Coordinator, uid: &str, args: &[&str]) -> std::process::Output {
    let root = c.sim_root().display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--simulation-root", &root, "--unique-id", uid]);
    cairn(&all).expect("cairn runs")
}

fn status(c: &Coordinator) -> i64 {
    let o = cairn(&["status", &c.client_addr, "--insecure", "--json"]).expect("cairn runs");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    json_of(&o)["code"].as_i64().expect("code")
}

fn root_fingerprint(c: &Coordinator, uid: &str, cache: &Path) -> String {
    let cache = cache.display().to_string();
    let o = attested(
        c,
        uid,
        &[
            "verify",
            &c.client_addr,
            "--coordinator-cert",
            &cache,
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    json_of(&o)["root_fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string()
}

#[test]
fn backup_restore_and_cli_recovery_shamir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let uid = measure(&bin("cairn-coordinator").expect("bin")).expect("measure");
    let host1 = Coordinator::start(&dir.join("host1"), &[]).expect("coordinator starts");
    let root1 = root_fingerprint(&host1, &uid, &dir.join("cache1.pem"));

    let pubs: Vec<String> = ["recovery1", "recovery2", "recovery3"]
        .iter()
        .map(|k| std::fs::read_to_string(key(&format!("{k}.pub"))).expect("key"))
        .collect();
    let manifest = serde_json::json!({
        "Packages": {"p": {"UniqueID": "aa".repeat(32)}},
        "Marbles": {"m": {"Package": "p"}},
        "RecoveryKeys": {"recovery1": pubs[0], "recovery2": pubs[1], "recovery3": pubs[2]},
        "Config": {"RecoveryThreshold": 2}
    });
    let mpath = dir.join("manifest.json");
    std::fs::write(&mpath, manifest.to_string()).expect("write");
    let rec = dir.join("recovery.json");
    let o = attested(
        &host1,
        &uid,
        &[
            "manifest",
            "set",
            mpath.to_str().expect("utf8"),
            &host1.client_addr,
            "--recoverydata",
            rec.to_str().expect("utf8"),
            "--coordinator-cert",
            dir.join("cache1.pem").to_str().expect("utf8"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rec).expect("recovery data")).expect("json");
    let secret = |name: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v["RecoverySecrets"][name].as_str().expect("secret"))
            .expect("base64")
    };
    // Share files: raw bytes (as MarbleRun's CLI expects) and base64 text.
    let share1 = dir.join("share1.bin");
    std::fs::write(&share1, secret("recovery1")).expect("write");
    let share2 = dir.join("share2.b64");
    std::fs::write(
        &share2,
        v["RecoverySecrets"]["recovery2"].as_str().expect("b64"),
    )
    .expect("write");
    let share3_truncated = dir.join("share3.bin");
    std::fs::write(&share3_truncated, &secret("recovery3")[..200]).expect("write");
    drop(host1);

    // Backup: the seal dir's state file, restored on a host with another platform.
    std::fs::create_dir_all(dir.join("host2")).expect("mkdir");
    std::fs::copy(
        dir.join("host1").join("state.sealed"),
        dir.join("host2").join("state.sealed"),
    )
    .expect("copy state");
    let host2 = Coordinator::start(&dir.join("host2"), &[]).expect("coordinator starts");
    assert_eq!(status(&host2), 1);
    let addr = host2.client_addr.clone();

    // Online share, attested against the new host's platform.
    let o = attested(
        &host2,
        &uid,
        &[
            "recover",
            share1.to_str().expect("utf8"),
            &addr,
            "--key",
            &key("recovery1.key"),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        json_of(&o),
        serde_json::json!({"remaining": 1, "message":
            "Secret was processed successfully. Upload the next secret. Remaining secrets: 1"})
    );
    // Replayed share, wrong key, truncated share: refused (exit 1), still recoverable.
    let o = attested(
        &host2,
        &uid,
        &[
            "recover",
            share1.to_str().expect("utf8"),
            &addr,
            "--key",
            &key("recovery1.key"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("recovery share of key \"recovery1\" was already submitted"),
        "{}",
        show(&o)
    );
    for (file, k) in [
        (&share2, "recovery1.key"),
        (&share3_truncated, "recovery3.key"),
    ] {
        let o = attested(
            &host2,
            &uid,
            &[
                "recover",
                file.to_str().expect("utf8"),
                &addr,
                "--key",
                &key(k),
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("cannot be decrypted with"),
            "{}",
            show(&o)
        );
    }
    assert_eq!(status(&host2), 1);

    // Offline party: fetch the ephemeral key, decrypt + re-encrypt and sign offline, upload.
    let eph = dir.join("eph.pem");
    let o = attested(
        &host2,
        &uid,
        &[
            "recover",
            "public-key",
            &addr,
            "-o",
            eph.to_str().expect("utf8"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let enc = dir.join("share2.enc");
    let sig = dir.join("share2.sig");
    let o = cairn(&[
        "recover",
        "decrypt",
        share2.to_str().expect("utf8"),
        "--key",
        &key("recovery2.key"),
        "--coordinator-pub-key",
        eph.to_str().expect("utf8"),
        "-o",
        enc.to_str().expect("utf8"),
    ])
    .expect("cairn runs");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&enc).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read(&enc).expect("read").len(),
        512,
        "RSA-4096 ciphertext"
    );
    let o = cairn(&[
        "recover",
        "sign",
        share2.to_str().expect("utf8"),
        "--key",
        &key("recovery2.key"),
        "-o",
        sig.to_str().expect("utf8"),
    ])
    .expect("cairn runs");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = attested(
        &host2,
        &uid,
        &[
            "recover",
            enc.to_str().expect("utf8"),
            &addr,
            "--signature",
            sig.to_str().expect("utf8"),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        json_of(&o),
        serde_json::json!({"remaining": 0, "message": "Recovery successful."})
    );
    assert_eq!(status(&host2), 3);
    assert_eq!(
        root_fingerprint(&host2, &uid, &dir.join("cache2.pem")),
        root1
    );
    drop(host2);

    // Re-sealed to host2's seal key: a restart opens the state without recovery.
    let host2 = Coordinator::start(&dir.join("host2"), &[]).expect("coordinator restarts");
    assert_eq!(status(&host2), 3);
    assert_eq!(
        root_fingerprint(&host2, &uid, &dir.join("cache3.pem")),
        root1
    );
    let o = attested(
        &host2,
        &uid,
        &[
            "manifest",
            "verify",
            mpath.to_str().expect("utf8"),
            &host2.client_addr,
            "--coordinator-cert",
            dir.join("cache4.pem").to_str().expect("utf8"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

/// Starts the Coordinator executable `exe` (a copy of the real binary) on `seal_dir`; returns
/// the process and its client API address.
fn start_exe(exe: &Path, seal_dir: &Path) -> (cairn_e2e::Proc, String) {
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--simulation",
        "--client-addr",
        "127.0.0.1:0",
        "--mesh-addr",
        "127.0.0.1:0",
    ])
    .arg("--seal-dir")
    .arg(seal_dir)
    .env("RUST_LOG", "info")
    .env_remove("EDG_COORDINATOR_CLIENT_ADDR")
    .env_remove("EDG_COORDINATOR_MESH_ADDR");
    let mut proc = cairn_e2e::Proc::spawn(cmd).expect("spawn");
    let addr = proc
        .lines
        .wait_for("client API listening on ", &mut proc.child)
        .expect("coordinator ready");
    (proc, addr)
}

fn status_at(addr: &str) -> i64 {
    let o = cairn(&["status", addr, "--insecure", "--json"]).expect("cairn runs");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    json_of(&o)["code"].as_i64().expect("code")
}

/// A new Coordinator version (another MRENCLAVE, same signer and product): a ProductKey state
/// opens by itself, a UniqueKey state needs recovery, after which the new version opens it.
#[test]
fn new_coordinator_version_product_key_opens_unique_key_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let real = bin("cairn-coordinator").expect("bin");
    let v1 = dir.join("v1");
    let v2 = dir.join("v2");
    std::fs::create_dir_all(&v1).expect("mkdir");
    std::fs::create_dir_all(&v2).expect("mkdir");
    let (exe1, exe2) = (v1.join("cairn-coordinator"), v2.join("cairn-coordinator"));
    std::fs::copy(&real, &exe1).expect("copy");
    let mut bytes = std::fs::read(&real).expect("read");
    bytes.extend_from_slice(b"\0cairn v2");
    std::fs::write(&exe2, &bytes).expect("write");
    std::fs::set_permissions(&exe2, std::fs::metadata(&exe1).expect("meta").permissions())
        .expect("chmod");
    let (uid1, uid2) = (
        measure(&exe1).expect("measure"),
        measure(&exe2).expect("measure"),
    );
    assert_ne!(uid1, uid2);
    let pub1 = std::fs::read_to_string(key("recovery1.pub")).expect("key");

    for (mode, opens) in [("ProductKey", true), ("UniqueKey", false)] {
        let seal = dir.join(mode);
        let (p1, addr1) = start_exe(&exe1, &seal);
        let root = seal.join("sim").join("root.pem").display().to_string();
        let manifest = serde_json::json!({
            "Packages": {"p": {"UniqueID": "aa".repeat(32)}},
            "Marbles": {"m": {"Package": "p"}},
            "RecoveryKeys": {"recovery1": pub1},
            "Config": {"SealMode": mode}
        });
        let mpath = dir.join(format!("{mode}.json"));
        std::fs::write(&mpath, manifest.to_string()).expect("write");
        let rec = dir.join(format!("{mode}-recovery.json"));
        let cache = dir.join(format!("{mode}-cache.pem"));
        let o = cairn(&[
            "manifest",
            "set",
            mpath.to_str().expect("utf8"),
            &addr1,
            "--recoverydata",
            rec.to_str().expect("utf8"),
            "--simulation-root",
            &root,
            "--unique-id",
            &uid1,
            "--coordinator-cert",
            cache.to_str().expect("utf8"),
        ])
        .expect("cairn runs");
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        drop(p1);

        let (p2, addr2) = start_exe(&exe2, &seal);
        if opens {
            assert_eq!(
                status_at(&addr2),
                3,
                "{mode}: the new version opens the state"
            );
            continue;
        }
        assert_eq!(
            status_at(&addr2),
            1,
            "{mode}: the new version needs recovery"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&rec).expect("read")).expect("json");
        let share = dir.join(format!("{mode}.share"));
        std::fs::write(
            &share,
            v["RecoverySecrets"]["recovery1"].as_str().expect("secret"),
        )
        .expect("write");
        let o = cairn(&[
            "recover",
            share.to_str().expect("utf8"),
            &addr2,
            "--key",
            &key("recovery1.key"),
            "--simulation-root",
            &root,
            "--unique-id",
            &uid2,
        ])
        .expect("cairn runs");
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).lines().next(),
            Some("Recovery successful.")
        );
        assert_eq!(status_at(&addr2), 3);
        drop(p2);
        let (p3, addr3) = start_exe(&exe2, &seal);
        assert_eq!(status_at(&addr3), 3, "{mode}: re-sealed to the new version");
        // The old version can no longer open the re-sealed UniqueKey state.
        drop(p3);
        let (_p4, addr4) = start_exe(&exe1, &seal);
        assert_eq!(status_at(&addr4), 1);
    }
}
