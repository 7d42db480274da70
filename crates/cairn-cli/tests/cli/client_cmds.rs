//! `cairn` client commands against a scripted fake Coordinator (real HTTPS, real simulated quote).

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn cairn(cfg: &Path) -> Command {
    let mut c = Command::cargo_bin("cairn").unwrap();
    c.env("XDG_CONFIG_HOME", cfg).env_remove("HOME");
    c
}

fn out(o: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_client_command_has_help_with_an_example() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["status", "--help"][..],
        &["verify", "--help"],
        &["certificate", "root", "--help"],
        &["certificate", "intermediate", "--help"],
        &["certificate", "chain", "--help"],
        &["manifest", "set", "--help"],
        &["manifest", "get", "--help"],
        &["manifest", "verify", "--help"],
    ] {
        let o = cairn(tmp.path()).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", out(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("Example"), "{args:?}: {s}");
        assert!(
            s.contains("--insecure") || args[0] == "verify",
            "{args:?}: {s}"
        );
    }
}

#[test]
fn usage_and_io_errors_exit_2_with_next_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let o = cairn(tmp.path()).args(["status"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));

    let o = cairn(tmp.path())
        .args(["status", "localhost:4433"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("cairn verify"), "{}", out(&o));

    let o = cairn(tmp.path())
        .args(["status", "127.0.0.1:1", "--insecure"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("cannot connect"), "{}", out(&o));
    assert!(out(&o).contains("WARNING: --insecure"), "{}", out(&o));

    // FR-29: without --insecure and without an era config: attestation configuration is missing
    let o = cairn(tmp.path())
        .current_dir(tmp.path())
        .args(["certificate", "root", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("attestation configuration is missing"),
        "{}",
        out(&o)
    );
}

// ---------- fake Coordinator ----------

struct Fake {
    addr: String,
    mrenclave: String,
    sim_root: std::path::PathBuf,
    manifest: Arc<Mutex<Option<Vec<u8>>>>,
}

fn ca(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

fn start_fake(dir: &Path) -> Fake {
    cairn_crypto::install_default_provider();
    // Coordinator PKI
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("MarbleRun Coordinator");
    let root = root_params.self_signed(&root_key).unwrap();
    let inter_key = KeyPair::generate().unwrap();
    let inter = ca("MarbleRun Coordinator - Intermediate CA")
        .signed_by(&inter_key, &Issuer::from_params(&root_params, &root_key))
        .unwrap();
    let chain_pem = format!("{}{}", inter.pem(), root.pem());
    // Simulated platform quote over SHA-256(root DER)
    let sim_dir = dir.join("sim");
    let platform = cairn_platform::SimPlatformDir::open_or_create(&sim_dir).unwrap();
    let id = cairn_platform::EnclaveIdentity {
        mr_enclave: [0x3f; 32],
        mr_signer: platform.signer_id(),
        isv_prod_id: 1,
        isv_svn: 1,
        debug: false,
    };
    let issuer = platform.issuer(id);
    let raw = cairn_platform::Issuer::quote(&issuer, &cairn_crypto::sha256(root.der())).unwrap();
    let quote = cairn_attest::oe::wrap(&raw);

    let tls = rustls::ServerConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(root.der().to_vec())],
            PrivateKeyDer::from_pem_slice(root_key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let manifest: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let state = (chain_pem, quote, manifest.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().to_string()).unwrap();
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(req, state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    });
    Fake {
        addr: rx.recv().unwrap(),
        mrenclave: hex::encode([0x3f; 32]),
        sim_root: sim_dir.join("root.pem"),
        manifest,
    }
}

type State = (String, Vec<u8>, Arc<Mutex<Option<Vec<u8>>>>);

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    (chain, quote, manifest): State,
) -> hyper::Response<Full<Bytes>> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ok = |data: serde_json::Value| {
        hyper::Response::new(Full::new(Bytes::from(
            serde_json::json!({"status": "success", "data": data}).to_string(),
        )))
    };
    let path = req.uri().path().to_string();
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/api/v2/status") => ok(serde_json::json!({"code": 3, "message": "ready"})),
        ("GET", "/api/v2/quote") => ok(serde_json::json!({"cert": chain, "quote": b64(&quote)})),
        ("POST", "/api/v2/manifest") => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v["manifest"].as_str().unwrap())
                .unwrap();
            *manifest.lock().unwrap() = Some(raw);
            ok(serde_json::json!({"RecoverySecrets": {"r": b64(b"secret")}}))
        }
        ("GET", "/api/v2/manifest") => {
            let m = manifest.lock().unwrap().clone().unwrap_or_default();
            ok(serde_json::json!({
                "manifestSignatureRootECDSA": b64(b"sig"),
                "manifestFingerprint": hex::encode(cairn_crypto::sha256(&m)),
                "manifest": b64(&m),
            }))
        }
        _ => {
            let mut r = hyper::Response::new(Full::new(Bytes::from(
                "{\"status\":\"error\",\"data\":null,\"message\":\"\"}\n",
            )));
            *r.status_mut() = hyper::StatusCode::METHOD_NOT_ALLOWED;
            r
        }
    }
}

#[test]
fn attested_flow_against_fake_coordinator() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    let f = start_fake(tmp.path());
    let root = f.sim_root.to_str().unwrap().to_string();
    let addr = f.addr.replace("127.0.0.1", "localhost");

    // wrong measurement: refused, exit 1, nothing cached
    let o = cairn(&cfg)
        .args([
            "verify",
            &addr,
            "--simulation-root",
            &root,
            "--unique-id",
            &"00".repeat(32),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("UniqueID"), "{}", out(&o));
    assert!(!cfg.join("cairn/coordinator-root.pem").exists());

    // right measurement: verified, cached, JSON object
    let o = cairn(&cfg)
        .args([
            "verify",
            &addr,
            "--simulation-root",
            &root,
            "--unique-id",
            &f.mrenclave,
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["mrenclave"], f.mrenclave);
    assert!(cfg.join("cairn/coordinator-root.pem").exists());

    // status pins the cached root
    let o = cairn(&cfg).args(["status", &addr]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "3: ready");

    // era config with camelCase keys works too
    let era = tmp.path().join("era.json");
    std::fs::write(&era, format!("{{\"uniqueId\":\"{}\"}}", f.mrenclave)).unwrap();
    let o = cairn(&cfg)
        .args(["certificate", "chain", &addr, "--simulation-root", &root])
        .args(["--era-config", era.to_str().unwrap(), "-o"])
        .arg(tmp.path().join("chain.pem"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let chain = std::fs::read_to_string(tmp.path().join("chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);

    // FR-29: --insecure with an empty config dir works and warns
    let empty = tmp.path().join("empty-config");
    let o = cairn(&empty)
        .args(["certificate", "root", &addr, "--insecure", "-o"])
        .arg(tmp.path().join("root.pem"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("NOT attested"), "{}", out(&o));
    assert!(tmp.path().join("root.pem").exists());

    // manifest set (YAML converted to JSON), recovery data written
    let m = br#"{"Packages":{"p":{"UniqueID":"aa"}},"Marbles":{"m":{"Package":"p"}}}"#;
    std::fs::write(tmp.path().join("a.json"), m).unwrap();
    let rec = tmp.path().join("rec.json");
    let o = cairn(&cfg)
        .args(["manifest", "set"])
        .arg(tmp.path().join("a.json"))
        .args([
            &addr,
            "--simulation-root",
            &root,
            "--unique-id",
            &f.mrenclave,
            "-r",
        ])
        .arg(&rec)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(f.manifest.lock().unwrap().as_deref(), Some(&m[..]));
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    assert_eq!(rec["RecoverySecrets"]["r"], "c2VjcmV0");

    // FR-07: a trailing newline fails with both hashes and "whitespace only"; exact file verifies
    let mut b = m.to_vec();
    b.push(b'\n');
    std::fs::write(tmp.path().join("b.json"), &b).unwrap();
    let o = cairn(&cfg)
        .args(["manifest", "verify"])
        .arg(tmp.path().join("b.json"))
        .args([
            &addr,
            "--simulation-root",
            &root,
            "--unique-id",
            &f.mrenclave,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let s = out(&o);
    assert!(s.contains("whitespace only"), "{s}");
    assert!(s.contains(&hex::encode(cairn_crypto::sha256(m))), "{s}");
    assert!(s.contains(&hex::encode(cairn_crypto::sha256(&b))), "{s}");
    let o = cairn(&cfg)
        .args(["manifest", "verify"])
        .arg(tmp.path().join("a.json"))
        .args([
            &addr,
            "--simulation-root",
            &root,
            "--unique-id",
            &f.mrenclave,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("OK"),
        "{}",
        out(&o)
    );

    // manifest get prints the exact manifest
    let o = cairn(&cfg)
        .args([
            "manifest",
            "get",
            &addr,
            "--simulation-root",
            &root,
            "--unique-id",
            &f.mrenclave,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(o.stdout, [&m[..], b"\n"].concat());
}

#[test]
fn verify_json_prints_one_object_on_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let o = cairn(tmp.path())
        .args([
            "verify",
            "127.0.0.1:1",
            "--unique-id",
            &"00".repeat(32),
            "--json",
        ])
        .args(["--collateral", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert!(v["error"].as_str().unwrap().contains("collateral"), "{v}");
}
