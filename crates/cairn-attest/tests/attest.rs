//! Integration tests for cairn-attest: real recorded quotes at pinned times, tamper matrix,
//! Fortanix samples, the simulated platform round trip and policy field cases.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use cairn_attest::sim::{measure, EnclaveIdentity, SimPlatform, SimSettings};
use cairn_attest::{
    check_binding, check_policy, oe, parse_evidence, parse_id_hex, verify, Collateral,
    DcapErrorKind, FormatError, PackagePolicy, PolicyError, SealKeyKind, SgxQuote, Tee, TrustRoot,
    Verdict, VerifyError,
};
use proptest::prelude::*;
use time::OffsetDateTime;

const NOW_SGX: u64 = 1_751_328_000;
const SIM_NOW: i64 = 1_800_000_000;

fn data(path: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../testdata/attestation/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn coll(path: &str) -> Collateral {
    serde_json::from_slice(&data(path)).unwrap()
}

fn sgx() -> (Vec<u8>, Collateral) {
    (
        data("dcap-qvl/sgx_quote"),
        coll("dcap-qvl/sgx_quote_collateral.json"),
    )
}

fn err_of(r: Result<Verdict, VerifyError>) -> VerifyError {
    match r {
        Ok(v) => panic!("expected an error, got verdict {v:?}"),
        Err(e) => e,
    }
}

// ---------- real SGX sample ----------

#[test]
fn real_sgx_quote_verifies_with_exact_fields() {
    let (q, c) = sgx();
    let v = verify(&q, &c, NOW_SGX, &TrustRoot::IntelProduction).unwrap();
    assert_eq!(v.trust_root, "intel");
    assert_eq!(v.tee, Tee::Sgx);
    assert_eq!(
        hex::encode(v.mr_enclave),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        hex::encode(v.mr_signer),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!((v.isv_prod_id, v.isv_svn, v.debug), (0, 0, false));
    let mut rd = [0u8; 64];
    rd[..13].copy_from_slice(b"Hello, world!");
    assert_eq!(v.report_data, rd);
    assert_eq!(v.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_eq!(v.advisory_ids, vec!["INTEL-SA-00289", "INTEL-SA-00615"]);
    // OE-wrapped evidence gives the identical verdict.
    assert_eq!(
        verify(&oe::wrap(&q), &c, NOW_SGX, &TrustRoot::IntelProduction).unwrap(),
        v
    );
}

#[test]
fn real_sgx_quote_parses() {
    let (q, _) = sgx();
    let p = SgxQuote::parse(&q).unwrap();
    assert_eq!(
        (p.version, p.attestation_key_type, p.qe_svn, p.pce_svn),
        (3, 2, 10, 15)
    );
    assert_eq!(p.cert_data_type, 5);
    assert_eq!(p.cert_data.len(), 3548);
    assert_eq!(p.cert_data.last(), Some(&0));
    assert_eq!(
        hex::encode(p.attributes),
        "0500000000000000e700000000000000"
    );
    assert!(!p.debug);
    assert_eq!(
        hex::encode_upper(p.qe_vendor_id),
        "939A7233F79C4CA9940A0DB3957F0607"
    );
    assert_eq!(SgxQuote::parse(&oe::wrap(&q)).unwrap(), p);
}

#[test]
fn real_sgx_quote_collateral_window() {
    let (q, c) = sgx();
    let e = err_of(verify(&q, &c, 1_750_330_570, &TrustRoot::IntelProduction));
    assert!(
        e.message().contains("TCBInfo issue date is in the future"),
        "{e}"
    );
    assert_eq!(e.kind(), Some(DcapErrorKind::CollateralNotYetValid));
    let e = err_of(verify(&q, &c, 1_752_919_279, &TrustRoot::IntelProduction));
    assert!(e.message().contains("QE Identity expired"), "{e}");
    assert_eq!(e.kind(), Some(DcapErrorKind::CollateralExpired));
    // Window edges are inclusive.
    assert!(verify(&q, &c, 1_750_330_571, &TrustRoot::IntelProduction).is_ok());
}

#[test]
fn real_sgx_quote_is_rejected_under_a_simulation_root() {
    let (q, c) = sgx();
    let sim = sim_platform();
    let root = TrustRoot::Simulation(sim.root_der().to_vec());
    let e = err_of(verify(&q, &c, NOW_SGX, &root));
    assert_eq!(e.kind(), Some(DcapErrorKind::CertificateChain), "{e}");
    assert!(e.to_string().contains(&root.to_string()));
}

#[test]
fn real_sgx_quote_policy_marblerun_defaults() {
    let (q, c) = sgx();
    let v = verify(&q, &c, NOW_SGX, &TrustRoot::IntelProduction).unwrap();
    let mut p = PackagePolicy {
        unique_id: Some(v.mr_enclave),
        ..Default::default()
    };
    assert_eq!(
        check_policy(&v, &p),
        Err(PolicyError::TcbStatusNotAccepted {
            actual: "ConfigurationAndSWHardeningNeeded".into(),
            accepted: vec!["SWHardeningNeeded".into()],
        })
    );
    p.accepted_tcb_statuses = vec![
        "UpToDate".into(),
        "ConfigurationAndSWHardeningNeeded".into(),
    ];
    assert_eq!(check_policy(&v, &p), Ok(()));
    // The advisory whitelist applies only to SWHardeningNeeded.
    p.accepted_advisories = vec!["INTEL-SA-00001".into()];
    assert_eq!(check_policy(&v, &p), Ok(()));
}

#[test]
fn tamper_matrix() {
    let (q, c) = sgx();
    let root = TrustRoot::IntelProduction;
    type Tamper = fn(&mut Vec<u8>, &mut Collateral);
    let cases: Vec<(&str, Tamper, &str, DcapErrorKind)> = vec![
        (
            "REPORTDATA[0]",
            |q, _| q[368] ^= 1,
            "ISV enclave report signature is invalid",
            DcapErrorKind::BadSignature,
        ),
        (
            "MRENCLAVE[0]",
            |q, _| q[112] ^= 1,
            "ISV enclave report signature is invalid",
            DcapErrorKind::BadSignature,
        ),
        (
            "ISV signature",
            |q, _| q[440] ^= 1,
            "ISV enclave report signature is invalid",
            DcapErrorKind::BadSignature,
        ),
        (
            "QE report",
            |q, _| q[600] ^= 1,
            "Signature is invalid for qe_report in quote",
            DcapErrorKind::BadSignature,
        ),
        (
            "PCK leaf PEM",
            |q, _| q[1352] = if q[1352] == b'A' { b'B' } else { b'A' },
            "Failed to verify certificate chain: InvalidSignatureForPublicKey",
            DcapErrorKind::CertificateChain,
        ),
        (
            "tcb_info_signature[5]",
            |_, c| c.tcb_info_signature[5] ^= 1,
            "Signature is invalid for tcb_info in quote_collateral",
            DcapErrorKind::BadSignature,
        ),
        (
            "qe_identity isvprodid",
            |_, c| c.qe_identity = c.qe_identity.replace("\"isvprodid\":1", "\"isvprodid\":2"),
            "Signature is invalid for qe_identity in quote_collateral",
            DcapErrorKind::BadSignature,
        ),
        (
            "root_ca_crl[40]",
            |_, c| c.root_ca_crl[40] ^= 1,
            "Failed to parse root CA CRL: InvalidCrlSignatureForPublicKey",
            DcapErrorKind::CertificateChain,
        ),
        (
            "truncate to 1000",
            |q, _| q.truncate(1000),
            "Failed to decode quote: Not enough data to fill buffer",
            DcapErrorKind::QuoteDecode,
        ),
    ];
    for (name, tamper, msg, kind) in cases {
        let (mut q2, mut c2) = (q.clone(), c.clone());
        tamper(&mut q2, &mut c2);
        assert!(q2 != q || c2 != c, "{name}: tamper changed nothing");
        let e = err_of(verify(&q2, &c2, NOW_SGX, &root));
        assert_eq!(e.message(), msg, "{name}");
        assert_eq!(e.kind(), Some(kind), "{name}");
    }
}

// ---------- TDX ----------

#[test]
fn tdx_quotes() {
    let q = data("dcap-qvl/tdx_quote");
    let v = verify(
        &q,
        &coll("dcap-qvl/tdx_quote_collateral.json"),
        NOW_SGX,
        &TrustRoot::IntelProduction,
    )
    .unwrap();
    assert_eq!(v.tee, Tee::Tdx);
    assert_eq!(v.tcb_status, "UpToDate");
    let tdx = v.tdx.as_ref().unwrap();
    let mrtd = hex::encode(&tdx.mr_td);
    assert!(
        mrtd.starts_with("91eb2b44") && mrtd.ends_with("3118b7"),
        "{mrtd}"
    );
    assert_eq!(&tdx.mr_td[..32], &v.mr_enclave);
    let rd = hex::encode(v.report_data);
    assert!(
        rd.starts_with("9a9d48e7") && rd.ends_with("2b523f20"),
        "{rd}"
    );
    assert_eq!(parse_evidence(&q).unwrap().version, 4);

    let q = data("dcap-qvl/tdx_quote_td15ex");
    let v = verify(
        &q,
        &coll("dcap-qvl/tdx_quote_td15ex_collateral.json"),
        1_792_540_800,
        &TrustRoot::IntelProduction,
    )
    .unwrap();
    assert_eq!(v.tcb_status, "UpToDate");
    let mrtd = hex::encode(&v.tdx.unwrap().mr_td);
    assert!(
        mrtd.starts_with("2a674327") && mrtd.ends_with("deec2b70"),
        "{mrtd}"
    );

    let q = data("dcap-qvl/tdx_quote_outdated");
    let e = err_of(verify(
        &q,
        &coll("dcap-qvl/tdx_quote_outdated_collateral.json"),
        1_772_323_200,
        &TrustRoot::IntelProduction,
    ));
    assert_eq!(e.message(), "No matching TCB level found");
    assert_eq!(e.kind(), Some(DcapErrorKind::NoMatchingTcbLevel));
    // SgxQuote refuses TDX explicitly.
    assert_eq!(
        SgxQuote::parse(&q),
        Err(FormatError::UnsupportedVersion {
            version: 5,
            tee_type: 0x81
        })
    );
}

// ---------- Fortanix debug quotes ----------

#[test]
fn fortanix_certtype5_parse_and_fmspc_mismatch() {
    let q = data("fortanix/sgx_quote_debug_certtype5.bin");
    let p = SgxQuote::parse(&q).unwrap();
    assert!(p.debug);
    assert_eq!(
        hex::encode(p.attributes),
        "07000000000000001f00000000000000"
    );
    assert_eq!(
        hex::encode(p.mr_enclave),
        "2531fd89facb97c6bab5f343805afe4dc051c2bef0d11309ac553c404326dda2"
    );
    assert_eq!(
        hex::encode(p.mr_signer),
        "9affcfae47b848ec2caf1c49b4b283531e1cc425f93582b36806e52a43d78d1a"
    );
    assert_eq!(
        hex::encode(&p.report_data[..32]),
        "240aebbc42245d152a01d2aa755750dae361dd19ffcaf7eb0c14deab93d59820"
    );
    assert_eq!((p.qe_svn, p.pce_svn, p.cert_data_type), (5, 10, 5));
    let e = err_of(verify(
        &q,
        &coll("dcap-qvl/sgx_quote_collateral.json"),
        NOW_SGX,
        &TrustRoot::IntelProduction,
    ));
    assert_eq!(e.message(), "Fmspc mismatch");
    assert_eq!(e.kind(), Some(DcapErrorKind::FmspcMismatch));
}

#[test]
fn fortanix_certtype3() {
    let q = data("fortanix/sgx_quote_debug_certtype3.bin");
    let p = SgxQuote::parse(&q).unwrap();
    assert!(p.debug);
    assert_eq!(p.cert_data_type, 3);
    assert_eq!(p.cert_data.len(), 404);
    assert_eq!(p.report_data, [0; 64]);
    let dq = dcap_qvl::quote::Quote::parse(&q).unwrap();
    assert_eq!(
        format!("{:#}", dcap_qvl::intel::quote_fmspc(&dq).unwrap_err()),
        "Certification data type 3 is not supported (expecting 4 or 5)"
    );
    let e = err_of(verify(
        &q,
        &coll("dcap-qvl/sgx_quote_collateral.json"),
        NOW_SGX,
        &TrustRoot::IntelProduction,
    ));
    assert!(
        e.message()
            .starts_with("Unsupported DCAP PCK cert format: 3"),
        "{e}"
    );
    assert_eq!(e.kind(), Some(DcapErrorKind::UnsupportedCertType));
}

// ---------- simulation ----------

fn sim_now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(SIM_NOW).unwrap()
}

fn sim_platform() -> &'static SimPlatform {
    static P: OnceLock<SimPlatform> = OnceLock::new();
    P.get_or_init(|| SimPlatform::generate(sim_now(), SimSettings::default()).unwrap())
}

fn sim_id(p: &SimPlatform) -> EnclaveIdentity {
    EnclaveIdentity {
        mr_enclave: measure(b"marble executable"),
        mr_signer: p.signer_id(),
        isv_prod_id: 7,
        isv_svn: 3,
        debug: false,
    }
}

fn sim_verify(p: &SimPlatform, id: &EnclaveIdentity, rd: &[u8]) -> Result<Verdict, VerifyError> {
    let q = p.quote(id, rd).unwrap();
    let c = p.collateral(sim_now()).unwrap();
    verify(
        &q,
        &c,
        SIM_NOW as u64,
        &TrustRoot::Simulation(p.root_der().to_vec()),
    )
}

#[test]
fn sim_round_trip_and_binding() {
    let p = sim_platform();
    let id = sim_id(p);
    let cert = b"coordinator root cert DER";
    let nonce = b"nonce-1";
    let rd = cairn_crypto::sha256_concat(&[cert, nonce]);
    let q = p.quote(&id, &rd).unwrap();
    let c = p.collateral(sim_now()).unwrap();
    let root = TrustRoot::Simulation(p.root_der().to_vec());
    let v = verify(&q, &c, SIM_NOW as u64, &root).unwrap();
    assert_eq!(
        v.trust_root,
        format!(
            "simulation:{}",
            hex::encode(cairn_crypto::sha256(p.root_der()))
        )
    );
    assert_eq!(
        (v.mr_enclave, v.mr_signer, v.isv_prod_id, v.isv_svn, v.debug),
        (id.mr_enclave, id.mr_signer, 7, 3, false)
    );
    assert_eq!(&v.report_data[..32], &rd);
    assert_eq!(v.report_data[32..], [0; 32]);
    assert_eq!(
        (v.tcb_status.as_str(), v.advisory_ids.len()),
        ("UpToDate", 0)
    );
    assert_eq!(check_binding(&v, cert, nonce), Ok(()));
    assert!(matches!(
        check_binding(&v, cert, b"nonce-2"),
        Err(PolicyError::BindingMismatch { .. })
    ));
    assert!(matches!(
        check_binding(&v, b"other cert", nonce),
        Err(PolicyError::BindingMismatch { .. })
    ));
    // OE-wrapped evidence verifies too.
    assert_eq!(verify(&oe::wrap(&q), &c, SIM_NOW as u64, &root).unwrap(), v);
    // An OE envelope announcing the wrong size is a format error before dcap-qvl runs.
    let mut w = oe::wrap(&q);
    w.push(0);
    assert!(matches!(
        verify(&w, &c, SIM_NOW as u64, &root),
        Err(VerifyError::Format(FormatError::OeSizeMismatch { .. }))
    ));
    // The same quote and collateral are refused under Intel's root.
    let e = err_of(verify(&q, &c, SIM_NOW as u64, &TrustRoot::IntelProduction));
    assert_eq!(
        e.message(),
        "Failed to parse root CA CRL: InvalidCrlSignatureForPublicKey"
    );
    // A second platform's root does not accept the first platform's quote.
    let other = SimPlatform::generate(sim_now(), SimSettings::default()).unwrap();
    let e = err_of(verify(
        &q,
        &c,
        SIM_NOW as u64,
        &TrustRoot::Simulation(other.root_der().to_vec()),
    ));
    assert_eq!(e.kind(), Some(DcapErrorKind::CertificateChain), "{e}");
    // Tampered report data.
    let mut t = q.clone();
    t[368] ^= 1;
    assert_eq!(
        err_of(verify(&t, &c, SIM_NOW as u64, &root)).message(),
        "ISV enclave report signature is invalid"
    );
}

#[test]
fn sim_collateral_expiry_with_pinned_now() {
    let p = sim_platform();
    let q = p.quote(&sim_id(p), &[1; 32]).unwrap();
    let c = p.collateral(sim_now()).unwrap();
    let root = TrustRoot::Simulation(p.root_der().to_vec());
    let day = 86_400u64;
    assert!(verify(&q, &c, SIM_NOW as u64 + 29 * day, &root).is_ok());
    let e = err_of(verify(&q, &c, SIM_NOW as u64 + 31 * day, &root));
    assert_eq!(e.kind(), Some(DcapErrorKind::CollateralExpired), "{e}");
    let e = err_of(verify(&q, &c, SIM_NOW as u64 - 120, &root));
    assert_eq!(e.kind(), Some(DcapErrorKind::CollateralNotYetValid), "{e}");
}

#[test]
fn sim_debug_enclave_verifies_and_policy_judges_debug() {
    let p = sim_platform();
    let mut id = sim_id(p);
    id.debug = true;
    let v = sim_verify(p, &id, &[]).unwrap();
    assert!(v.debug);
    let mut pol = PackagePolicy {
        unique_id: Some(id.mr_enclave),
        ..Default::default()
    };
    assert_eq!(
        check_policy(&v, &pol),
        Err(PolicyError::Mismatch {
            field: "Debug",
            expected: "false".into(),
            actual: "true".into()
        })
    );
    pol.debug = true;
    assert_eq!(check_policy(&v, &pol), Ok(()));
}

fn with_status(status: &str, adv: &[&str]) -> SimPlatform {
    let mut p = sim_platform().clone();
    p.set_settings(SimSettings {
        tcb_status: status.into(),
        advisory_ids: adv.iter().map(|s| s.to_string()).collect(),
    })
    .unwrap();
    p
}

fn uid_policy(p: &SimPlatform, statuses: &[&str], adv: &[&str]) -> PackagePolicy {
    PackagePolicy {
        unique_id: Some(sim_id(p).mr_enclave),
        accepted_tcb_statuses: statuses.iter().map(|s| s.to_string()).collect(),
        accepted_advisories: adv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn fr19_sw_hardening_and_advisories() {
    let p = with_status("SWHardeningNeeded", &["INTEL-SA-00615"]);
    let v = sim_verify(&p, &sim_id(&p), &[]).unwrap();
    assert_eq!(v.tcb_status, "SWHardeningNeeded");
    assert_eq!(v.advisory_ids, vec!["INTEL-SA-00615"]);
    // a) only UpToDate accepted → reject
    assert_eq!(
        check_policy(&v, &uid_policy(&p, &["UpToDate"], &[])),
        Err(PolicyError::TcbStatusNotAccepted {
            actual: "SWHardeningNeeded".into(),
            accepted: vec!["UpToDate".into()]
        })
    );
    // b) no policy fields → accept
    assert_eq!(check_policy(&v, &uid_policy(&p, &[], &[])), Ok(()));
    // d) advisory listed → accept (case-insensitive)
    assert_eq!(
        check_policy(&v, &uid_policy(&p, &[], &["intel-sa-00615"])),
        Ok(())
    );
    // c) a second advisory not listed → reject naming it
    let p2 = with_status("SWHardeningNeeded", &["INTEL-SA-00615", "INTEL-SA-00657"]);
    let v2 = sim_verify(&p2, &sim_id(&p2), &[]).unwrap();
    let e = check_policy(&v2, &uid_policy(&p2, &[], &["INTEL-SA-00615"])).unwrap_err();
    assert_eq!(
        e,
        PolicyError::AdvisoriesNotAccepted {
            offending: vec!["INTEL-SA-00657".into()],
            accepted: vec!["INTEL-SA-00615".into()],
            actual: vec!["INTEL-SA-00615".into(), "INTEL-SA-00657".into()],
        }
    );
    assert!(e.to_string().contains("INTEL-SA-00657"));
}

#[test]
fn fr20_up_to_date_with_informational_advisory() {
    let p = with_status("UpToDate", &["INTEL-DOC-10000"]);
    let v = sim_verify(&p, &sim_id(&p), &[]).unwrap();
    assert_eq!(v.tcb_status, "UpToDate");
    assert_eq!(v.advisory_ids, vec!["INTEL-DOC-10000"]);
    assert_eq!(
        check_policy(&v, &uid_policy(&p, &[], &["INTEL-SA-00615"])),
        Ok(())
    );
}

#[test]
fn other_statuses_reach_their_policy_result() {
    for status in [
        "OutOfDate",
        "ConfigurationNeeded",
        "OutOfDateConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
    ] {
        let p = with_status(status, &["INTEL-SA-00001"]);
        let v = sim_verify(&p, &sim_id(&p), &[]).unwrap();
        assert_eq!(v.tcb_status, status);
        assert!(
            matches!(
                check_policy(&v, &uid_policy(&p, &[], &[])),
                Err(PolicyError::TcbStatusNotAccepted { .. })
            ),
            "{status}"
        );
        // Accepted when listed; advisories are not filtered for non-SWHardeningNeeded statuses.
        assert_eq!(
            check_policy(&v, &uid_policy(&p, &[status], &["INTEL-SA-99999"])),
            Ok(()),
            "{status}"
        );
    }
    let p = with_status("Revoked", &[]);
    let e = err_of(sim_verify(&p, &sim_id(&p), &[]));
    assert_eq!(e.message(), "TCB status is invalid: Revoked");
    assert_eq!(e.kind(), Some(DcapErrorKind::Revoked));
}

#[test]
fn fr23_identity_matching() {
    let p = sim_platform();
    let u = sim_id(p);
    let v = sim_verify(p, &u, &[]).unwrap();
    // a) other UniqueID → reject naming the field
    let other = [0xcc; 32];
    let e = check_policy(
        &v,
        &PackagePolicy {
            unique_id: Some(other),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        e,
        PolicyError::Mismatch {
            field: "UniqueID",
            expected: hex::encode(other),
            actual: hex::encode(u.mr_enclave)
        }
    );
    // b) upper-case hex of the right value → accept
    let upper = hex::encode_upper(u.mr_enclave);
    let pol = PackagePolicy {
        unique_id: Some(parse_id_hex("UniqueID", &upper).unwrap()),
        ..Default::default()
    };
    assert_eq!(check_policy(&v, &pol), Ok(()));
    // c) SignerID S, ProductID 7, SecurityVersion 3 against (sid, pid, svn) quotes
    let s = p.signer_id();
    let pol = PackagePolicy {
        signer_id: Some(parse_id_hex("SignerID", &hex::encode_upper(s)).unwrap()),
        product_id: Some(7),
        security_version: Some(3),
        ..Default::default()
    };
    let run = |sid: [u8; 32], pid: u16, svn: u16| {
        let id = EnclaveIdentity {
            mr_signer: sid,
            isv_prod_id: pid,
            isv_svn: svn,
            ..sim_id(p)
        };
        check_policy(&sim_verify(p, &id, &[]).unwrap(), &pol)
    };
    assert_eq!(
        run(s, 8, 3),
        Err(PolicyError::Mismatch {
            field: "ProductID",
            expected: "7".into(),
            actual: "8".into()
        })
    );
    assert_eq!(
        run(s, 7, 2),
        Err(PolicyError::SecurityVersionTooLow {
            minimum: 3,
            actual: 2
        })
    );
    assert_eq!(run(s, 7, 4), Ok(()));
    let s2 = [0x5a; 32];
    assert_eq!(
        run(s2, 7, 3),
        Err(PolicyError::Mismatch {
            field: "SignerID",
            expected: hex::encode(s),
            actual: hex::encode(s2)
        })
    );
}

#[test]
fn sim_platform_serde_round_trip_and_seal_keys() {
    let p = sim_platform();
    let json = serde_json::to_string(p).unwrap();
    let p2: SimPlatform = serde_json::from_str(&json).unwrap();
    p2.validate().unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&json).unwrap();
    forged["signer_id"] = serde_json::Value::String(hex::encode([0x5a; 32]));
    let forged: SimPlatform = serde_json::from_value(forged).unwrap();
    assert!(matches!(
        forged.validate(),
        Err(cairn_attest::sim::SimError::Corrupt(_))
    ));
    assert_eq!(p2.root_der(), p.root_der());
    assert_eq!(p2.signer_id(), p.signer_id());
    // A quote from the restored platform verifies under the original root and collateral.
    let q = p2.quote(&sim_id(p), &[9; 64]).unwrap();
    let c = p.collateral(sim_now()).unwrap();
    assert!(verify(
        &q,
        &c,
        SIM_NOW as u64,
        &TrustRoot::Simulation(p.root_der().to_vec())
    )
    .is_ok());
    // Collateral JSON round trip (the form cairn-platform writes).
    let cj = serde_json::to_string(&c).unwrap();
    let c2: Collateral = serde_json::from_str(&cj).unwrap();
    assert_eq!(c2, c);

    let id = sim_id(p);
    let k = p.seal_key(SealKeyKind::Enclave, &id);
    assert_eq!(p2.seal_key(SealKeyKind::Enclave, &id), k);
    let id_b = EnclaveIdentity {
        mr_enclave: [3; 32],
        ..id.clone()
    };
    assert_ne!(p.seal_key(SealKeyKind::Enclave, &id_b), k);
    // Signer key: same across MRENCLAVE values, differs per ISVPRODID and per platform.
    assert_eq!(
        p.seal_key(SealKeyKind::Signer, &id_b),
        p.seal_key(SealKeyKind::Signer, &id)
    );
    let id_c = EnclaveIdentity {
        isv_prod_id: 8,
        ..id.clone()
    };
    assert_ne!(
        p.seal_key(SealKeyKind::Signer, &id_c),
        p.seal_key(SealKeyKind::Signer, &id)
    );
    assert_ne!(
        p.seal_key(SealKeyKind::Signer, &id),
        p.seal_key(SealKeyKind::Enclave, &id)
    );
    let other = SimPlatform::generate(sim_now(), SimSettings::default()).unwrap();
    assert_ne!(other.seal_key(SealKeyKind::Enclave, &id), k);
    // Debug output does not leak key material.
    assert!(!format!("{p:?}").contains(&json[json.find("root_key").unwrap() + 11..][..20]));
}

#[test]
fn sim_quote_layout_offsets() {
    let p = sim_platform();
    let id = sim_id(p);
    let q = p.quote(&id, b"abc").unwrap();
    assert_eq!(&q[0..2], &[3, 0]);
    assert_eq!(&q[12..28], &dcap_qvl::INTEL_QE_VENDOR_ID);
    assert_eq!(&q[112..144], &id.mr_enclave);
    assert_eq!(&q[176..208], &id.mr_signer);
    assert_eq!(&q[304..308], &[7, 0, 3, 0]);
    assert_eq!(&q[368..371], b"abc");
    // QE report_data = SHA-256(att key ‖ auth data).
    let att = &q[500..564];
    let auth = &q[1014..1046];
    assert_eq!(u16::from_le_bytes([q[1012], q[1013]]), 32);
    assert_eq!(
        &q[564 + 320..564 + 352],
        &cairn_crypto::sha256_concat(&[att, auth])
    );
    assert_eq!(u16::from_le_bytes([q[1046], q[1047]]), 5);
    assert_eq!(q.last(), Some(&0));
    let chain =
        dcap_qvl::intel::extract_cert_chain(&dcap_qvl::quote::Quote::parse(&q).unwrap()).unwrap();
    assert_eq!(chain.len(), 3);
    assert_eq!(chain[2], p.root_der());
}

#[test]
fn every_truncation_of_a_sim_quote_is_a_typed_error() {
    let p = sim_platform();
    let q = p.quote(&sim_id(p), &[1; 32]).unwrap();
    let c = p.collateral(sim_now()).unwrap();
    let root = TrustRoot::Simulation(p.root_der().to_vec());
    for len in 0..q.len() {
        let t = &q[..len];
        assert!(SgxQuote::parse(t).is_err(), "parse accepted length {len}");
        assert!(
            parse_evidence(t).is_err(),
            "parse_evidence accepted length {len}"
        );
        assert!(
            verify(t, &c, SIM_NOW as u64, &root).is_err(),
            "verify accepted length {len}"
        );
        // The same truncation inside a consistent OE envelope.
        assert!(
            verify(&oe::wrap(t), &c, SIM_NOW as u64, &root).is_err(),
            "verify accepted wrapped length {len}"
        );
    }
    assert!(verify(&q, &c, SIM_NOW as u64, &root).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let p = sim_platform();
        let c = p.collateral(sim_now()).unwrap();
        let _ = SgxQuote::parse(&bytes);
        let _ = parse_evidence(&bytes);
        prop_assert!(verify(&bytes, &c, SIM_NOW as u64, &TrustRoot::Simulation(p.root_der().to_vec())).is_err());
    }

    #[test]
    fn random_sgx_header_prefix_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..5000)) {
        // Valid-looking v3 SGX header followed by random bytes: exercises the inner length fields.
        let mut q = vec![3u8, 0, 2, 0, 0, 0, 0, 0];
        q.extend(tail);
        let _ = SgxQuote::parse(&q);
        let _ = parse_evidence(&oe::wrap(&q));
    }
}
