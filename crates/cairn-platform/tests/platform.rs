//! Integration tests for cairn-platform: the persisted sim dir, its issuer, Gramine files faked in
//! a temp dir, the file collateral source, and the PCCS client against a fake PCCS (`modules/pccs.rs`).
#![allow(clippy::unwrap_used)]

#[path = "modules/pccs.rs"]
mod pccs;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn_attest::{verify, Collateral, SgxQuote, TrustRoot};
use cairn_platform::{
    CollateralSource, EnclaveIdentity, FileCollateral, GramineIssuer, Issuer, PlatformError,
    SealKeyKind, SimPlatformDir, SimSettings, COLLATERAL_FILE, PLATFORM_FILE, ROOT_FILE,
};
use time::OffsetDateTime;

const T0: i64 = 1_800_000_000;

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(T0 + secs).unwrap()
}

fn id(d: &SimPlatformDir) -> EnclaveIdentity {
    EnclaveIdentity {
        mr_enclave: [0x11; 32],
        mr_signer: d.signer_id(),
        isv_prod_id: 1,
        isv_svn: 1,
        debug: false,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn tcb_issue(dir: &Path) -> String {
    let c: Collateral =
        serde_json::from_slice(&std::fs::read(dir.join(COLLATERAL_FILE)).unwrap()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&c.tcb_info).unwrap();
    v["issueDate"].as_str().unwrap().to_string()
}

#[test]
fn create_files_modes_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    let d = SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for f in [PLATFORM_FILE, ROOT_FILE, COLLATERAL_FILE] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let pem = pem::parse(std::fs::read(dir.join(ROOT_FILE)).unwrap()).unwrap();
    assert_eq!(pem.contents(), d.root_der());
    let coll = FileCollateral::new(dir.join(COLLATERAL_FILE))
        .load()
        .unwrap();
    let issuer = d.issuer(id(&d));
    let q = issuer.quote(&[0xab; 32]).unwrap();
    let v = verify(&q, &coll, T0 as u64, &TrustRoot::Simulation(d.root_der())).unwrap();
    assert_eq!(v.mr_enclave, [0x11; 32]);
    assert_eq!(&v.report_data[..32], &[0xab; 32]);
    assert!(verify(&q, &coll, T0 as u64, &TrustRoot::IntelProduction).is_err());
    assert!(issuer.identity_summary().contains(&hex::encode([0x11; 32])));
    assert!(matches!(
        issuer.quote(&[0; 65]),
        Err(PlatformError::ReportDataTooLong(65))
    ));
}

#[test]
fn reopen_keeps_identity_and_seal_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    let d1 = SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap();
    let k1 = d1.issuer(id(&d1)).seal_key(SealKeyKind::Enclave).unwrap();
    let s1 = d1.issuer(id(&d1)).seal_key(SealKeyKind::Signer).unwrap();
    let collateral_bytes = std::fs::read(dir.join(COLLATERAL_FILE)).unwrap();
    drop(d1);
    // Within a day nothing is rewritten.
    let d2 = SimPlatformDir::open_or_create_at(&dir, t(3 * 3600)).unwrap();
    assert_eq!(
        std::fs::read(dir.join(COLLATERAL_FILE)).unwrap(),
        collateral_bytes
    );
    assert_eq!(
        d2.issuer(id(&d2)).seal_key(SealKeyKind::Enclave).unwrap(),
        k1
    );
    assert_eq!(
        d2.issuer(id(&d2)).seal_key(SealKeyKind::Signer).unwrap(),
        s1
    );
    assert_ne!(k1, s1);
    let mut other = id(&d2);
    other.mr_enclave = [0x22; 32];
    assert_ne!(
        d2.issuer(other.clone())
            .seal_key(SealKeyKind::Enclave)
            .unwrap(),
        k1
    );
    assert_eq!(d2.issuer(other).seal_key(SealKeyKind::Signer).unwrap(), s1);
    // A different platform dir gives different keys for the same identity.
    let d3 = SimPlatformDir::open_or_create_at(&tmp.path().join("other"), t(0)).unwrap();
    let mut same = id(&d3);
    same.mr_signer = id(&d2).mr_signer;
    assert_ne!(d3.issuer(same).seal_key(SealKeyKind::Enclave).unwrap(), k1);
}

#[test]
fn persisted_dir_never_goes_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    let d = SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap();
    let q = d.issuer(id(&d)).quote(b"x").unwrap();
    let old = d.collateral_at(t(0)).unwrap();
    let first_issue = tcb_issue(&dir);
    drop(d);
    let later = 40 * 86_400;
    // The original collateral has expired 40 days later...
    assert!(verify(
        &q,
        &old,
        (T0 + later) as u64,
        &TrustRoot::Simulation(SimPlatformDir::open_at(&dir, t(3600)).unwrap().root_der())
    )
    .is_err());
    // ...but reopening re-signs it and rewrites collateral.json.
    let d = SimPlatformDir::open_or_create_at(&dir, t(later)).unwrap();
    assert_ne!(tcb_issue(&dir), first_issue);
    let fresh = FileCollateral::new(dir.join(COLLATERAL_FILE))
        .collateral_for(&q)
        .unwrap();
    assert_eq!(fresh, d.collateral_at(t(later)).unwrap());
    let v = verify(&q, &fresh, (T0 + later) as u64, &d.trust_root()).unwrap();
    assert_eq!(v.tcb_status, "UpToDate");
    // A long-running holder re-signs on access as well.
    let c2 = d.collateral_at(t(later + 2 * 86_400)).unwrap();
    assert!(verify(&q, &c2, (T0 + later + 2 * 86_400) as u64, &d.trust_root()).is_ok());
}

#[test]
fn settings_are_persisted_and_reflected_in_collateral() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    let mut d = SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap();
    d.set_settings_at(
        SimSettings {
            tcb_status: "SWHardeningNeeded".into(),
            advisory_ids: vec!["INTEL-SA-00615".into()],
        },
        t(10),
    )
    .unwrap();
    drop(d);
    let d = SimPlatformDir::open_or_create_at(&dir, t(20)).unwrap();
    assert_eq!(d.platform().settings().tcb_status, "SWHardeningNeeded");
    let q = d.issuer(id(&d)).quote(b"").unwrap();
    let v = verify(
        &q,
        &d.collateral_at(t(20)).unwrap(),
        (T0 + 20) as u64,
        &d.trust_root(),
    )
    .unwrap();
    assert_eq!(v.tcb_status, "SWHardeningNeeded");
    assert_eq!(v.advisory_ids, vec!["INTEL-SA-00615"]);
}

#[test]
fn corrupt_or_half_written_dirs_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap();
    let pfile = dir.join(PLATFORM_FILE);
    let good = std::fs::read(&pfile).unwrap();

    std::fs::write(&pfile, b"{ not json").unwrap();
    let e = SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap_err();
    assert!(
        matches!(e, PlatformError::Corrupt { ref path, .. } if path == &pfile),
        "{e}"
    );
    // Never silently regenerated: the corrupt file is still there.
    assert_eq!(std::fs::read(&pfile).unwrap(), b"{ not json");

    std::fs::write(&pfile, &good).unwrap();
    std::fs::remove_file(dir.join(COLLATERAL_FILE)).unwrap();
    let e = SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap_err();
    assert!(matches!(e, PlatformError::Incomplete { .. }), "{e}");
    assert!(e.to_string().contains(COLLATERAL_FILE), "{e}");

    // platform.json missing while other files exist (interrupted creation).
    std::fs::remove_file(&pfile).unwrap();
    let e = SimPlatformDir::open_or_create_at(&dir, t(0)).unwrap_err();
    assert!(matches!(e, PlatformError::Incomplete { .. }), "{e}");
    assert!(e.to_string().contains(PLATFORM_FILE), "{e}");

    // root.pem replaced by another certificate.
    let d2 = tmp.path().join("sim2");
    SimPlatformDir::open_or_create_at(&d2, t(0)).unwrap();
    std::fs::write(
        d2.join(ROOT_FILE),
        std::fs::read(dir.join(ROOT_FILE)).unwrap(),
    )
    .unwrap();
    let e = SimPlatformDir::open_or_create_at(&d2, t(0)).unwrap_err();
    assert!(
        matches!(e, PlatformError::Corrupt { ref path, .. } if path.ends_with(ROOT_FILE)),
        "{e}"
    );

    // A file where the directory should be.
    let f = tmp.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    assert!(SimPlatformDir::open_or_create_at(&f, t(0)).is_err());
}

#[test]
fn identity_for_executable_measures_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = SimPlatformDir::open_or_create_at(&tmp.path().join("sim"), t(0)).unwrap();
    let exe = tmp.path().join("app");
    std::fs::write(&exe, b"#!/bin/sh\necho hi\n").unwrap();
    let i = d.identity_for_executable(&exe, 3, 4, true).unwrap();
    assert_eq!(i.mr_enclave, cairn_crypto::sha256(b"#!/bin/sh\necho hi\n"));
    assert_eq!(
        (i.mr_signer, i.isv_prod_id, i.isv_svn, i.debug),
        (d.signer_id(), 3, 4, true)
    );
    let e = d
        .identity_for_executable(&tmp.path().join("missing"), 0, 0, false)
        .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

fn fake_gramine(base: &Path, quote: &[u8]) {
    std::fs::create_dir_all(base.join("keys")).unwrap();
    std::fs::write(base.join("user_report_data"), b"").unwrap();
    std::fs::write(base.join("quote"), quote).unwrap();
    std::fs::write(base.join("keys/_sgx_mrenclave"), [1u8; 16]).unwrap();
    std::fs::write(base.join("keys/_sgx_mrsigner"), [2u8; 16]).unwrap();
}

#[test]
fn gramine_issuer_with_faked_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = SimPlatformDir::open_or_create_at(&tmp.path().join("sim"), t(0)).unwrap();
    let rd = [0x5c; 32];
    let q = d.issuer(id(&d)).quote(&rd).unwrap();
    let base = tmp.path().join("attestation");
    fake_gramine(&base, &q);
    let g = GramineIssuer::new(&base);
    assert_eq!(g.quote(&rd).unwrap(), q);
    // The report data went out in one 64-byte write, zero-padded.
    let written = std::fs::read(base.join("user_report_data")).unwrap();
    assert_eq!(written.len(), 64);
    assert_eq!(&written[..32], &rd);
    assert_eq!(&written[32..], &[0; 32]);
    // A quote that does not carry the requested report data is refused.
    let e = g.quote(&[0x11; 32]).unwrap_err();
    assert!(
        matches!(e, PlatformError::Hardware { ref path, .. } if path.ends_with("quote")),
        "{e}"
    );
    assert_eq!(SgxQuote::parse(&q).unwrap().report_data[..32], rd);

    let ke = g.seal_key(SealKeyKind::Enclave).unwrap();
    let ks = g.seal_key(SealKeyKind::Signer).unwrap();
    assert_ne!(ke, ks);
    let expect = cairn_crypto::hkdf_sha256(
        &[1u8; 16],
        b"cairn-gramine-seal-v1",
        b"cairn-gramine-seal/mrenclave",
        32,
    )
    .unwrap();
    assert_eq!(ke.as_bytes()[..], expect[..]);
    std::fs::write(base.join("keys/_sgx_mrsigner"), [2u8; 15]).unwrap();
    let e = g.seal_key(SealKeyKind::Signer).unwrap_err();
    assert!(
        e.to_string().contains("_sgx_mrsigner") && e.to_string().contains("15"),
        "{e}"
    );
    assert!(g.identity_summary().contains(base.to_str().unwrap()));
}

#[test]
fn gramine_failure_names_the_path_and_never_simulates() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("no-such-attestation");
    let g = GramineIssuer::new(&base);
    let e = g.quote(&[1; 32]).unwrap_err();
    assert!(matches!(e, PlatformError::Hardware { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("no-such-attestation/user_report_data"),
        "{e}"
    );
    // Report data accepted but the quote file is empty (Gramine without DCAP).
    fake_gramine(&base, b"");
    let e = g.quote(&[1; 32]).unwrap_err();
    assert!(
        e.to_string().contains("no-such-attestation/quote") && e.to_string().contains("empty"),
        "{e}"
    );
    assert!(GramineIssuer::default().base().ends_with("dev/attestation"));
    assert!(matches!(
        g.quote(&[0; 65]),
        Err(PlatformError::ReportDataTooLong(65))
    ));
    std::fs::remove_file(base.join("keys/_sgx_mrenclave")).unwrap();
    let e = g.seal_key(SealKeyKind::Enclave).unwrap_err();
    assert!(e.to_string().contains("_sgx_mrenclave"), "{e}");
}

#[test]
fn file_collateral_reads_real_sample() {
    let p = format!(
        "{}/../../testdata/attestation/dcap-qvl/sgx_quote_collateral.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let c = FileCollateral::new(&p).collateral_for(&[]).unwrap();
    assert!(c.tcb_info.starts_with("{\"id\":\"SGX\""));
    let q = std::fs::read(p.replace("_collateral.json", "")).unwrap();
    assert_eq!(
        verify(&q, &c, 1_751_328_000, &TrustRoot::IntelProduction)
            .unwrap()
            .tcb_status,
        "ConfigurationAndSWHardeningNeeded"
    );
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), b"[]").unwrap();
    assert!(matches!(
        FileCollateral::new(bad.path()).load(),
        Err(PlatformError::Corrupt { .. })
    ));
}
