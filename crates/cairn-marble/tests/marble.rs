//! Activation against a scripted fake Coordinator (real TLS, real gRPC), and the `cairn-premain`
//! binary end to end with a simulated platform dir.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support {
    pub mod pki;
}

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cairn_api::rpc::marble_server::{Marble, MarbleServer};
use cairn_api::rpc::{ActivationReq, ActivationResp, Parameters};
use cairn_marble::client::{activate_with_retry, CoordinatorTrust, RetryPolicy};
use cairn_marble::{ActivationIdentity, MarbleError};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use support::pki::Deployment;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

// ---------- fake Coordinator ----------

#[derive(Clone)]
struct PeerCert(Option<Vec<u8>>);

struct Conn(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for Conn {
    type ConnectInfo = PeerCert;
    fn connect_info(&self) -> PeerCert {
        PeerCert(
            self.0
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec()),
        )
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Requires a client certificate, accepts any (the Coordinator binds it through the quote).
#[derive(Debug)]
struct AnyClientCert;

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &cairn_crypto::provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &cairn_crypto::provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        cairn_crypto::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Default)]
struct Script {
    /// Answer FailedPrecondition this many times first.
    not_ready: u32,
    /// Final answer.
    reply: Option<Result<Parameters, (tonic::Code, String)>>,
    /// What was received (request, peer cert).
    seen: Vec<(ActivationReq, Option<Vec<u8>>)>,
}

#[derive(Clone)]
struct FakeCoordinator(Arc<Mutex<Script>>);

#[tonic::async_trait]
impl Marble for FakeCoordinator {
    async fn activate(
        &self,
        req: Request<ActivationReq>,
    ) -> Result<Response<ActivationResp>, Status> {
        let peer = req.extensions().get::<PeerCert>().and_then(|p| p.0.clone());
        let mut s = self.0.lock().unwrap();
        s.seen.push((req.into_inner(), peer));
        if s.not_ready > 0 {
            s.not_ready -= 1;
            return Err(Status::failed_precondition(
                "cannot accept marbles in current state",
            ));
        }
        match s.reply.clone().unwrap() {
            Ok(p) => Ok(Response::new(ActivationResp {
                parameters: Some(p),
            })),
            Err((code, msg)) => Err(Status::new(code, msg)),
        }
    }
}

/// Start the fake Coordinator presenting intermediate + root (as Cairn's mesh server does).
async fn start_coordinator(d: &Deployment, script: Script) -> (String, Arc<Mutex<Script>>) {
    cairn_crypto::install_default_provider();
    let chain = vec![
        CertificateDer::from(d.intermediate_der.clone()),
        CertificateDer::from(d.root_der.clone()),
    ];
    let key = PrivateKeyDer::from_pem_slice(d.intermediate_key_pem.as_bytes()).unwrap();
    let mut cfg = ServerConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(AnyClientCert))
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Conn, std::io::Error>>(8);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok(Conn(tls))).await;
                }
            });
        }
    });
    let script = Arc::new(Mutex::new(script));
    let svc = MarbleServer::new(FakeCoordinator(script.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap();
    });
    (addr, script)
}

fn params(files: &[(&str, &[u8])], env: &[(&str, &str)], argv: &[&str]) -> Parameters {
    Parameters {
        files: files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(50),
    }
}

// ---------- library ----------

#[tokio::test]
async fn pinned_root_activation_retries_until_ready() {
    let d = Deployment::new();
    let (addr, script) = start_coordinator(
        &d,
        Script {
            not_ready: 2,
            reply: Some(Ok(params(&[("a", b"x")], &[("K", "v")], &[]))),
            ..Script::default()
        },
    )
    .await;
    let id = ActivationIdentity::generate(&["localhost".into()]).unwrap();
    let uuid = uuid::Uuid::new_v4();
    let trust = CoordinatorTrust::from_pem(d.root_pem.as_bytes()).unwrap();
    // "localhost" is in the Coordinator certificate's SANs; connect through it.
    let addr = addr.replace("127.0.0.1", "localhost");
    let out = activate_with_retry(&addr, &trust, &id, b"QUOTE", "backend", &uuid, &fast())
        .await
        .unwrap();
    assert_eq!(out.attempts, 3);
    assert_eq!(out.parameters.env["K"], b"v");
    let s = script.lock().unwrap();
    let (req, peer) = s.seen.last().unwrap();
    assert_eq!(req.quote, b"QUOTE");
    assert_eq!(req.csr, id.csr_der());
    assert_eq!(req.marble_type, "backend");
    assert_eq!(req.uuid, uuid.to_string());
    assert_eq!(
        peer.as_deref(),
        Some(id.cert_der()),
        "client cert = quoted cert"
    );
}

#[tokio::test]
async fn wrong_pinned_root_is_fatal_and_not_retried() {
    let d = Deployment::new();
    let (addr, script) = start_coordinator(
        &d,
        Script {
            reply: Some(Ok(params(&[], &[], &[]))),
            ..Script::default()
        },
    )
    .await;
    let other = Deployment::new();
    let trust = CoordinatorTrust::from_pem(other.root_pem.as_bytes()).unwrap();
    let id = ActivationIdentity::generate(&["localhost".into()]).unwrap();
    let e = activate_with_retry(&addr, &trust, &id, b"", "m", &uuid::Uuid::new_v4(), &fast())
        .await
        .unwrap_err();
    assert!(matches!(e, MarbleError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("pinned root"), "{e}");
    assert!(script.lock().unwrap().seen.is_empty());
}

#[tokio::test]
async fn accept_any_and_permission_denied_is_fatal() {
    let d = Deployment::new();
    let (addr, script) = start_coordinator(
        &d,
        Script {
            reply: Some(Err((
                tonic::Code::PermissionDenied,
                "marble verification failed".into(),
            ))),
            ..Script::default()
        },
    )
    .await;
    let id = ActivationIdentity::generate(&["localhost".into()]).unwrap();
    let e = activate_with_retry(
        &addr,
        &CoordinatorTrust::AcceptAny,
        &id,
        b"",
        "m",
        &uuid::Uuid::new_v4(),
        &fast(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            MarbleError::Rejected {
                code: tonic::Code::PermissionDenied,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(script.lock().unwrap().seen.len(), 1);
}

// ---------- cairn-premain binary ----------

struct PremainRun {
    code: Option<i32>,
    stderr: String,
}

async fn run_premain(dir: &Path, env: &[(&str, String)], args: &[&str]) -> PremainRun {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn-premain"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    PremainRun {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sim_env(dir: &Path, addr: &str, root_pem: &str) -> Vec<(&'static str, String)> {
    let sim = dir.join("sim");
    cairn_platform::SimPlatformDir::open_or_create(&sim).unwrap();
    std::fs::write(dir.join("root.pem"), root_pem).unwrap();
    vec![
        ("EDG_MARBLE_TYPE", "backend".into()),
        (
            "EDG_MARBLE_COORDINATOR_ADDR",
            addr.replace("127.0.0.1", "localhost"),
        ),
        ("EDG_MARBLE_UUID_FILE", "state/uuid".into()),
        ("CAIRN_SIM_DIR", sim.display().to_string()),
        ("CAIRN_SIM_PRODUCT_ID", "3".into()),
        ("CAIRN_SIM_SVN", "2".into()),
        (
            "CAIRN_COORDINATOR_ROOT_CA",
            dir.join("root.pem").display().to_string(),
        ),
    ]
}

#[tokio::test]
async fn premain_writes_files_sets_env_and_execs_with_manifest_argv() {
    let d = Deployment::new();
    let script_sh =
        "tr '\\000' '|' < /proc/$$/cmdline > argv.txt; printf '%s|%s' \"$0\" \"$GREETING\" > out.txt";
    let (addr, script) = start_coordinator(
        &d,
        Script {
            reply: Some(Ok(params(
                &[
                    ("conf/tls/key.pem", b"KEY\x00BYTES"),
                    ("plain.txt", b"hello"),
                ],
                &[("GREETING", "hi there")],
                &["my-sh", "-c", script_sh, "first-arg"],
            ))),
            ..Script::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let env = sim_env(tmp.path(), &addr, &d.root_pem);
    let run = run_premain(tmp.path(), &env, &["--", "sh", "ignored-arg"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(tmp.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        std::fs::read(tmp.path().join("conf/tls/key.pem")).unwrap(),
        b"KEY\x00BYTES"
    );
    assert_eq!(mode("conf/tls/key.pem"), 0o600);
    assert_eq!(mode("conf/tls"), 0o700);
    assert_eq!(mode("plain.txt"), 0o600);
    assert_eq!(mode("state/uuid"), 0o600);
    // argv[0] and args from the manifest, executable from the command line
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("out.txt")).unwrap(),
        "first-arg|hi there"
    );
    let argv = std::fs::read_to_string(tmp.path().join("argv.txt")).unwrap();
    assert!(argv.starts_with("my-sh|-c|tr "), "{argv}");
    assert!(argv.ends_with("|first-arg|"), "{argv}");
    assert!(
        run.stderr.contains("activation successful"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("KEY"),
        "no secrets in logs: {}",
        run.stderr
    );

    // The quote is OE-wrapped, binds the client cert, and carries the measured identity of sh.
    let (req, peer) = script.lock().unwrap().seen.last().cloned().unwrap();
    let raw = cairn_attest::oe::unwrap(&req.quote).unwrap();
    assert_ne!(raw.len(), req.quote.len(), "OE header present");
    let q = cairn_attest::SgxQuote::parse(raw).unwrap();
    assert_eq!(
        &q.report_data[..32],
        &cairn_crypto::sha256(peer.as_ref().unwrap())
    );
    assert_eq!((q.isv_prod_id, q.isv_svn), (3, 2));
    let sh = std::fs::read("/bin/sh")
        .or_else(|_| std::fs::read("/usr/bin/sh"))
        .unwrap();
    assert_eq!(q.mr_enclave, cairn_crypto::sha256(&sh));
    // Re-activation reuses the UUID
    let uuid_first = req.uuid.clone();
    let run = run_premain(tmp.path(), &env, &["sh"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        script.lock().unwrap().seen.last().unwrap().0.uuid,
        uuid_first
    );
}

#[tokio::test]
async fn premain_fr37_whole_command_line_in_argv_fails_loudly() {
    let d = Deployment::new();
    let (addr, _) = start_coordinator(
        &d,
        Script {
            reply: Some(Ok(params(
                &[("f", b"x")],
                &[],
                &["python3 /server.py -p 8000"],
            ))),
            ..Script::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let env = sim_env(tmp.path(), &addr, &d.root_pem);
    let run = run_premain(tmp.path(), &env, &["sh"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("contains spaces"), "{}", run.stderr);
    assert!(
        run.stderr.contains("/sh"),
        "names the executable: {}",
        run.stderr
    );
    assert!(!tmp.path().join("f").exists(), "nothing written on refusal");
}

#[tokio::test]
async fn premain_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_premain(tmp.path(), &[], &["sh"]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("EDG_MARBLE_TYPE"), "{}", run.stderr);

    let d = Deployment::new();
    let env = sim_env(tmp.path(), "127.0.0.1:1", &d.root_pem);
    let run = run_premain(tmp.path(), &env, &["no-such-program-xyz"]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("no-such-program-xyz"), "{}", run.stderr);

    let run = run_premain(tmp.path(), &env, &[]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("PROGRAM is required"), "{}", run.stderr);

    let run = run_premain(tmp.path(), &env, &["--help"]).await;
    assert_eq!(run.code, Some(0));
}
