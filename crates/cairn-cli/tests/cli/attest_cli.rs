//! CLI tests for `cairn sim`, `cairn quote inspect` and `cairn package-info`.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn cairn() -> Command {
    Command::cargo_bin("cairn").unwrap()
}

fn testdata(p: &str) -> String {
    format!(
        "{}/../../testdata/attestation/{p}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn inspect_json(args: &[&str]) -> (i32, Value) {
    let out = cairn()
        .args(["quote", "inspect"])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"));
    (out.status.code().unwrap(), v)
}

#[test]
fn real_quote_inspect_json_pinned_now() {
    let (q, c) = (
        testdata("dcap-qvl/sgx_quote"),
        testdata("dcap-qvl/sgx_quote_collateral.json"),
    );
    let (code, v) = inspect_json(&[&q, "--collateral", &c, "--now", "1751328000"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verified"], true);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["trust_root"], "intel");
    assert_eq!(v["tee"], "sgx");
    assert_eq!(
        v["mrenclave"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        v["mrsigner"],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert!(v["report_data"]
        .as_str()
        .unwrap()
        .starts_with(&hex::encode("Hello, world!")));
    assert_eq!(
        (v["isv_prod_id"].as_u64(), v["isv_svn"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["debug"], false);
    assert_eq!(v["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        v["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 12);

    // Expired collateral: not verified, exit 1, parsed fields still printed.
    let (code, v) = inspect_json(&[&q, "--collateral", &c, "--now", "1752919279"]);
    assert_eq!(code, 1);
    assert_eq!(v["verified"], false);
    assert!(
        v["error"].as_str().unwrap().contains("QE Identity expired"),
        "{v}"
    );
    assert_eq!(
        v["mrenclave"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(v["tcb_status"], Value::Null);
}

#[test]
fn sim_init_quote_inspect_and_package_info() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let out = cairn().args(["sim", "init"]).arg(&sim).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for f in ["root.pem", "collateral.json", "platform.json"] {
        assert!(sim.join(f).exists(), "{f}");
    }
    let exe = tmp.path().join("app");
    std::fs::write(&exe, b"pretend executable").unwrap();
    let q = tmp.path().join("q.bin");
    cairn()
        .args(["sim", "quote"])
        .arg(&sim)
        .args([
            "--report-data",
            "c0ffee",
            "--product-id",
            "7",
            "--svn",
            "3",
            "--debug",
            "--executable",
        ])
        .arg(&exe)
        .arg("-o")
        .arg(&q)
        .assert()
        .code(0);
    let root = sim.join("root.pem");
    let (code, v) = inspect_json(&[q.to_str().unwrap(), "--trust-root", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    let mrenclave = hex::encode(cairn_crypto::sha256(b"pretend executable"));
    assert_eq!(v["mrenclave"], mrenclave.as_str());
    assert_eq!(v["isv_prod_id"], 7);
    assert_eq!(v["isv_svn"], 3);
    assert_eq!(v["debug"], true);
    assert_eq!(v["tcb_status"], "UpToDate");
    assert!(v["report_data"].as_str().unwrap().starts_with("c0ffee00"));
    assert!(v["trust_root"].as_str().unwrap().starts_with("simulation:"));
    assert!(text.contains(v["trust_root"].as_str().unwrap()), "{text}");
    let signer = v["mrsigner"].as_str().unwrap().to_string();
    assert!(text.contains(&signer), "sim init prints the SignerID");

    // OE-wrapped copy verifies the same way.
    let raw = std::fs::read(&q).unwrap();
    let wrapped = tmp.path().join("q.oe");
    std::fs::write(&wrapped, cairn_attest::oe::wrap(&raw)).unwrap();
    let (code, v2) = inspect_json(&[
        wrapped.to_str().unwrap(),
        "--trust-root",
        root.to_str().unwrap(),
    ]);
    assert_eq!((code, &v2), (0, &v));

    // The sim quote with the sim collateral but Intel's root: refused, exit 1.
    let coll = sim.join("collateral.json");
    let (code, v) = inspect_json(&[q.to_str().unwrap(), "--collateral", coll.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(v["trust_root"], "intel");
    assert!(v["error"].as_str().unwrap().contains("root CA CRL"), "{v}");
    assert_eq!(v["mrenclave"], mrenclave.as_str());

    // No collateral at all: exit 2, still one JSON object.
    let (code, v) = inspect_json(&[q.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(v["error"].as_str().unwrap().contains("no collateral"));

    // package-info gives what the sim quote carried.
    let out = cairn()
        .arg("package-info")
        .arg(&exe)
        .arg("--sim-dir")
        .arg(&sim)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["UniqueID"], mrenclave.as_str());
    assert_eq!(p["SignerID"], signer.as_str());

    // --unique-id path and a second init keep the same platform.
    cairn()
        .args(["sim", "init"])
        .arg(&sim)
        .args([
            "--tcb-status",
            "SWHardeningNeeded",
            "--advisory",
            "INTEL-SA-00615",
        ])
        .assert()
        .code(0);
    cairn()
        .args(["sim", "quote"])
        .arg(&sim)
        .args(["--report-data", "", "--unique-id", &"AB".repeat(32), "-o"])
        .arg(&q)
        .assert()
        .code(0);
    let (code, v) = inspect_json(&[q.to_str().unwrap(), "--trust-root", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mrenclave"], "ab".repeat(32));
    assert_eq!(v["mrsigner"], signer.as_str());
    assert_eq!(v["tcb_status"], "SWHardeningNeeded");
    assert_eq!(v["advisory_ids"], serde_json::json!(["INTEL-SA-00615"]));
}

#[test]
fn garbage_and_bad_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, [0x42u8; 700]).unwrap();
    let c = testdata("dcap-qvl/sgx_quote_collateral.json");
    let (code, v) = inspect_json(&[junk.to_str().unwrap(), "--collateral", &c]);
    assert_eq!(code, 1);
    assert_eq!(v["verified"], false);
    assert_eq!(v["mrenclave"], Value::Null);
    assert!(v["error"].as_str().unwrap().contains("malformed quote"));
    // Missing file → exit 2.
    cairn()
        .args(["quote", "inspect", "/nonexistent/q"])
        .assert()
        .code(2);
    // Report data over 64 bytes → exit 2.
    let sim = tmp.path().join("sim");
    cairn()
        .args(["sim", "quote"])
        .arg(&sim)
        .args([
            "--report-data",
            &"00".repeat(65),
            "--unique-id",
            &"ab".repeat(32),
            "-o",
        ])
        .arg(tmp.path().join("q"))
        .assert()
        .code(2);
    // A half-written sim dir is an error, not regenerated.
    let half = tmp.path().join("half");
    std::fs::create_dir(&half).unwrap();
    std::fs::write(half.join("root.pem"), b"x").unwrap();
    cairn().args(["sim", "init"]).arg(&half).assert().code(2);
    assert!(!Path::new(&half.join("platform.json")).exists());
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        vec!["sim", "init", "--help"],
        vec!["sim", "quote", "--help"],
        vec!["quote", "inspect", "--help"],
        vec!["package-info", "--help"],
    ] {
        let out = cairn().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}
