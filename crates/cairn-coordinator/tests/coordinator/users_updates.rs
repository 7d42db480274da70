//! Issue 6 (server side): users and roles, the secrets API, package and full manifest updates,
//! the update log, MonotonicCounter and SignQuoteEndpoint. Every request goes over a real TLS
//! connection with the test user keys; marble-to-marble handshakes use the credentials the
//! Coordinator handed out.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cairn_api::rpc::ActivationResp;
use cairn_platform::{EnclaveIdentity, Issuer as _};
use http_body_util::BodyExt as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::support::*;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests/keys");
const UNAUTHORIZED: &str = r#"{"status":"fail","data":null,"message":"unauthorized user: client certificate did not match any MarbleRun users"}"#;
const X: &str = "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A TLS client identity: the chain sent (first = the certificate whose key signs) and the key.
#[derive(Clone)]
struct Who {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
}

fn pem_file(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()
}

fn user(name: &str) -> Who {
    Who {
        chain: pem_ders(&pem_file(&format!("{name}.crt"))),
        key: pem_ders(&pem_file(&format!("{name}.key"))).remove(0),
    }
}

fn cert_der(name: &str) -> Vec<u8> {
    pem_ders(&pem_file(&format!("{name}.crt"))).remove(0)
}

/// One HTTPS/1.1 request, presenting `who` as the client certificate chain.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    who: Option<&Who>,
) -> Resp {
    try_call(addr, method, path, body, who).await.unwrap()
}

/// [`call`], returning connection-level failures (handshake refused) as `Err`.
async fn try_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    who: Option<&Who>,
) -> Result<Resp, String> {
    let b = rustls::ClientConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder::default()));
    let mut cfg = match who {
        // A resolver rather than `with_client_auth_cert`: rustls would refuse to send a
        // certificate with a key that does not match it, which one test does on purpose.
        Some(w) => {
            let signer = cairn_crypto::provider()
                .key_provider
                .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    w.key.clone(),
                )))
                .unwrap();
            let chain = w.chain.iter().cloned().map(CertificateDer::from).collect();
            let ck = Arc::new(rustls::sign::CertifiedKey::new(chain, signer));
            b.with_client_cert_resolver(Arc::new(FixedClientCert(ck)))
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(http_body_util::Full::new(Bytes::from(
            body.unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Ok(Resp {
        status,
        content_type,
        body,
    })
}

/// Always presents one certificate chain and key.
#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn b64_manifest(raw: &str) -> Vec<u8> {
    json!({ "manifest": B64.encode(raw) })
        .to_string()
        .into_bytes()
}

async fn get_secrets(c: &Coord, query: &str, who: Option<&Who>) -> Resp {
    call(
        c.client(),
        "GET",
        &format!("/api/v2/secrets?{query}"),
        None,
        who,
    )
    .await
}

async fn set_secrets(c: &Coord, secrets: Value, who: &Who) -> Resp {
    let body = json!({ "secrets": secrets }).to_string().into_bytes();
    call(c.client(), "POST", "/api/v2/secrets", Some(body), Some(who)).await
}

async fn update(c: &Coord, raw: &str, who: &Who) -> Resp {
    call(
        c.client(),
        "POST",
        "/api/v2/update",
        Some(b64_manifest(raw)),
        Some(who),
    )
    .await
}

async fn ack(c: &Coord, raw: &str, who: &Who) -> Resp {
    call(
        c.client(),
        "POST",
        "/api/v2/update-manifest",
        Some(b64_manifest(raw)),
        Some(who),
    )
    .await
}

async fn update_log(c: &Coord) -> Vec<Value> {
    let r = call(c.client(), "GET", "/api/v2/update", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    assert_eq!(v["status"], "success");
    v["data"]["updateLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
        .collect()
}

async fn fingerprint(c: &Coord) -> String {
    let r = call(c.client(), "GET", "/api/v2/manifest", None, None).await;
    r.json()["data"]["manifestFingerprint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sha_hex(raw: &str) -> String {
    hex::encode(cairn_crypto::sha256(raw.as_bytes()))
}

/// Asserts a 200 JSend success and returns `data`.
fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

/// Asserts a JSend `error` (Go `http.Error` shape) with exactly `message`.
fn assert_error(r: &Resp, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    let expect = format!(
        "{}\n",
        json!({"status": "error", "data": null, "message": message})
    );
    assert_eq!(r.text(), expect);
}

fn assert_unauthorized(r: &Resp) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.text(), UNAUTHORIZED);
}

fn not_allowed(user: &str, action: &str, names: &str, resource: &str) -> String {
    if names.is_empty() {
        format!(
            "user \"{user}\" is not allowed to {action}: none of the user's roles grants it (the manifest must give the user a role with ResourceType \"{resource}\" and Actions [\"{action}\"])"
        )
    } else {
        format!(
            "user \"{user}\" is not allowed to {action} on {names}: none of the user's roles grants it (the manifest must give the user a role with ResourceType \"{resource}\", Actions [\"{action}\"] and these ResourceNames)"
        )
    }
}

/// Activates a fresh simulated marble of type `t` with UUID `uuid` and identity `id`.
async fn act(
    c: &Coord,
    t: &str,
    uuid: &str,
    id: &EnclaveIdentity,
) -> Result<ActivationResp, tonic::Status> {
    let sim = c.sim();
    let marble = TestMarble::new();
    activate(c.mesh(), &marble, t, uuid, marble.quote(&sim, id))
        .await
        .0
}

/// The credentials a marble received: leaf chain (leaf, intermediate), key, marble root.
struct MarbleCreds {
    who: Who,
    marble_root: Vec<u8>,
}

fn creds(resp: &ActivationResp) -> MarbleCreds {
    MarbleCreds {
        who: Who {
            chain: pem_ders(&env_str(resp, "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN")),
            key: pem_ders(&env_str(resp, "MARBLE_PREDEFINED_PRIVATE_KEY")).remove(0),
        },
        marble_root: pem_ders(&env_str(resp, "MARBLE_PREDEFINED_ROOT_CA")).remove(0),
    }
}

/// A real mutual-TLS handshake on loopback: the server presents `server` and verifies client
/// certificates against `server_trust`; the client presents `client` and verifies the server
/// against `client_trust` (name `localhost`). Ok only when both sides completed and a byte
/// went through; Err names the side(s) that failed.
async fn mtls(
    server: &Who,
    server_trust: &[u8],
    client: &Who,
    client_trust: &[u8],
) -> Result<(), String> {
    let provider = cairn_crypto::provider();
    let roots = |der: &[u8]| {
        let mut r = rustls::RootCertStore::empty();
        r.add(CertificateDer::from(der.to_vec())).unwrap();
        Arc::new(r)
    };
    let chain = |w: &Who| -> Vec<CertificateDer<'static>> {
        w.chain.iter().cloned().map(CertificateDer::from).collect()
    };
    let key = |w: &Who| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(w.key.clone()));
    let cv = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(server_trust),
        provider.clone(),
    )
    .build()
    .unwrap();
    let scfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(cv)
        .with_single_cert(chain(server), key(server))
        .unwrap();
    let sv = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(client_trust),
        provider.clone(),
    )
    .build()
    .unwrap();
    let ccfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_webpki_verifier(sv)
        .with_client_auth_cert(chain(client), key(client))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(scfg));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(Arc::new(ccfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        if buf == b"ok" {
            Ok(())
        } else {
            Err(format!("client read {buf:?}"))
        }
    };
    let client = tokio::time::timeout(Duration::from_secs(20), client_side)
        .await
        .unwrap_or_else(|_| Err("client timed out".into()));
    let server = tokio::time::timeout(Duration::from_secs(20), server_task)
        .await
        .map_err(|_| "server timed out".to_string())
        .and_then(|j| j.map_err(|e| e.to_string()))
        .and_then(|r| r);
    match (server, client) {
        (Ok(()), Ok(())) => Ok(()),
        (s, c) => Err(format!("server: {s:?}; client: {c:?}")),
    }
}

/// Captures WARN-and-above log output of the whole test process (installed once).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let w = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Sink(w.clone()))
            .try_init()
            .expect("no other global subscriber in this test binary");
        buf
    })
    .clone()
}

/// Polls the captured logs for `needle` (the warning is written by a server task).
async fn wait_for_log(needle: &str) {
    let logs = captured_logs();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        if text.contains(needle) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log line {needle:?} not found in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Coordinator whose simulated platform reports `tcb` (with one advisory).
async fn start_with_tcb(tcb: &str) -> Coord {
    let tmp = tempfile::tempdir().unwrap();
    let settings = cairn_platform::SimSettings {
        tcb_status: tcb.into(),
        advisory_ids: vec!["INTEL-SA-00615".into()],
    };
    cairn_platform::SimPlatformDir::open_or_create_with(
        &tmp.path().join("seal").join("sim"),
        ::time::OffsetDateTime::now_utc(),
        settings,
    )
    .unwrap();
    let running = start_in(tmp.path(), &[]).await;
    Coord {
        running,
        dir: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    }
}

/// The RBAC manifest: package `p` (SignerID of the sim dir, ProductID 7, SecurityVersion 2)
/// and `q`; secrets `sk` (shared symmetric), `sc` (shared cert), user-defined `uk`
/// (symmetric 128), `us` (plain), `uc` (cert-ed25519); users alice (read/write the user
/// secrets, UpdateSecurityVersion on p), bob (ReadSecret on sk), carol (RSA, no roles), dave
/// (expired certificate, UpdateManifest).
fn rbac_manifest(signer: [u8; 32], marble_params: Value) -> String {
    json!({
        "Packages": {
            "p": {"SignerID": hex::encode(signer), "ProductID": 7, "SecurityVersion": 2},
            "q": {"SignerID": hex::encode(signer), "ProductID": 8, "SecurityVersion": 1}
        },
        "Marbles": {
            "m": {"Package": "p", "Parameters": marble_params},
            "n": {"Package": "q"}
        },
        "Secrets": {
            "sk": {"Type": "symmetric-key", "Size": 128, "Shared": true},
            "sc": {"Type": "cert-ecdsa", "Size": 256, "Shared": true},
            "uk": {"Type": "symmetric-key", "Size": 128, "UserDefined": true},
            "us": {"Type": "plain", "UserDefined": true},
            "uc": {"Type": "cert-ed25519", "UserDefined": true}
        },
        "Users": {
            "alice": {"Certificate": pem_file("alice.crt"), "Roles": ["secretRW", "updP"]},
            "bob": {"Certificate": pem_file("bob.crt"), "Roles": ["readShared"]},
            "carol": {"Certificate": pem_file("carol.crt"), "Roles": []},
            "dave": {"Certificate": pem_file("dave.crt"), "Roles": ["updM"]}
        },
        "Roles": {
            "secretRW": {"ResourceType": "Secrets", "ResourceNames": ["uk", "us", "uc"],
                         "Actions": ["ReadSecret", "WriteSecret"]},
            "readShared": {"ResourceType": "Secrets", "ResourceNames": ["sk"],
                           "Actions": ["readsecret"]},
            "updP": {"ResourceType": "Packages", "ResourceNames": ["p"],
                     "Actions": ["UpdateSecurityVersion"]},
            "updM": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}
        }
    })
    .to_string()
}

async fn rbac_coord(marble_params: Value) -> (Coord, String) {
    let c = Coord::start().await;
    let raw = rbac_manifest(c.sim().signer_id(), marble_params);
    ok(&c.set_manifest(raw.as_bytes()).await);
    (c, raw)
}

fn secret_obj(data: &Value, name: &str) -> Value {
    data["secrets"][name].clone()
}

// ---------------------------------------------------------------------------------------------
// Users and roles

/// Secrets resources: ReadSecret/WriteSecret per role, reads of shared and user-defined secrets,
/// unlisted certificates and missing certificates refused, v1 shapes.
#[tokio::test(flavor = "multi_thread")]
async fn rbac_secrets_read_write_per_role() {
    let (c, _) = rbac_coord(json!({})).await;
    let (alice, bob, carol, mallory) = (user("alice"), user("bob"), user("carol"), user("mallory"));

    // Unlisted certificate and no certificate: 401 fail on every user endpoint.
    for who in [Some(&mallory), None] {
        assert_unauthorized(&get_secrets(&c, "s=sk", who).await);
        let body = json!({"secrets": {"us": {"Key": B64.encode("x")}}}).to_string();
        let r = call(
            c.client(),
            "POST",
            "/api/v2/secrets",
            Some(body.into_bytes()),
            who,
        )
        .await;
        assert_unauthorized(&r);
        let up = br#"{"Packages":{"p":{"SecurityVersion":3}}}"#;
        let r = call(
            c.client(),
            "POST",
            "/api/v2/update",
            Some(b64_manifest(std::str::from_utf8(up).unwrap())),
            who,
        )
        .await;
        assert_unauthorized(&r);
        let r = call(c.client(), "POST", "/api/v2/update-cancel", None, who).await;
        assert_unauthorized(&r);
        let r = call(
            c.client(),
            "POST",
            "/api/v2/update-manifest",
            Some(b64_manifest("{}")),
            who,
        )
        .await;
        assert_unauthorized(&r);
    }
    // v1: 401 error envelope.
    let r = call(c.client(), "GET", "/secrets?s=sk", None, Some(&mallory)).await;
    assert_error(
        &r,
        401,
        "unauthorized user: client certificate did not match any MarbleRun users",
    );

    // bob reads the shared key (his role spells the action in lower case).
    let d = ok(&get_secrets(&c, "s=sk", Some(&bob)).await);
    let sk = secret_obj(&d, "sk");
    assert_eq!(sk["Type"], "symmetric-key");
    assert_eq!(sk["Size"], 128);
    assert_eq!(sk["Shared"], true);
    assert_eq!(sk["UserDefined"], false);
    assert_eq!(sk["ValidFor"], 0);
    assert!(sk["Cert"].is_null());
    assert_eq!(
        B64.decode(sk["Private"].as_str().unwrap()).unwrap().len(),
        16
    );
    assert_eq!(sk["Private"], sk["Public"]);
    assert_eq!(d["secrets"].as_object().unwrap().len(), 1);
    // ...but not together with a secret he may not read, nor write anything.
    assert_error(
        &get_secrets(&c, "s=sk&s=uk", Some(&bob)).await,
        500,
        &not_allowed("bob", "ReadSecret", "sk, uk", "Secrets"),
    );
    assert_error(
        &set_secrets(&c, json!({"uk": {"Key": B64.encode([1u8; 16])}}), &bob).await,
        500,
        &not_allowed("bob", "WriteSecret", "uk", "Secrets"),
    );
    // carol (RSA certificate) authenticates but holds no role.
    assert_error(
        &get_secrets(&c, "s=sk", Some(&carol)).await,
        500,
        &not_allowed("carol", "ReadSecret", "sk", "Secrets"),
    );
    // alice may not read the shared key.
    assert_error(
        &get_secrets(&c, "s=sk", Some(&alice)).await,
        500,
        &not_allowed("alice", "ReadSecret", "sk", "Secrets"),
    );

    // alice: a not yet uploaded secret is its definition only.
    let d = ok(&get_secrets(&c, "s=uk", Some(&alice)).await);
    assert_eq!(
        secret_obj(&d, "uk"),
        json!({"Type": "symmetric-key", "Size": 128, "Shared": false, "UserDefined": true,
               "Cert": null, "ValidFor": 0, "Private": null, "Public": null})
    );
    let key = [0x5au8; 16];
    let r = set_secrets(&c, json!({"uk": {"Key": B64.encode(key)}}), &alice).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"status":"success","data":null}"#);
    let d = ok(&get_secrets(&c, "s=uk", Some(&alice)).await);
    assert_eq!(secret_obj(&d, "uk")["Private"], B64.encode(key));
    assert_eq!(secret_obj(&d, "uk")["Public"], B64.encode(key));
    assert_error(
        &get_secrets(&c, "s=uk", Some(&bob)).await,
        500,
        &not_allowed("bob", "ReadSecret", "uk", "Secrets"),
    );

    // v1 read: the map without the `secrets` wrapper.
    let r = call(c.client(), "GET", "/secrets?s=uk", None, Some(&alice)).await;
    let d = ok(&r);
    assert_eq!(d["uk"]["Private"], B64.encode(key));
    // v1 write: raw map.
    let body = json!({"us": {"Key": B64.encode("v1 value")}}).to_string();
    let r = call(
        c.client(),
        "POST",
        "/secrets",
        Some(body.into_bytes()),
        Some(&alice),
    )
    .await;
    assert_eq!(r.text(), r#"{"status":"success","data":null}"#);
    let r = call(
        c.client(),
        "POST",
        "/secrets",
        Some(br#"{"uk":{"Key":"AAAA"}}"#.to_vec()),
        Some(&bob),
    )
    .await;
    assert_error(&r, 400, &not_allowed("bob", "WriteSecret", "uk", "Secrets"));

    // A certificate uploaded without its optional Private key: Private reads back as null.
    let cert = cert_der("usercert-ed25519");
    ok(&set_secrets(&c, json!({"uc": {"Cert": B64.encode(&cert)}}), &alice).await);
    let d = ok(&get_secrets(&c, "s=uc", Some(&alice)).await);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    assert_eq!(
        secret_obj(&d, "uc"),
        json!({"Type": "cert-ed25519", "Size": 0, "Shared": false, "UserDefined": true,
               "Cert": B64.encode(&cert), "ValidFor": 0, "Private": null,
               "Public": B64.encode(parsed.public_key().raw)})
    );

    // Query errors.
    let r = call(c.client(), "GET", "/api/v2/secrets", None, Some(&alice)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        r#"{"status":"fail","data":null,"message":"invalid query: endpoint requires at least one query parameter"}"#
    );
    let r = get_secrets(&c, "s=", Some(&alice)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        r#"{"status":"fail","data":null,"message":"malformed query string: empty query parameter"}"#
    );
    c.stop().await;
}

/// Packages and Manifest resources: UpdateSecurityVersion per package, UpdateManifest; the
/// expired but listed certificate of dave works and is warned about (interfaces §6).
#[tokio::test(flavor = "multi_thread")]
async fn rbac_packages_manifest_and_expired_user() {
    let logs = captured_logs();
    let (c, raw) = rbac_coord(json!({})).await;
    // Manifest set warned about dave's expired certificate.
    wait_for_log("certificate of user \"dave\" expired on").await;
    let (alice, bob, dave) = (user("alice"), user("bob"), user("dave"));

    let p3 = r#"{"Packages":{"p":{"SecurityVersion":3}}}"#;
    assert_error(
        &update(&c, p3, &bob).await,
        500,
        &not_allowed("bob", "UpdateSecurityVersion", "p", "Packages"),
    );
    assert_error(
        &update(&c, p3, &dave).await,
        500,
        &not_allowed("dave", "UpdateSecurityVersion", "p", "Packages"),
    );
    let q2 = r#"{"Packages":{"q":{"SecurityVersion":2}}}"#;
    assert_error(
        &update(&c, q2, &alice).await,
        500,
        &not_allowed("alice", "UpdateSecurityVersion", "q", "Packages"),
    );
    let both = r#"{"Packages":{"p":{"SecurityVersion":3},"q":{"SecurityVersion":2}}}"#;
    assert_error(
        &update(&c, both, &alice).await,
        500,
        &not_allowed("alice", "UpdateSecurityVersion", "p, q", "Packages"),
    );
    // v1 POST /update: 401 and 400 errors, success null.
    let r = call(
        c.client(),
        "POST",
        "/update",
        Some(p3.as_bytes().to_vec()),
        Some(&user("mallory")),
    )
    .await;
    assert_error(
        &r,
        401,
        "unauthorized user: client certificate did not match any MarbleRun users",
    );
    let r = call(
        c.client(),
        "POST",
        "/update",
        Some(p3.as_bytes().to_vec()),
        Some(&bob),
    )
    .await;
    assert_error(
        &r,
        400,
        &not_allowed("bob", "UpdateSecurityVersion", "p", "Packages"),
    );
    let r = call(
        c.client(),
        "POST",
        "/update",
        Some(p3.as_bytes().to_vec()),
        Some(&alice),
    )
    .await;
    assert_eq!(r.text(), r#"{"status":"success","data":null}"#);
    let d = ok(&update(&c, p3, &alice).await);
    assert_eq!(
        d,
        json!({"missingAcknowledgments": 0, "missingUsers": null})
    );

    // Full update: alice and bob lack UpdateManifest; dave (expired, sole UpdateManifest user)
    // applies it at once.
    let v2 = raw.replacen("\"ProductID\":8", "\"ProductID\":9", 1);
    assert_ne!(v2, raw);
    for (who, name) in [(&alice, "alice"), (&bob, "bob")] {
        assert_error(
            &update(&c, &v2, who).await,
            500,
            &not_allowed(name, "UpdateManifest", "", "Manifest"),
        );
    }
    let before = logs.lock().unwrap().len();
    let d = ok(&update(&c, &v2, &dave).await);
    assert_eq!(
        d,
        json!({"missingAcknowledgments": 0, "missingUsers": null})
    );
    assert_eq!(fingerprint(&c).await, sha_hex(&v2));
    wait_for_log("user \"dave\" authenticated with a certificate that expired on").await;
    assert!(logs.lock().unwrap().len() > before);
    let log = update_log(&c).await;
    let last = &log[log.len() - 2..];
    assert_eq!(last[0]["user"], "dave");
    assert_eq!(last[1]["update"], "Complete Manifest updated");
    c.stop().await;
}

/// FR-17: only the first certificate of the presented chain (the one whose key signed the
/// handshake) selects a user.
#[tokio::test(flavor = "multi_thread")]
async fn fr17_first_chain_certificate_only() {
    let (c, _) = rbac_coord(json!({})).await;
    ok(&set_secrets(
        &c,
        json!({"us": {"Key": B64.encode("s3cret")}}),
        &user("alice"),
    )
    .await);
    let (alice, mallory) = (user("alice"), user("mallory"));
    let chains = [
        ("a", vec![cert_der("alice")], alice.key.clone(), true),
        (
            "b",
            vec![cert_der("alice"), cert_der("mallory")],
            alice.key.clone(),
            true,
        ),
        (
            "c",
            vec![cert_der("mallory"), cert_der("alice")],
            mallory.key.clone(),
            false,
        ),
        ("d", vec![cert_der("mallory")], mallory.key.clone(), false),
    ];
    for (case, chain, key, accepted) in chains {
        let who = Who { chain, key };
        let r = get_secrets(&c, "s=us", Some(&who)).await;
        if accepted {
            let d = ok(&r);
            assert_eq!(
                secret_obj(&d, "us")["Private"],
                B64.encode("s3cret"),
                "case {case}"
            );
        } else {
            assert_unauthorized(&r);
        }
    }
    c.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Secrets API

/// §2.4 upload rules, one update-log entry per secret, one transaction per request, secrets
/// never echoed in errors.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_upload_rules_log_and_atomicity() {
    let (c, _) = rbac_coord(json!({})).await;
    let alice = user("alice");
    let k = |b: &[u8]| json!({"Key": B64.encode(b)});

    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"nope": k(b"x")}),
            "secret manifest specifies a secret which the original manifest does not contain: \"nope\" (user-defined secrets of the manifest: uc, uk, us)",
        ),
        (
            json!({"sk": k(&[1; 16])}),
            "secret sk is not writeable (it is not UserDefined; the Coordinator generates it). User-defined secrets of the manifest: uc, uk, us",
        ),
        (
            json!({}),
            "no new secrets defined: the upload is empty; send {\"secrets\": {NAME: {\"Key\": BASE64}}} (or Cert/Private for certificates)",
        ),
        (
            json!({"uk": k(b"0123456789abcde")}),
            "secret uk: declared size and actual size don't match: expected 16 bytes (Size 128 bits), got 15",
        ),
        (
            json!({"uk": {"Key": B64.encode([1u8; 16]), "Cert": B64.encode(cert_der("usercert-ed25519"))}}),
            "secret uk: a symmetric-key secret only takes Key (Cert and Private are not allowed)",
        ),
        (
            json!({"us": {"Private": B64.encode("p")}}),
            "secret us: a plain secret only takes Key (Cert and Private are not allowed)",
        ),
        (json!({"us": {}}), "secret us: Key is required (base64 of the secret's bytes)"),
        (json!({"uc": k(b"key")}), "secret uc: a cert-ed25519 secret takes Cert and Private, not Key"),
        (json!({"uc": {"Private": B64.encode("p")}}), "secret uc: Cert is required (base64 of the DER certificate; Private is optional)"),
    ];
    let log_before = update_log(&c).await;
    for (body, msg) in &cases {
        let r = set_secrets(&c, body.clone(), &alice).await;
        assert_error(&r, 500, msg);
        // The wrong-length key (bytes "0123456789abcde") is never echoed.
        assert!(!r.text().contains("0123456789abcde"));
        assert!(!r.text().contains(&B64.encode(b"0123456789abcde")));
    }
    // One transaction: a bad secret in the request stores none of the good ones.
    let r = set_secrets(
        &c,
        json!({"uk": k(&[7; 16]), "us": k(b"plain value"), "uc": {}}),
        &alice,
    )
    .await;
    assert_error(
        &r,
        500,
        "secret uc: Cert is required (base64 of the DER certificate; Private is optional)",
    );
    let d = ok(&get_secrets(&c, "s=uk&s=us&s=uc", Some(&alice)).await);
    for n in ["uk", "us", "uc"] {
        assert!(secret_obj(&d, n)["Private"].is_null(), "{n} was stored");
    }
    assert_eq!(update_log(&c).await, log_before);

    // A good request: every value stored, one log entry per secret. Keys are case-insensitive
    // and plain secrets take any bytes.
    let cert = cert_der("usercert-ed25519");
    let cert_key = pem_ders(&pem_file("usercert-ed25519.key")).remove(0);
    let r = set_secrets(
        &c,
        json!({
            "uk": {"key": B64.encode([7u8; 16])},
            "us": k(&[0, 1, 2, 255]),
            "uc": {"Cert": B64.encode(&cert), "Private": B64.encode(&cert_key)}
        }),
        &alice,
    )
    .await;
    assert_eq!(r.text(), r#"{"status":"success","data":null}"#);
    let d = ok(&get_secrets(&c, "s=uk&s=us&s=uc", Some(&alice)).await);
    assert_eq!(secret_obj(&d, "uk")["Private"], B64.encode([7u8; 16]));
    assert_eq!(secret_obj(&d, "us")["Public"], B64.encode([0u8, 1, 2, 255]));
    let uc = secret_obj(&d, "uc");
    assert_eq!(uc["Type"], "cert-ed25519");
    assert_eq!(uc["Cert"], B64.encode(&cert));
    assert_eq!(uc["Private"], B64.encode(&cert_key));
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    assert_eq!(uc["Public"], B64.encode(parsed.public_key().raw));
    let log = update_log(&c).await;
    assert_eq!(log.len(), log_before.len() + 3);
    let mut entries: Vec<(String, String, String, String)> = log[log_before.len()..]
        .iter()
        .map(|l| {
            assert_eq!(l.as_object().unwrap().len(), 5, "{l}");
            (
                l["update"].as_str().unwrap().into(),
                l["user"].as_str().unwrap().into(),
                l["secret"].as_str().unwrap().into(),
                l["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    entries.sort();
    let e = |s: &str, t: &str| {
        (
            "Secret set".to_string(),
            "alice".to_string(),
            s.to_string(),
            t.to_string(),
        )
    };
    assert_eq!(
        entries,
        vec![
            e("uc", "cert-ed25519"),
            e("uk", "symmetric-key"),
            e("us", "plain")
        ]
    );
    // The update log never carries secret values.
    let raw_log = call(c.client(), "GET", "/api/v2/update", None, None)
        .await
        .text();
    assert!(!raw_log.contains(&B64.encode([7u8; 16])));

    // Malformed bodies: 400 fail.
    let r = call(
        c.client(),
        "POST",
        "/api/v2/secrets",
        Some(b"{not json".to_vec()),
        Some(&alice),
    )
    .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["status"], "fail");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid request body: "));
    // Survives a restart (sealed with the state).
    let c = c.restart(&[]).await;
    let d = ok(&get_secrets(&c, "s=uk", Some(&alice)).await);
    assert_eq!(secret_obj(&d, "uk")["Private"], B64.encode([7u8; 16]));
    assert_eq!(update_log(&c).await, log);
    c.stop().await;
}

/// A marble whose template references a user-defined secret that is not uploaded yet fails
/// activation naming it, and activates once it is uploaded.
#[tokio::test(flavor = "multi_thread")]
async fn activation_waits_for_user_defined_secret() {
    let params = json!({"Env": {"US": "{{ string .Secrets.us }}"}, "Files": {"/uk": "{{ hex .Secrets.uk }}"}});
    let (c, _) = rbac_coord(params).await;
    let id = identity(&c.sim(), U, false);
    ok(&set_secrets(
        &c,
        json!({"uk": {"Key": B64.encode([9u8; 16])}}),
        &user("alice"),
    )
    .await);
    let s = act(&c, "m", X, &id).await.expect_err("us is not uploaded");
    assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{}", s.message());
    assert_eq!(
        s.message(),
        "rendering the marble's parameters: marble \"m\", env \"US\": byte 3: secret \"us\" has not been uploaded yet (empty value); upload the user-defined secret \"us\" (POST /api/v2/secrets, `cairn secret set`) and restart the marble"
    );
    ok(&set_secrets(
        &c,
        json!({"us": {"Key": B64.encode("hello")}}),
        &user("alice"),
    )
    .await);
    let r = act(&c, "m", X, &id).await.unwrap();
    assert_eq!(env_str(&r, "US"), "hello");
    assert_eq!(
        r.parameters.as_ref().unwrap().files["/uk"],
        hex::encode([9u8; 16]).into_bytes()
    );
    c.stop().await;
}

/// FR-40: a plain secret with a NUL byte cannot reach an environment variable (the upload is
/// refused naming env PW); without the Env line the file holds exactly the three bytes.
#[tokio::test(flavor = "multi_thread")]
async fn fr40_nul_in_plain_secret() {
    let manifest = |with_env: bool| {
        let mut params = json!({"Files": {"/pw": "{{ raw .Secrets.pw }}"}});
        if with_env {
            params["Env"] = json!({"PW": "{{ string .Secrets.pw }}"});
        }
        json!({
            "Packages": {"p": {"UniqueID": hex::encode(U)}},
            "Marbles": {"m": {"Package": "p", "Parameters": params}},
            "Secrets": {"pw": {"Type": "plain", "UserDefined": true}},
            "Users": {"alice": {"Certificate": pem_file("alice.crt"), "Roles": ["w", "u"]}},
            "Roles": {"w": {"ResourceType": "Secrets", "ResourceNames": ["pw"], "Actions": ["WriteSecret"]},
                      "u": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}}
        })
        .to_string()
    };
    for with_env in [true, false] {
        let c = Coord::start().await;
        ok(&c.set_manifest(manifest(with_env).as_bytes()).await);
        let body = json!({"secrets": {"pw": {"Key": "YQBi"}}}).to_string();
        let r = call(
            c.client(),
            "POST",
            "/api/v2/secrets",
            Some(body.into_bytes()),
            Some(&user("alice")),
        )
        .await;
        let id = identity(&c.sim(), U, false);
        if with_env {
            assert_error(
                &r,
                500,
                "the uploaded secrets fail the template dry run: marble \"m\", env \"PW\": byte 3: secret value contains a NUL byte at position 1; environment variables cannot carry NUL",
            );
            // Nothing stored, so activation names the missing upload.
            let s = act(&c, "m", X, &id).await.unwrap_err();
            assert!(s
                .message()
                .contains("secret \"pw\" has not been uploaded yet"));
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
            let resp = act(&c, "m", X, &id).await.unwrap();
            assert_eq!(resp.parameters.as_ref().unwrap().files["/pw"], b"a\0b");
            // An update that adds the Env line afterwards: activation fails naming env PW and
            // the NUL byte; never a truncated "a".
            ok(&update(&c, &manifest(true), &user("alice")).await);
            let s = act(&c, "m", X, &id).await.unwrap_err();
            assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{}", s.message());
            assert_eq!(
                s.message(),
                "rendering the marble's parameters: marble \"m\", env \"PW\": byte 3: secret value contains a NUL byte at position 1; environment variables cannot carry NUL; upload a value without NUL bytes or use it in Files instead of Env"
            );
        }
        c.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Package update

/// Package update: per-package permission, no downgrade, only SecurityVersion; rotates the
/// intermediate and marble root (old and new marbles fail a real mutual-TLS handshake but both
/// chain to the Coordinator root); shared certs regenerated with `.Previous`; log entries;
/// manifest unchanged; SVN enforced and persisted.
#[tokio::test(flavor = "multi_thread")]
async fn package_update_rotates_ca_and_splits_marbles() {
    let params = json!({"Env": {
        "C": "{{ pem .Secrets.sc.Cert }}",
        "PC": "{{ pem .Previous.Secrets.sc.Cert }}",
        "K": "{{ hex .Secrets.sk }}",
        "PK": "{{ hex .Previous.Secrets.sk }}"
    }});
    let (c, raw) = rbac_coord(params).await;
    let alice = user("alice");
    let sim = c.sim();
    let id3 = identity(&sim, U, false); // ISVSVN 3
    let a = act(&c, "m", X, &id3).await.unwrap();
    // Under the first manifest `.Previous` equals the current value.
    assert_eq!(env_str(&a, "PC"), env_str(&a, "C"));
    assert_eq!(env_str(&a, "PK"), env_str(&a, "K"));
    let q = |c: &Coord| {
        let addr = c.client();
        async move {
            let r = call(addr, "GET", "/api/v2/quote", None, None).await;
            pem_ders(r.json()["data"]["cert"].as_str().unwrap())
        }
    };
    let chain1 = q(&c).await;
    let sig1 = call(c.client(), "GET", "/api/v2/manifest", None, None)
        .await
        .json()["data"]["manifestSignatureRootECDSA"]
        .clone();

    // Refusals (nothing changes).
    let refusals = [
        (
            r#"{"Packages":{"p":{"SecurityVersion":1}}}"#,
            "invalid manifest (E_CHECK): Packages.p.SecurityVersion: SecurityVersion 1 is lower than the current 2; downgrades are not allowed",
        ),
        (
            r#"{"Packages":{"p":{"SecurityVersion":3,"ProductID":7}}}"#,
            "invalid manifest (E_CHECK): Packages.p: update manifest contains unupdatable values; a package update may only set SecurityVersion",
        ),
        (
            r#"{"Packages":{"p":{"Debug":true,"SecurityVersion":3}}}"#,
            "invalid manifest (E_CHECK): Packages.p: update manifest contains unupdatable values; a package update may only set SecurityVersion",
        ),
        (
            r#"{"Packages":{"p":{}}}"#,
            "invalid manifest (E_CHECK): Packages.p.SecurityVersion: a package update must set SecurityVersion",
        ),
        (
            r#"{"Packages":{}}"#,
            "invalid manifest (E_CHECK): Packages: the update manifest lists no packages",
        ),
    ];
    for (body, msg) in refusals {
        assert_error(&update(&c, body, &alice).await, 500, msg);
    }
    assert_eq!(q(&c).await, chain1);
    assert_eq!(update_log(&c).await.len(), 1);

    // Equal SecurityVersion is allowed; 3 applies at once.
    let d = ok(&update(&c, r#"{"Packages":{"p":{"SecurityVersion":3}}}"#, &alice).await);
    assert_eq!(
        d,
        json!({"missingAcknowledgments": 0, "missingUsers": null})
    );
    let chain2 = q(&c).await;
    assert_eq!(chain2[1], chain1[1], "the root never rotates");
    assert_ne!(chain2[0], chain1[0], "the intermediate rotated");
    // The manifest, its fingerprint and signature are unchanged.
    assert_eq!(fingerprint(&c).await, sha_hex(&raw));
    let sig2 = call(c.client(), "GET", "/api/v2/manifest", None, None)
        .await
        .json()["data"]["manifestSignatureRootECDSA"]
        .clone();
    assert_eq!(sig2, sig1);
    let log = update_log(&c).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["update"], "SecurityVersion increased");
    assert_eq!(log[1]["user"], "alice");
    assert_eq!(log[1]["package"], "p");
    assert_eq!(log[1]["new version"], 3);

    let b = act(&c, "m", X, &id3).await.unwrap();
    // Shared cert regenerated, `.Previous` renders the old one; symmetric keys unchanged.
    assert_ne!(env_str(&b, "C"), env_str(&a, "C"));
    assert_eq!(env_str(&b, "PC"), env_str(&a, "C"));
    assert_eq!(env_str(&b, "K"), env_str(&a, "K"));
    let (ca, cb) = (creds(&a), creds(&b));
    assert_eq!(ca.who.chain[1], chain1[0]);
    assert_eq!(cb.who.chain[1], chain2[0]);
    assert_ne!(ca.marble_root, cb.marble_root);

    // Real mutual-TLS handshakes with what each marble received.
    let root = &chain1[1];
    mtls(&cb.who, &cb.marble_root, &cb.who, &cb.marble_root)
        .await
        .expect("control: new marble with new marble");
    mtls(&ca.who, &ca.marble_root, &ca.who, &ca.marble_root)
        .await
        .expect("control: old marble with old marble");
    let e = mtls(&ca.who, &ca.marble_root, &cb.who, &cb.marble_root)
        .await
        .expect_err("old server, new client must fail");
    assert!(e.contains("invalid peer certificate"), "{e}");
    let e = mtls(&cb.who, &cb.marble_root, &ca.who, &ca.marble_root)
        .await
        .expect_err("new server, old client must fail");
    assert!(e.contains("invalid peer certificate"), "{e}");
    // Both still verify against the Coordinator root, in both roles.
    mtls(&ca.who, root, &cb.who, root).await.unwrap();
    mtls(&cb.who, root, &ca.who, root).await.unwrap();

    // SecurityVersion 4 shuts out ISVSVN 3 and survives a restart; downgrades stay refused.
    ok(&update(&c, r#"{"Packages":{"p":{"SecurityVersion":4}}}"#, &alice).await);
    let s = act(&c, "m", X, &id3).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{}", s.message());
    assert!(s.message().contains("SecurityVersion"), "{}", s.message());
    let c = c.restart(&[]).await;
    let s = act(&c, "m", X, &id3).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{}", s.message());
    let id4 = EnclaveIdentity {
        isv_svn: 4,
        ..id3.clone()
    };
    act(&c, "m", X, &id4).await.unwrap();
    assert_error(
        &update(&c, r#"{"Packages":{"p":{"SecurityVersion":3}}}"#, &alice).await,
        500,
        "invalid manifest (E_CHECK): Packages.p.SecurityVersion: SecurityVersion 3 is lower than the current 4; downgrades are not allowed",
    );
    assert_eq!(fingerprint(&c).await, sha_hex(&raw));
    c.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Full update with acknowledgements

fn two_admin_manifest(extra_env: &str, config: Value) -> String {
    json!({
        "Packages": {"p": {"UniqueID": hex::encode(U)}},
        "Marbles": {"m": {"Package": "p", "Parameters": {"Env": {"E": extra_env}}}},
        "Users": {
            "alice": {"Certificate": pem_file("alice.crt"), "Roles": ["admin"]},
            "bob": {"Certificate": pem_file("bob.crt"), "Roles": ["admin"]},
            "carol": {"Certificate": pem_file("carol.crt"), "Roles": []}
        },
        "Roles": {"admin": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}},
        "Config": config
    })
    .to_string()
}

/// A full update needing two acknowledgements applies only after the second byte-identical
/// upload; a restart in between keeps it pending; cancel removes it; the log records all.
#[tokio::test(flavor = "multi_thread")]
async fn full_update_two_acks_restart_cancel() {
    let c = Coord::start().await;
    let v1 = two_admin_manifest("one", json!({}));
    let v2 = two_admin_manifest("two", json!({}));
    let v3 = two_admin_manifest("three", json!({}));
    ok(&c.set_manifest(v1.as_bytes()).await);
    let (alice, bob, carol, mallory) = (user("alice"), user("bob"), user("carol"), user("mallory"));

    // Nothing pending.
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_error(&r, 404, "no update in progress");
    assert_error(&ack(&c, &v2, &alice).await, 404, "no update in progress");
    let r = call(
        c.client(),
        "POST",
        "/api/v2/update-cancel",
        None,
        Some(&alice),
    )
    .await;
    assert_error(&r, 404, "no update in progress");
    assert_unauthorized(
        &call(
            c.client(),
            "POST",
            "/api/v2/update-cancel",
            None,
            Some(&mallory),
        )
        .await,
    );

    // carol may not start one; alice does.
    assert_error(
        &update(&c, &v2, &carol).await,
        500,
        &not_allowed("carol", "UpdateManifest", "", "Manifest"),
    );
    let d = ok(&update(&c, &v2, &alice).await);
    assert_eq!(
        d,
        json!({"missingAcknowledgments": 1, "missingUsers": ["bob"]})
    );
    assert_eq!(fingerprint(&c).await, sha_hex(&v1));
    assert_error(
        &update(&c, &v3, &bob).await,
        500,
        "update already in progress. Acknowledge the update to apply it, or cancel it to start a new one",
    );
    let pending = json!({
        "manifest": B64.encode(&v2),
        "message": "1 user still needs to acknowledge the update manifest",
        "missingUsers": ["bob"]
    });
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_eq!(ok(&r), pending);

    // A restart keeps it pending.
    let c = c.restart(&[]).await;
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_eq!(ok(&r), pending);
    assert_eq!(fingerprint(&c).await, sha_hex(&v1));

    // Refused acknowledgements change nothing.
    assert_unauthorized(&ack(&c, &v2, &mallory).await);
    assert_error(
        &ack(&c, &v2, &carol).await,
        500,
        "user \"carol\" is not allowed to acknowledge the pending update (not one of the users with UpdateManifest when it was started)",
    );
    let v2_space = format!("{v2} ");
    assert_error(
        &ack(&c, &v2_space, &bob).await,
        500,
        &format!(
            "the uploaded manifest (sha256 {}) is not byte-identical to the pending update (sha256 {}); fetch the pending manifest (GET /api/v2/update-manifest, `cairn manifest update get`) and acknowledge exactly those bytes",
            sha_hex(&v2_space),
            sha_hex(&v2)
        ),
    );
    // alice acknowledging again does not count twice.
    let d = ok(&ack(&c, &v2, &alice).await);
    assert_eq!(
        d,
        json!({"message": "1 user still needs to acknowledge the update manifest.\nThe following users have not yet accepted: bob",
               "missingUsers": ["bob"], "missingAcknowledgments": 1})
    );
    assert_eq!(fingerprint(&c).await, sha_hex(&v1));

    // bob's byte-identical acknowledgement applies it.
    let d = ok(&ack(&c, &v2, &bob).await);
    assert_eq!(
        d,
        json!({"message": "All users have acknowledged the update manifest. Update successfully applied",
               "missingUsers": [], "missingAcknowledgments": 0})
    );
    assert_eq!(fingerprint(&c).await, sha_hex(&v2));
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_error(&r, 404, "no update in progress");
    let id = identity(&c.sim(), U, false);
    assert_eq!(env_str(&act(&c, "m", X, &id).await.unwrap(), "E"), "two");

    // Cancel: carol may not; bob may; nothing is applied.
    ok(&update(&c, &v3, &alice).await);
    let r = call(
        c.client(),
        "POST",
        "/api/v2/update-cancel",
        None,
        Some(&carol),
    )
    .await;
    assert_error(
        &r,
        500,
        &not_allowed("carol", "UpdateManifest", "", "Manifest"),
    );
    let r = call(
        c.client(),
        "POST",
        "/api/v2/update-cancel",
        None,
        Some(&bob),
    )
    .await;
    assert_eq!(
        r.text(),
        r#"{"status":"success","data":{"message":"Update successfully cancelled"}}"#
    );
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_error(&r, 404, "no update in progress");
    assert_error(&ack(&c, &v3, &bob).await, 404, "no update in progress");
    assert_eq!(fingerprint(&c).await, sha_hex(&v2));

    // v1 shapes: string data.
    ok(&update(&c, &v3, &alice).await);
    let r = call(
        c.client(),
        "POST",
        "/update-manifest",
        Some(v3.clone().into_bytes()),
        Some(&alice),
    )
    .await;
    assert_eq!(
        ok(&r),
        json!("1 user still needs to acknowledge the update manifest")
    );
    let r = call(c.client(), "POST", "/update-cancel", None, Some(&alice)).await;
    assert_eq!(ok(&r), json!("Update successfully cancelled"));

    // The update log, line by line.
    let log = update_log(&c).await;
    let updates: Vec<&str> = log.iter().map(|l| l["update"].as_str().unwrap()).collect();
    let waiting = "Complete Manifest update initiated by user. Waiting for acknowledgments to apply the update";
    assert_eq!(
        updates,
        vec![
            "Initial manifest set",
            waiting,
            "Complete Manifest update acknowledged by user",
            "Complete Manifest update acknowledged by user",
            "Complete Manifest updated",
            waiting,
            "Complete Manifest update cancelled by user",
            waiting,
            "Complete Manifest update acknowledged by user",
            "Complete Manifest update cancelled by user",
        ]
    );
    assert_eq!(
        log[1],
        json!({"time": log[1]["time"], "update": waiting, "user": "alice",
               "missingAcknowledgments": 1, "missingUsers": ["bob"],
               "manifestFingerprint": sha_hex(&v2)})
    );
    assert_eq!(log[3]["user"], "bob");
    assert_eq!(
        log[4],
        json!({"time": log[4]["time"], "update": "Complete Manifest updated", "manifestFingerprint": sha_hex(&v2)})
    );
    assert_eq!(log[6]["user"], "bob");
    for l in &log {
        let t = l["time"].as_str().unwrap();
        let ok_shape = t.len() == 24
            && t.ends_with('Z')
            && t.as_bytes()[10] == b'T'
            && t.as_bytes()[19] == b'.'
            && ::time::OffsetDateTime::parse(t, &::time::format_description::well_known::Rfc3339)
                .is_ok();
        assert!(ok_shape, "time {t:?}");
    }
    // v1: all lines joined with a newline, plus a trailing newline.
    let r = call(c.client(), "GET", "/update", None, None).await;
    let text = ok(&r);
    let v2_lines = call(c.client(), "GET", "/api/v2/update", None, None)
        .await
        .json()["data"]["updateLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(text, json!(format!("{}\n", v2_lines.join("\n"))));
    c.stop().await;
}

/// UpdateThreshold 1 with two UpdateManifest users: the initiator's upload applies at once.
#[tokio::test(flavor = "multi_thread")]
async fn full_update_threshold_one_applies_at_once() {
    let c = Coord::start().await;
    let v1 = two_admin_manifest("one", json!({"UpdateThreshold": 1}));
    let v2 = two_admin_manifest("two", json!({"UpdateThreshold": 1}));
    ok(&c.set_manifest(v1.as_bytes()).await);
    let d = ok(&update(&c, &v2, &user("bob")).await);
    assert_eq!(
        d,
        json!({"missingAcknowledgments": 0, "missingUsers": null})
    );
    assert_eq!(fingerprint(&c).await, sha_hex(&v2));
    let log = update_log(&c).await;
    assert_eq!(
        log[1]["update"],
        "Complete Manifest update initiated by user. No further acknowledgements required"
    );
    assert_eq!(log[1]["missingUsers"], json!(["alice"]));
    // An invalid update is refused and leaves nothing pending.
    let bad = v2.replace("\"Package\":\"p\"", "\"Package\":\"ghost\"");
    let r = update(&c, &bad, &user("alice")).await;
    assert_eq!(r.status, 500);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid manifest (E_CHECK)"));
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_error(&r, 404, "no update in progress");
    c.stop().await;
}

/// FR-05: an update that changes only AcceptedTCBStatuses (or only DisableSecretBinding) is
/// applied.
#[tokio::test(flavor = "multi_thread")]
async fn fr05_update_of_tcb_statuses_and_secret_binding() {
    let c = start_with_tcb("OutOfDate").await;
    let manifest = |statuses: Value, dsb: bool| {
        let env = json!({"Env": {"K": "{{ hex .Secrets.k }}"}});
        json!({
            "Packages": {"p": {"UniqueID": hex::encode(U), "AcceptedTCBStatuses": statuses}},
            "Marbles": {
                "m": {"Package": "p", "Parameters": env, "DisableSecretBinding": dsb},
                "n": {"Package": "p", "Parameters": env, "DisableSecretBinding": dsb}
            },
            "Secrets": {"k": {"Type": "symmetric-key", "Size": 256}},
            "Users": {"alice": {"Certificate": pem_file("alice.crt"), "Roles": ["u"]}},
            "Roles": {"u": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}}
        })
        .to_string()
    };
    let v1 = manifest(json!(["UpToDate"]), false);
    let v2 = manifest(json!(["UpToDate", "OutOfDate"]), false);
    let v3 = manifest(json!(["UpToDate", "OutOfDate"]), true);
    ok(&c.set_manifest(v1.as_bytes()).await);
    let id = identity(&c.sim(), U, false);
    let s = act(&c, "m", X, &id).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied);
    assert!(s.message().contains("OutOfDate"), "{}", s.message());

    ok(&update(&c, &v2, &user("alice")).await);
    assert_eq!(fingerprint(&c).await, sha_hex(&v2));
    let km = env_str(&act(&c, "m", X, &id).await.unwrap(), "K");
    let kn = env_str(&act(&c, "n", X, &id).await.unwrap(), "K");
    assert_ne!(km, kn, "secret binding separates marble types");

    ok(&update(&c, &v3, &user("alice")).await);
    assert_eq!(fingerprint(&c).await, sha_hex(&v3));
    let km3 = env_str(&act(&c, "m", X, &id).await.unwrap(), "K");
    let kn3 = env_str(&act(&c, "n", X, &id).await.unwrap(), "K");
    assert_eq!(km3, kn3, "DisableSecretBinding applied");
    assert_ne!(km3, km);
    c.stop().await;
}

/// FR-16: shared certificates rotate on every full update with `.Previous` the old value;
/// symmetric keys only with RotateRootSecret (shared and per-marble).
#[tokio::test(flavor = "multi_thread")]
async fn fr16_previous_secrets_across_updates() {
    let c = Coord::start().await;
    let manifest = |extra: bool, rotate: bool| {
        let mut env = json!({
            "C": "{{ pem .Secrets.c.Cert }}", "PC": "{{ pem .Previous.Secrets.c.Cert }}",
            "K": "{{ hex .Secrets.k }}", "PK": "{{ hex .Previous.Secrets.k }}",
            "P": "{{ hex .Secrets.pk }}", "PP": "{{ hex .Previous.Secrets.pk }}"
        });
        if extra {
            env["EXTRA"] = json!("x");
        }
        let mut m = json!({
            "Packages": {"p": {"UniqueID": hex::encode(U)}},
            "Marbles": {"m": {"Package": "p", "Parameters": {"Env": env}}},
            "Secrets": {
                "c": {"Type": "cert-ecdsa", "Size": 256, "Shared": true},
                "k": {"Type": "symmetric-key", "Size": 128, "Shared": true},
                "pk": {"Type": "symmetric-key", "Size": 128}
            },
            "Users": {"alice": {"Certificate": pem_file("alice.crt"), "Roles": ["u"]}},
            "Roles": {"u": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}}
        });
        if rotate {
            m["Config"] = json!({"RotateRootSecret": true});
        }
        m.to_string()
    };
    let id = identity(&c.sim(), U, false);
    ok(&c.set_manifest(manifest(false, false).as_bytes()).await);
    let r1 = act(&c, "m", X, &id).await.unwrap();
    let e1 = |k: &str| env_str(&r1, k);
    assert_eq!(e1("PC"), e1("C"));
    assert_eq!(e1("PK"), e1("K"));
    assert_eq!(e1("PP"), e1("P"));

    ok(&update(&c, &manifest(true, false), &user("alice")).await);
    let r2 = act(&c, "m", X, &id).await.unwrap();
    let e2 = |k: &str| env_str(&r2, k);
    assert_ne!(e2("C"), e1("C"));
    assert_eq!(e2("PC"), e1("C"));
    assert_eq!(e2("K"), e1("K"));
    assert_eq!(e2("P"), e1("P"));
    assert_eq!(env_str(&r2, "EXTRA"), "x");

    ok(&update(&c, &manifest(true, true), &user("alice")).await);
    let r3 = act(&c, "m", X, &id).await.unwrap();
    let e3 = |k: &str| env_str(&r3, k);
    assert_ne!(e3("K"), e2("K"));
    assert_eq!(e3("PK"), e2("K"));
    assert_ne!(e3("P"), e2("P"));
    assert_eq!(e3("PP"), e2("P"));
    assert_eq!(e3("PC"), e2("C"));
    // Sealed with the state.
    let c = c.restart(&[]).await;
    let r4 = act(&c, "m", X, &id).await.unwrap();
    assert_eq!(env_str(&r4, "K"), e3("K"));
    assert_eq!(env_str(&r4, "PK"), e2("K"));
    assert_eq!(env_str(&r4, "P"), e3("P"));
    c.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Feature gates

/// MonotonicCounter: marble-authenticated over the client API, returns the previous value,
/// only raises, persists; refused for non-marble certificates and without the gate.
#[tokio::test(flavor = "multi_thread")]
async fn monotonic_counter_marble_authenticated() {
    let c = Coord::start().await;
    let raw = json!({
        "Packages": {"p": {"UniqueID": hex::encode(U)}},
        "Marbles": {"m": {"Package": "p"}, "n": {"Package": "p"}},
        "Users": {"alice": {"Certificate": pem_file("alice.crt"), "Roles": ["s"]}},
        "Roles": {"s": {"ResourceType": "Packages", "ResourceNames": ["p"], "Actions": ["UpdateSecurityVersion"]}},
        "Config": {"FeatureGates": ["MonotonicCounter"]}
    })
    .to_string();
    ok(&c.set_manifest(raw.as_bytes()).await);
    let id = identity(&c.sim(), U, false);
    let m = creds(&act(&c, "m", X, &id).await.unwrap());
    let n = creds(&act(&c, "n", X, &id).await.unwrap());
    let counter = |who: Option<Who>, name: &str, value: u64| {
        let addr = c.client();
        let body = json!({"name": name, "value": value})
            .to_string()
            .into_bytes();
        async move {
            call(
                addr,
                "POST",
                "/api/v2/monotonic-counter",
                Some(body),
                who.as_ref(),
            )
            .await
        }
    };
    for (value, previous) in [(5, 0), (3, 5), (7, 5), (1, 7)] {
        let r = counter(Some(m.who.clone()), "c", value).await;
        assert_eq!(ok(&r), json!({"value": previous}), "set {value}");
    }
    // Counters are per marble type and per name.
    assert_eq!(
        ok(&counter(Some(n.who.clone()), "c", 2).await),
        json!({"value": 0})
    );
    assert_eq!(
        ok(&counter(Some(m.who.clone()), "d", 2).await),
        json!({"value": 0})
    );
    // Not a marble certificate.
    let r = counter(None, "c", 9).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        r#"{"status":"fail","data":null,"message":"not a marble certificate: no TLS client certificate"}"#
    );
    let r = counter(Some(user("alice")), "c", 9).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["message"],
        "not a marble certificate: not issued by the current marble root"
    );
    // Malformed body.
    let r = call(
        c.client(),
        "POST",
        "/api/v2/monotonic-counter",
        Some(b"{}".to_vec()),
        Some(&m.who),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["status"], "fail");
    // Persisted across a restart.
    let c = c.restart(&[]).await;
    let body = json!({"name": "c", "value": 8}).to_string().into_bytes();
    let r = call(
        c.client(),
        "POST",
        "/api/v2/monotonic-counter",
        Some(body),
        Some(&m.who),
    )
    .await;
    assert_eq!(ok(&r), json!({"value": 7}));
    // After a package update the old leaf no longer chains to the current marble root.
    ok(&update(
        &c,
        r#"{"Packages":{"p":{"SecurityVersion":1}}}"#,
        &user("alice"),
    )
    .await);
    let body = json!({"name": "c", "value": 9}).to_string().into_bytes();
    let r = call(
        c.client(),
        "POST",
        "/api/v2/monotonic-counter",
        Some(body.clone()),
        Some(&m.who),
    )
    .await;
    assert_eq!(r.status, 401);
    let fresh = creds(&act(&c, "m", X, &id).await.unwrap());
    let r = call(
        c.client(),
        "POST",
        "/api/v2/monotonic-counter",
        Some(body),
        Some(&fresh.who),
    )
    .await;
    assert_eq!(ok(&r), json!({"value": 8}));
    c.stop().await;

    // Without the gate: 403 error.
    let c = Coord::start().await;
    ok(&c
        .set_manifest(
            format!(
                r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p"}}}}}}"#,
                hex::encode(U)
            )
            .as_bytes(),
        )
        .await);
    let m = creds(&act(&c, "m", X, &id_for(&c)).await.unwrap());
    let body = json!({"name": "c", "value": 1}).to_string().into_bytes();
    let r = call(
        c.client(),
        "POST",
        "/api/v2/monotonic-counter",
        Some(body),
        Some(&m.who),
    )
    .await;
    assert_error(
        &r,
        403,
        "MonotonicCounter feature is not enabled in the manifest",
    );
    c.stop().await;
}

fn id_for(c: &Coord) -> EnclaveIdentity {
    identity(&c.sim(), U, false)
}

/// FR-31: sign-quote signs SHA-256(base64(quote exactly as sent) ‖ tcbStatus) with the root key
/// for raw and OE-wrapped quotes; bad quotes and bodies are 400 fail; no gate is 403.
#[tokio::test(flavor = "multi_thread")]
async fn fr31_sign_quote_over_the_bytes_sent() {
    let c = Coord::start().await;
    let raw_manifest = format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p"}}}},"Config":{{"FeatureGates":["SignQuoteEndpoint"]}}}}"#,
        hex::encode(U)
    );
    ok(&c.set_manifest(raw_manifest.as_bytes()).await);
    let root = {
        let r = call(c.client(), "GET", "/api/v2/quote", None, None).await;
        pem_ders(r.json()["data"]["cert"].as_str().unwrap()).remove(1)
    };
    let sim = c.sim();
    let raw_quote = sim.issuer(id_for(&c)).quote(&[0x11; 64]).unwrap();
    let wrapped = cairn_attest::oe::wrap(&raw_quote);
    assert!(cairn_core::is_raw_sgx_quote(&raw_quote));
    for quote in [&raw_quote, &wrapped] {
        let body = json!({"sgxQuote": B64.encode(quote)})
            .to_string()
            .into_bytes();
        let r = call(c.client(), "POST", "/api/v2/sign-quote", Some(body), None).await;
        let d = ok(&r);
        assert_eq!(d.as_object().unwrap().len(), 2, "{d}");
        assert_eq!(d["tcbStatus"], "UpToDate");
        let sig = B64
            .decode(d["verificationSignature"].as_str().unwrap())
            .unwrap();
        let mut msg = B64.encode(quote).into_bytes();
        msg.extend_from_slice(b"UpToDate");
        cairn_ca::verify_manifest_signature(&root, &msg, &sig).unwrap();
        // Not over the other form of the same quote.
        let other = if quote == &raw_quote {
            &wrapped
        } else {
            &raw_quote
        };
        let mut wrong = B64.encode(other).into_bytes();
        wrong.extend_from_slice(b"UpToDate");
        assert!(cairn_ca::verify_manifest_signature(&root, &wrong, &sig).is_err());
    }
    // A quote that does not verify.
    let mut bad = raw_quote.clone();
    bad[48 + 64] ^= 0x01; // a byte of the signed report body (MRENCLAVE)
    let body = json!({"sgxQuote": B64.encode(&bad)})
        .to_string()
        .into_bytes();
    let r = call(c.client(), "POST", "/api/v2/sign-quote", Some(body), None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "fail");
    assert_eq!(v["message"], "quote verification failed");
    assert!(v["data"]["sgxQuote"]
        .as_str()
        .unwrap()
        .starts_with("quote verification failed: "));
    // A body that is not JSON.
    let r = call(
        c.client(),
        "POST",
        "/api/v2/sign-quote",
        Some(b"nope".to_vec()),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["data"], json!({"sgxQuote": "failed to parse JSON data"}));
    assert!(v["message"].as_str().unwrap().starts_with("bad request: "));
    c.stop().await;

    // Without the gate.
    let c = Coord::start().await;
    let body = json!({"sgxQuote": B64.encode(&raw_quote)})
        .to_string()
        .into_bytes();
    let r = call(
        c.client(),
        "POST",
        "/api/v2/sign-quote",
        Some(body.clone()),
        None,
    )
    .await;
    assert_error(
        &r,
        403,
        "SignQuoteEndpoint feature is not enabled in the manifest",
    );
    ok(&c
        .set_manifest(
            format!(
                r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p"}}}}}}"#,
                hex::encode(U)
            )
            .as_bytes(),
        )
        .await);
    let r = call(c.client(), "POST", "/api/v2/sign-quote", Some(body), None).await;
    assert_error(
        &r,
        403,
        "SignQuoteEndpoint feature is not enabled in the manifest",
    );
    c.stop().await;
}

/// The update log is only served in state 3; v2 and v1 paths.
#[tokio::test(flavor = "multi_thread")]
async fn update_log_requires_a_manifest() {
    let c = Coord::start().await;
    let r = call(c.client(), "GET", "/api/v2/update", None, None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["status"], "error");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("server is not in expected state"));
    ok(&c.set_manifest(base_manifest_u().as_bytes()).await);
    let log = update_log(&c).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].as_object().unwrap().len(), 2);
    assert_eq!(log[0]["update"], "Initial manifest set");
    c.stop().await;
    // Without a manifest there are no users: acknowledgement and cancel are 401 (before 404).
    let c = Coord::start().await;
    let r = call(
        c.client(),
        "POST",
        "/api/v2/update-cancel",
        None,
        Some(&user("alice")),
    )
    .await;
    assert_unauthorized(&r);
    assert_unauthorized(&ack(&c, "{}", &user("alice")).await);
    c.stop().await;
}

fn base_manifest_u() -> String {
    format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p"}}}}}}"#,
        hex::encode(U)
    )
}

/// Atomicity: when the commit of a secret upload, a package update or the final
/// acknowledgement of a full update fails, nothing changes (no value, no rotation, no log line,
/// old manifest); a failed apply cancels the pending update and logs it.
#[tokio::test(flavor = "multi_thread")]
async fn failed_commits_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let seal = tmp.path().join("seal");
    let config = cairn_coordinator::Config::parse(
        [
            "x",
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
            "--simulation",
            "--seal-dir",
            seal.to_str().unwrap(),
        ],
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap();
    std::fs::create_dir_all(&seal).unwrap();
    let store = Arc::new(cairn_store::FilePersistence::new(&seal).unwrap());
    let running = cairn_coordinator::start_with_store(&config, Some(store.clone()))
        .await
        .unwrap();
    let c = Coord {
        running,
        dir: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    };
    let signer = c.sim().signer_id();
    let raw = rbac_manifest(signer, json!({}));
    ok(&c.set_manifest(raw.as_bytes()).await);
    let alice = user("alice");
    let chain = || async {
        let r = call(c.client(), "GET", "/api/v2/quote", None, None).await;
        pem_ders(r.json()["data"]["cert"].as_str().unwrap())
    };
    let chain1 = chain().await;
    let log1 = update_log(&c).await;

    // Secret upload.
    store.fail_next_writes(1);
    let r = set_secrets(&c, json!({"uk": {"Key": B64.encode([3u8; 16])}}), &alice).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("the change could not be persisted, nothing was changed: "));
    let d = ok(&get_secrets(&c, "s=uk", Some(&alice)).await);
    assert!(secret_obj(&d, "uk")["Private"].is_null());

    // Package update.
    store.fail_next_writes(1);
    let r = update(&c, r#"{"Packages":{"p":{"SecurityVersion":5}}}"#, &alice).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(chain().await, chain1);
    assert_eq!(update_log(&c).await, log1);
    let id = identity(&c.sim(), U, false); // ISVSVN 3 < 5 would be refused
    let resp = act(&c, "m", X, &id).await.unwrap();
    assert_eq!(creds(&resp).who.chain[1], chain1[0]);

    // Full update: dave is the only UpdateManifest user, so his upload applies at once; a
    // failed commit leaves the old manifest and nothing pending.
    let v2 = raw.replacen("\"ProductID\":8", "\"ProductID\":9", 1);
    store.fail_next_writes(1);
    let r = update(&c, &v2, &user("dave")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("the update could not be persisted, nothing was changed: "));
    assert_eq!(fingerprint(&c).await, sha_hex(&raw));
    assert_eq!(chain().await, chain1);
    assert_eq!(update_log(&c).await, log1);
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_error(&r, 404, "no update in progress");
    c.stop().await;
}

/// A failed apply at the last acknowledgement cancels the pending update and says so in the log.
#[tokio::test(flavor = "multi_thread")]
async fn failed_apply_at_last_ack_cancels() {
    let tmp = tempfile::tempdir().unwrap();
    let seal = tmp.path().join("seal");
    let config = cairn_coordinator::Config::parse(
        [
            "x",
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
            "--simulation",
            "--seal-dir",
            seal.to_str().unwrap(),
        ],
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap();
    std::fs::create_dir_all(&seal).unwrap();
    let store = Arc::new(cairn_store::FilePersistence::new(&seal).unwrap());
    let running = cairn_coordinator::start_with_store(&config, Some(store.clone()))
        .await
        .unwrap();
    let c = Coord {
        running,
        dir: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    };
    let v1 = two_admin_manifest("one", json!({}));
    let v2 = two_admin_manifest("two", json!({}));
    ok(&c.set_manifest(v1.as_bytes()).await);
    ok(&update(&c, &v2, &user("alice")).await);
    store.fail_next_writes(1);
    let r = ack(&c, &v2, &user("bob")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("the update could not be persisted, nothing was changed: "));
    assert_eq!(fingerprint(&c).await, sha_hex(&v1));
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_error(&r, 404, "no update in progress");
    let log = update_log(&c).await;
    let updates: Vec<&str> = log.iter().map(|l| l["update"].as_str().unwrap()).collect();
    assert_eq!(
        updates,
        vec![
            "Initial manifest set",
            "Complete Manifest update initiated by user. Waiting for acknowledgments to apply the update",
            "Complete Manifest update cancelled due to error during apply",
        ]
    );
    // The cancellation is durable.
    let c = c.restart(&[]).await;
    let r = call(c.client(), "GET", "/api/v2/update-manifest", None, None).await;
    assert_error(&r, 404, "no update in progress");
    assert_eq!(fingerprint(&c).await, sha_hex(&v1));
    c.stop().await;
}

/// A template that needs the Private key of a user-defined certificate refuses an upload
/// without it, naming the missing part; with it, the marble receives the key.
#[tokio::test(flavor = "multi_thread")]
async fn cert_secret_private_needed_by_template() {
    let params = json!({"Files": {"/key": "{{ pem .Secrets.uc.Private }}", "/crt": "{{ pem .Secrets.uc.Cert }}"}});
    let (c, _) = rbac_coord(params).await;
    let alice = user("alice");
    let cert = cert_der("usercert-ed25519");
    let key = pem_ders(&pem_file("usercert-ed25519.key")).remove(0);
    let r = set_secrets(&c, json!({"uc": {"Cert": B64.encode(&cert)}}), &alice).await;
    assert_error(
        &r,
        500,
        "the uploaded secrets fail the template dry run: marble \"m\", file \"/key\": byte 3: secret \"uc\" has not been uploaded yet (empty value); the templates use a part of secret \"uc\" that this upload leaves empty: upload it with that field (for a certificate, its Private key)",
    );
    ok(&set_secrets(
        &c,
        json!({"uc": {"Cert": B64.encode(&cert), "Private": B64.encode(&key)}}),
        &alice,
    )
    .await);
    let resp = act(&c, "m", X, &identity(&c.sim(), U, false))
        .await
        .unwrap();
    let files = &resp.parameters.as_ref().unwrap().files;
    assert_eq!(
        pem_ders(std::str::from_utf8(&files["/key"]).unwrap()),
        vec![key]
    );
    assert_eq!(
        pem_ders(std::str::from_utf8(&files["/crt"]).unwrap()),
        vec![cert]
    );
    c.stop().await;
}

/// A user certificate is only accepted with proof of possession of its key: alice's
/// certificate with mallory's key fails the handshake.
#[tokio::test(flavor = "multi_thread")]
async fn user_certificate_without_its_key_is_refused() {
    let (c, _) = rbac_coord(json!({})).await;
    let forged = Who {
        chain: vec![cert_der("alice")],
        key: user("mallory").key,
    };
    let r = try_call(
        c.client(),
        "GET",
        "/api/v2/secrets?s=uk",
        None,
        Some(&forged),
    )
    .await;
    assert!(
        r.is_err(),
        "a certificate without its key was accepted: {}",
        r.map(|r| r.text()).unwrap_or_default()
    );
    // The server is unaffected.
    ok(&get_secrets(&c, "s=uk", Some(&user("alice"))).await);
    c.stop().await;
}

/// Sign-quote signs a verified quote whose TCB is merely not UpToDate, reporting the status.
#[tokio::test(flavor = "multi_thread")]
async fn sign_quote_reports_out_of_date_tcb() {
    let c = start_with_tcb("OutOfDate").await;
    let m = format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p"}}}},"Config":{{"FeatureGates":["SignQuoteEndpoint"]}}}}"#,
        hex::encode(U)
    );
    ok(&c.set_manifest(m.as_bytes()).await);
    let root = {
        let r = call(c.client(), "GET", "/api/v2/quote", None, None).await;
        pem_ders(r.json()["data"]["cert"].as_str().unwrap()).remove(1)
    };
    let quote = c.sim().issuer(id_for(&c)).quote(&[0x22; 64]).unwrap();
    let body = json!({"sgxQuote": B64.encode(&quote)})
        .to_string()
        .into_bytes();
    let d = ok(&call(c.client(), "POST", "/api/v2/sign-quote", Some(body), None).await);
    assert_eq!(d["tcbStatus"], "OutOfDate");
    let sig = B64
        .decode(d["verificationSignature"].as_str().unwrap())
        .unwrap();
    let mut msg = B64.encode(&quote).into_bytes();
    msg.extend_from_slice(b"OutOfDate");
    cairn_ca::verify_manifest_signature(&root, &msg, &sig).unwrap();
    c.stop().await;
}

/// In Recovery the user endpoints answer with the state error (naming recovery mode), not a
/// generic 401/404, and the pending update of the sealed state is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn user_endpoints_in_recovery_mode() {
    let c = Coord::start().await;
    let v1 = two_admin_manifest("one", json!({}));
    ok(&c.set_manifest(v1.as_bytes()).await);
    ok(&update(&c, &two_admin_manifest("two", json!({})), &user("alice")).await);
    let (dir, tmp) = c.stop().await;
    let state_file = dir.join("seal").join(cairn_store::STATE_FILE);
    let mut bytes = std::fs::read(&state_file).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&state_file, &bytes).unwrap();
    let c = Coord {
        running: start_in(&dir, &[]).await,
        dir,
        _tmp: tmp,
    };
    assert_eq!(c.status_code().await, 1);
    let alice = user("alice");
    let state_error = |r: &Resp| {
        assert_eq!(r.status, 500, "{}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "error");
        let m = v["message"].as_str().unwrap();
        assert!(
            m.starts_with("server is not in expected state: Coordinator is in state 1 (Coordinator is in recovery mode."),
            "{m}"
        );
    };
    state_error(&get_secrets(&c, "s=x", Some(&alice)).await);
    state_error(&set_secrets(&c, json!({"x": {"Key": "AA=="}}), &alice).await);
    state_error(&update(&c, "{}", &alice).await);
    state_error(&ack(&c, "{}", &alice).await);
    state_error(
        &call(
            c.client(),
            "POST",
            "/api/v2/update-cancel",
            None,
            Some(&alice),
        )
        .await,
    );
    state_error(&call(c.client(), "GET", "/api/v2/update", None, None).await);
    assert_eq!(std::fs::read(&state_file).unwrap(), bytes);
    c.stop().await;
}

/// Two users with the same certificate are refused even when the PEM text differs (users are
/// matched on DER bytes, so one of them could never authenticate).
#[tokio::test(flavor = "multi_thread")]
async fn same_user_certificate_written_differently_is_refused() {
    let c = Coord::start().await;
    let alice = pem_file("alice.crt");
    let alice_crlf = alice.replace('\n', "\r\n");
    assert_ne!(alice, alice_crlf);
    let raw = json!({
        "Packages": {"p": {"UniqueID": hex::encode(U)}},
        "Marbles": {"m": {"Package": "p"}},
        "Users": {
            "alice": {"Certificate": alice, "Roles": []},
            "zed": {"Certificate": alice_crlf, "Roles": []}
        }
    })
    .to_string();
    assert_error(
        &c.set_manifest(raw.as_bytes()).await,
        500,
        "invalid manifest (E_CHECK): Users.zed.Certificate: users \"alice\" and \"zed\" have the same certificate (written differently)",
    );
    assert_eq!(c.status_code().await, 2);
    c.stop().await;
}
