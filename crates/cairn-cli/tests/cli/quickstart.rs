//! `cairn quickstart` end to end with the workspace binaries (build them first:
//! `cargo build --workspace --bins`).

use assert_cmd::Command;

#[test]
fn quickstart_runs_every_step_including_the_package_update() {
    let o = Command::cargo_bin("cairn")
        .unwrap()
        .args(["quickstart", "--bin-dir"])
        .arg(cairn_e2e::bin_dir())
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{out}\n--- stderr\n{err}");
    let step6 = &out[out.find("\n[6] ").unwrap()..out.find("\nWhat this run proved").unwrap()];
    for expected in [
        "$ cairn manifest update apply update.json ",
        "      Manifest update applied.\n",
        " SecurityVersion of kv-client raised to 2 by admin\n",
        " SecurityVersion of kv-server raised to 2 by admin\n",
        "kv-client v1 (SecurityVersion 1, same UUID as in step 4) is refused re-activation:\n",
        "package \"kv-client\": SecurityVersion too low: expected >= 2, got 1",
        "kv-client v2 (activated after the update) cannot talk to kv-server v1 (activated before it):\n      kv-client: error: TLS handshake with ",
        "kv-client v2 talks to kv-server v2 over mutual TLS:\n      kv-client: ok: greeting = \"hi again\" written and read back over mutual TLS\n",
    ] {
        assert!(step6.contains(expected), "missing {expected:?} in step 6:\n{step6}");
    }
    assert_eq!(out.matches("\n  - ").count(), 5, "{out}");
}
