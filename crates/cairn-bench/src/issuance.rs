//! Certificate issuance throughput: Cairn's CA path (`cairn_ca::LeafIssuer::issue`, as
//! activation runs it) on all cores, and `cfssl serve` (`POST /api/v1/cfssl/sign`) on loopback, with P-256 CSRs prepared
//! before either is timed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use cairn_crypto::KeyType;
use http_body_util::BodyExt as _;

/// A throughput figure.
#[derive(Debug, Clone)]
pub struct Rate {
    /// Certificates issued.
    pub count: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time.
    pub wall: Duration,
}

impl Rate {
    /// Certificates per second.
    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// `n` P-256 CSRs (DER), subject and SANs as a marble sends them.
pub fn csrs(n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    (0..n)
        .map(|_| Ok(crate::evidence::marble_keys()?.csr_der))
        .collect()
}

/// `LeafIssuer::issue` (the Coordinator's activation path) on `threads` threads for `duration`, cycling through `csrs`.
pub fn cairn_library(csrs: &[Vec<u8>], threads: usize, duration: Duration) -> anyhow::Result<Rate> {
    let now = time::OffsetDateTime::now_utc();
    let ca = cairn_ca::CaBundle::generate(KeyType::P256, &["localhost".to_string()], now)?;
    let issuer = cairn_ca::LeafIssuer::new(&ca)?;
    let uuid = uuid::Uuid::nil();
    let count = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (issuer, count, errors) = (&issuer, &count, &errors);
            s.spawn(move || {
                let mut i = t;
                while start.elapsed() < duration {
                    match issuer.issue(&csrs[i % csrs.len()], &uuid, "m", now) {
                        Ok(_) => count.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    i += threads;
                }
            });
        }
    });
    Ok(Rate {
        count: count.into_inner(),
        errors: errors.into_inner(),
        wall: start.elapsed(),
    })
}

/// A `cfssl serve` process with a fresh P-256 CA, killed on drop.
pub struct Cfssl {
    child: Child,
    /// Listening address.
    pub addr: SocketAddr,
    /// `cfssl version` output, first line.
    pub version: String,
    _dir: tempfile::TempDir,
}

impl Drop for Cfssl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

impl Cfssl {
    /// Process id of `cfssl serve`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Generates a CA with `cfssl genkey -initca` and starts `cfssl serve` on a free loopback
    /// port. Errors when cfssl is missing or does not come up.
    pub async fn start(binary: &Path) -> anyhow::Result<Cfssl> {
        let version = String::from_utf8_lossy(&run(Command::new(binary).arg("version"))?)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let dir = tempfile::tempdir()?;
        let csr_json = dir.path().join("ca-csr.json");
        std::fs::write(
            &csr_json,
            r#"{"CN":"cairn bench cfssl CA","key":{"algo":"ecdsa","size":256},"names":[{"O":"cairn-bench"}]}"#,
        )?;
        let out = run(Command::new(binary)
            .arg("genkey")
            .arg("-initca")
            .arg(&csr_json))?;
        let v: serde_json::Value =
            serde_json::from_slice(&out).context("cfssl genkey output is not JSON")?;
        let (Some(cert), Some(key)) = (v["cert"].as_str(), v["key"].as_str()) else {
            bail!("cfssl genkey output lacks cert/key: {v}");
        };
        let ca = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca-key.pem");
        std::fs::write(&ca, cert)?;
        std::fs::write(&ca_key, key)?;
        let port = {
            // Reserve-and-release a free port; cfssl cannot report a port-0 bind.
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let child = Command::new(binary)
            .args(["serve", "-address", "127.0.0.1", "-port", &port.to_string()])
            .arg("-ca")
            .arg(&ca)
            .arg("-ca-key")
            .arg(&ca_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting cfssl serve")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut me = Cfssl {
            child,
            addr,
            version,
            _dir: dir,
        };
        let probe = csrs(1)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = me.child.try_wait()? {
                bail!("cfssl serve exited ({status})");
            }
            if let Ok(mut c) = HttpConn::connect(addr).await {
                let (status, body) = c.sign(&probe[0]).await?;
                if status == 200 && sign_ok(&body) {
                    break;
                }
                bail!(
                    "cfssl sign probe failed: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
            if Instant::now() > deadline {
                bail!("cfssl serve not reachable on {addr} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(me)
    }

    /// `conns` keep-alive HTTP/1.1 connections signing in a closed loop for `duration`.
    pub async fn load(
        &self,
        csrs: &[Vec<u8>],
        conns: usize,
        duration: Duration,
    ) -> anyhow::Result<Rate> {
        let csrs = Arc::new(csrs.to_vec());
        let count = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..conns.max(1) {
            let (csrs, count, errors, stop) =
                (csrs.clone(), count.clone(), errors.clone(), stop.clone());
            let addr = self.addr;
            tasks.push(tokio::spawn(async move {
                let mut conn: Option<HttpConn> = None;
                let mut i = t;
                while !stop.load(Ordering::Relaxed) && start.elapsed() < duration {
                    if conn.is_none() {
                        conn = HttpConn::connect(addr).await.ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    match c.sign(&csrs[i % csrs.len()]).await {
                        Ok((200, body)) if sign_ok(&body) => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                    i += conns;
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        stop.store(true, Ordering::Relaxed);
        Ok(Rate {
            count: count.load(Ordering::Relaxed),
            errors: errors.load(Ordering::Relaxed),
            wall: start.elapsed(),
        })
    }
}

fn sign_ok(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v["success"] == true && v["result"]["certificate"].is_string())
        .unwrap_or(false)
}

/// One keep-alive HTTP/1.1 connection to cfssl.
struct HttpConn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
}

impl HttpConn {
    async fn connect(addr: SocketAddr) -> anyhow::Result<HttpConn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(HttpConn { sender })
    }

    async fn sign(&mut self, csr_der: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr_der.to_vec()));
        let body = serde_json::json!({ "certificate_request": pem }).to_string();
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/v1/cfssl/sign")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
        self.sender.ready().await?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.sender.send_request(req))
            .await
            .map_err(|_| anyhow!("cfssl sign timed out"))??;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, body))
    }
}

/// `cfssl` on `PATH`, or the given path.
pub fn find_cfssl(given: &Path) -> Option<PathBuf> {
    if given.components().count() > 1 {
        return given.is_file().then(|| given.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(given))
            .find(|p| p.is_file())
    })
}
