//! Hostile input against the real Coordinator: oversized and malformed REST bodies, truncated
//! TLS, garbage HTTP/2 and gRPC frames, thousands of idle connections and malformed quotes. After
//! each, well-formed requests are still served and the process's memory stays bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_bench::blocking::Blocking;
use cairn_bench::client::client_config;
use cairn_bench::{evidence, ActivationReq, Evidence};
use cairn_e2e::Coordinator;
use rustls::pki_types::ServerName;

/// cairn-coordinator's refusal log: full lines per window and window length.
const REFUSAL_LINES_PER_WINDOW: usize = 10;
const REFUSAL_LOG_WINDOW_SECS: u64 = 10;
/// How long a test waits for the Coordinator to react (close a connection, answer).
const DEADLINE: Duration = Duration::from_secs(30);
/// The Coordinator's TLS handshake timeout (client and mesh API), plus slack.
const HANDSHAKE_TIMEOUT_BOUND: Duration = Duration::from_secs(25);
/// Memory the Coordinator may grow by over its idle footprint across one hostile test (2000
/// idle connections take about 30 MiB).
const RSS_GROWTH_BOUND_KIB: u64 = 48 * 1024;

/// A Coordinator in state 3 with one marble type (unlimited activations) and evidence for it.
struct Target {
    _tmp: tempfile::TempDir,
    coord: Coordinator,
    rt: Blocking,
    client: SocketAddr,
    mesh: SocketAddr,
    ev: Evidence,
    idle_rss_kib: u64,
}

impl Target {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let coord = Coordinator::start(&tmp.path().join("seal"), &[]).expect("coordinator");
        let rt = Blocking::new(2).expect("runtime");
        let client: SocketAddr = coord.client_addr.parse().expect("client addr");
        let mesh: SocketAddr = coord.mesh_addr.parse().expect("mesh addr");
        let sim = cairn_platform::SimPlatformDir::open(&coord.sim_dir()).expect("sim dir");
        let mr_enclave = cairn_crypto::sha256(b"cairn-e2e hostile marble");
        let manifest = cairn_bench::client::manifest_json(&mr_enclave, 0);
        let r = rt
            .set_manifest(client, manifest.as_bytes())
            .expect("manifest set");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let ev =
            evidence::evidence(&sim, &evidence::sim_identity(&sim, mr_enclave)).expect("evidence");
        let mut t = Target {
            _tmp: tmp,
            coord,
            rt,
            client,
            mesh,
            ev,
            idle_rss_kib: 0,
        };
        t.assert_serving("start");
        t.idle_rss_kib = t.status_kib("VmRSS");
        // From here VmHWM is the peak of the hostile traffic, not of start-up (which hashes the
        // whole executable in simulation).
        cairn_bench::procfs::reset_hwm(t.pid()).expect("reset VmHWM");
        t
    }

    fn pid(&self) -> u32 {
        self.coord.proc.child.id()
    }

    fn status_kib(&self, field: &str) -> u64 {
        cairn_bench::procfs::status_kib(self.pid(), field).expect("/proc status")
    }

    /// A status request and an activation succeed.
    fn assert_serving(&self, after: &str) {
        assert_eq!(
            self.rt.status_code(self.client).expect("status request"),
            3,
            "after {after}"
        );
        let mut ev = self.ev.clone();
        ev.uuid = evidence::random_uuid().expect("uuid");
        match self.rt.activate(self.mesh, &ev, "m") {
            Ok(Ok(resp)) => assert!(
                resp.parameters
                    .expect("parameters")
                    .env
                    .contains_key("MARBLE_PREDEFINED_PRIVATE_KEY"),
                "after {after}: activation without a key"
            ),
            other => panic!("after {after}: activation failed: {other:?}"),
        }
    }

    /// Well-formed requests still work and the resident set grew by less than the bound.
    fn assert_healthy(&self, after: &str) {
        self.assert_serving(after);
        let (rss, peak) = (self.status_kib("VmRSS"), self.status_kib("VmHWM"));
        eprintln!(
            "hostile: after {after}: VmRSS {rss} KiB, peak {peak} KiB (idle {} KiB)",
            self.idle_rss_kib
        );
        assert!(
            peak <= self.idle_rss_kib + RSS_GROWTH_BOUND_KIB,
            "after {after}: VmHWM {peak} KiB, idle was {} KiB",
            self.idle_rss_kib
        );
        assert!(
            self.coord
                .proc
                .lines
                .text()
                .lines()
                .all(|l| !l.contains("panicked")),
            "after {after}: the Coordinator panicked:\n{}",
            self.coord.proc.lines.text()
        );
    }

    fn activate_with_quote(&self, name: &str, quote: Vec<u8>) -> tonic::Status {
        let req = ActivationReq {
            quote,
            csr: self.ev.csr_der.clone(),
            marble_type: "m".into(),
            uuid: evidence::random_uuid().expect("uuid"),
        };
        match self
            .rt
            .activate_raw(self.mesh, &self.ev.cert_der, &self.ev.key_der, req)
        {
            Ok(Err(s)) => s,
            Ok(Ok(_)) => panic!("{name}: activation accepted"),
            Err(e) => panic!("{name}: transport error {e:#}"),
        }
    }
}

fn random(n: usize) -> Vec<u8> {
    cairn_crypto::random_bytes(n).expect("random")
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.set_write_timeout(Some(DEADLINE)).expect("timeout");
    s
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection (handshake completed) offering `alpn`, optionally with a client certificate.
fn tls(addr: SocketAddr, alpn: &[u8], cert: Option<(&[u8], &[u8])>) -> Tls {
    let cfg = client_config(cert, alpn).expect("client config");
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").expect("name"))
        .expect("client connection");
    let mut s = rustls::StreamOwned::new(conn, tcp(addr));
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// Reads until EOF or error (a closed or reset connection) and returns what arrived; panics if
/// the peer keeps the connection open past the read timeout.
fn read_until_closed(r: &mut impl Read, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{what}: the Coordinator kept the connection open")
            }
            Err(_) => return out,
        }
    }
}

/// The status code of the first HTTP/1.1 response line in `bytes`.
fn http_status(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Sends `head` and then `body_len` bytes of `fill` in chunks over TLS to the client API,
/// tolerating the server closing early; returns the response status if one arrived.
fn http_send(t: &Target, head: &str, body_len: usize, fill: u8) -> Option<u16> {
    let mut s = tls(t.client, b"http/1.1", None);
    s.write_all(head.as_bytes()).expect("write head");
    let chunk = vec![fill; 256 * 1024];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        if s.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let _ = s.flush();
    http_status(&read_until_closed(&mut s, head))
}

fn post_head(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    )
}

/// A complete TLS ClientHello as the first flight of a client.
fn client_hello(alpn: &[u8]) -> Vec<u8> {
    let cfg: Arc<rustls::ClientConfig> = client_config(None, alpn).expect("client config");
    let mut c =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").expect("name"))
            .expect("client connection");
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).expect("write hello");
    }
    out
}

/// The soft limit on open files of this process (the Coordinator inherits it).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn fd_count(pid: u32) -> usize {
    cairn_bench::procfs::fd_count(pid).expect("/proc fd")
}

#[test]
fn oversized_and_malformed_rest_bodies() {
    let t = Target::start();

    // A body over the 64 KiB limit of the small endpoints: 413.
    let len = 128 * 1024;
    assert_eq!(
        http_send(&t, &post_head("/api/v2/secrets", len), len, b'a'),
        Some(413)
    );
    // A manifest body over the manifest limit, streamed: refused (413) or cut off, never
    // buffered without bound.
    let len = 40 << 20;
    let got = http_send(&t, &post_head("/api/v2/manifest", len), len, b'A');
    assert!(
        matches!(got, Some(413) | None),
        "oversized manifest: {got:?}"
    );
    t.assert_healthy("oversized bodies");

    // Deeply nested JSON: a parse error, not a stack overflow.
    let body = "[".repeat(200_000);
    let mut s = tls(t.client, b"http/1.1", None);
    s.write_all(post_head("/api/v2/manifest", body.len()).as_bytes())
        .expect("head");
    s.write_all(body.as_bytes()).expect("body");
    assert_eq!(
        http_status(&read_until_closed(&mut s, "nested JSON")),
        Some(400)
    );
    // Not JSON at all, and JSON of the wrong shape.
    for body in [
        "\u{0}\u{1}garbage",
        "{\"manifest\": 17}",
        "{\"manifest\": \"!!\"}",
    ] {
        let mut s = tls(t.client, b"http/1.1", None);
        s.write_all(post_head("/api/v2/manifest", body.len()).as_bytes())
            .expect("head");
        s.write_all(body.as_bytes()).expect("body");
        assert_eq!(
            http_status(&read_until_closed(&mut s, body)),
            Some(400),
            "body {body:?}"
        );
    }
    // A 1 MiB header: refused (431) or cut off.
    let mut s = tls(t.client, b"http/1.1", None);
    let head = format!(
        "GET /api/v2/status HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    let _ = s.write_all(head.as_bytes());
    let got = http_status(&read_until_closed(&mut s, "big header"));
    assert!(matches!(got, Some(431) | None), "big header: {got:?}");
    // A request line that is not HTTP.
    let mut s = tls(t.client, b"http/1.1", None);
    s.write_all(&random(4096)).expect("garbage");
    let got = http_status(&read_until_closed(&mut s, "garbage request"));
    assert!(matches!(got, Some(400) | None), "garbage request: {got:?}");

    t.assert_healthy("malformed bodies");
}

#[test]
fn truncated_tls_and_garbage_frames() {
    let t = Target::start();
    for (name, addr, alpn) in [
        ("client API", t.client, &b"http/1.1"[..]),
        ("mesh API", t.mesh, &b"h2"[..]),
    ] {
        // Half a ClientHello, then EOF.
        let hello = client_hello(alpn);
        let mut s = tcp(addr);
        s.write_all(&hello[..hello.len() / 2]).expect("half hello");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert!(
            read_until_closed(&mut s, name).is_empty(),
            "{name}: answered half a hello"
        );
        // A record header announcing more than a TLS record may hold, then garbage.
        let mut s = tcp(addr);
        let mut bad = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        bad.extend(random(1024));
        s.write_all(&bad).expect("bad record");
        let answer = read_until_closed(&mut s, name);
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{name}: answer to a bad record is neither silence nor a TLS alert: {answer:02x?}"
        );
        // Random bytes instead of TLS.
        let mut s = tcp(addr);
        s.write_all(&random(16 * 1024)).expect("garbage");
        let answer = read_until_closed(&mut s, name);
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{name}: answer to garbage is neither silence nor a TLS alert: {answer:02x?}"
        );
    }
    // The mesh API without a client certificate: the handshake fails.
    let mut s = tcp(t.mesh);
    let cfg = client_config(None, b"h2").expect("config");
    let mut conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").expect("name"))
            .expect("conn");
    let mut failed = false;
    let until = Instant::now() + DEADLINE;
    while Instant::now() < until {
        match conn.complete_io(&mut s) {
            Ok((0, 0)) => break,
            Ok(_) if !conn.is_handshaking() => {
                // TLS 1.3: the server's refusal arrives with the first read after the handshake.
                let mut b = [0u8; 1];
                let r = rustls::Stream::new(&mut conn, &mut s).read(&mut b);
                failed = !matches!(r, Ok(1));
                break;
            }
            Ok(_) => {}
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "mesh API accepted a client without a certificate");
    t.assert_healthy("truncated TLS");

    let cert = Some((&t.ev.cert_der[..], &t.ev.key_der[..]));
    // HTTP/2 expected, garbage sent: the server closes the connection.
    let mut s = tls(t.mesh, b"h2", cert);
    s.write_all(&random(64 * 1024)).expect("garbage");
    read_until_closed(&mut s, "garbage instead of the HTTP/2 preface");
    // The preface, then garbage frames: a GOAWAY, then the connection closes.
    let mut s = tls(t.mesh, b"h2", cert);
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend([0, 0, 4, 0xee, 0, 0, 0, 0, 1]); // unknown frame type on stream 1 (ignored)
    bytes.extend([0, 0, 8, 0, 0, 0, 0, 0, 0]); // DATA on stream 0: connection error
    bytes.extend(random(8));
    s.write_all(&bytes).expect("frames");
    let answer = read_until_closed(&mut s, "garbage HTTP/2 frames");
    assert!(
        frame_types(&answer).contains(&7),
        "no GOAWAY in the answer to garbage frames: {answer:02x?}"
    );

    // gRPC frames with a broken message.
    let (c, k) = (&t.ev.cert_der[..], &t.ev.key_der[..]);
    let activate = "/rpc.Marble/Activate";
    let mut frame = vec![0, 0, 0, 0, 32];
    frame.extend([0xff; 32]);
    let r =
        t.rt.grpc_raw(t.mesh, c, k, activate, frame)
            .expect("grpc call");
    assert_eq!(
        r.grpc_status.as_deref(),
        Some("13"),
        "undecodable message: {r:?}"
    );
    // A message length far over the limit: refused before it is buffered.
    let mut frame = vec![0, 0x40, 0, 0, 0];
    frame.extend(random(1024));
    let r =
        t.rt.grpc_raw(t.mesh, c, k, activate, frame)
            .expect("grpc call");
    assert_eq!(r.grpc_status.as_deref(), Some("11"), "1 GiB message: {r:?}");
    // A frame cut short.
    let mut frame = vec![0, 0, 0, 1, 0];
    frame.extend(random(10));
    let r =
        t.rt.grpc_raw(t.mesh, c, k, activate, frame)
            .expect("grpc call");
    assert_eq!(
        r.grpc_status.as_deref(),
        Some("13"),
        "truncated frame: {r:?}"
    );
    // A compressed flag without an encoding.
    let r =
        t.rt.grpc_raw(t.mesh, c, k, activate, vec![1, 0, 0, 0, 1, 0])
            .expect("grpc call");
    assert_eq!(
        r.grpc_status.as_deref(),
        Some("13"),
        "compressed frame: {r:?}"
    );
    // An unknown method.
    let r =
        t.rt.grpc_raw(t.mesh, c, k, "/rpc.Marble/Nope", vec![0, 0, 0, 0, 0])
            .expect("grpc call");
    assert_eq!(
        r.grpc_status.as_deref(),
        Some("12"),
        "unknown method: {r:?}"
    );

    t.assert_healthy("garbage frames");
}

/// The types of the HTTP/2 frames in `bytes` (server preface included).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        out.push(rest[3]);
        rest = rest.get(9 + len..).unwrap_or(&[]);
    }
    out
}

#[test]
fn thousands_of_idle_connections() {
    let t = Target::start();
    let pid = t.pid();
    // Both processes hold one descriptor per connection; stay well below the limit.
    let per_listener = (open_files_limit().saturating_sub(256) / 2).min(1000);
    let fds_before = fd_count(pid);
    let mut idle = Vec::with_capacity(2 * per_listener);
    for _ in 0..per_listener {
        idle.push(tcp(t.client));
        idle.push(tcp(t.mesh));
    }
    // Half of them also sent the start of a ClientHello and stalled.
    let hello = client_hello(b"h2");
    for s in idle.iter_mut().step_by(2) {
        s.write_all(&hello[..10]).expect("partial hello");
    }
    // Accepted by the Coordinator (polled: accepting 2000 connections takes a moment). The
    // count before may include a few transient descriptors (the health check's connections).
    let want = fds_before + idle.len() - 8;
    let until = Instant::now() + DEADLINE;
    while fd_count(pid) < want && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = fd_count(pid);
    assert!(
        held >= want,
        "coordinator holds {held} fds, expected at least {want}; its output:\n{}",
        t.coord.proc.lines.text()
    );
    t.assert_healthy(&format!("{} idle connections", idle.len()));

    // The handshake timeout closes every one of them.
    let start = Instant::now();
    for (i, s) in idle.iter_mut().enumerate() {
        s.set_read_timeout(Some(HANDSHAKE_TIMEOUT_BOUND))
            .expect("timeout");
        let mut b = [0u8; 64];
        let r = s.read(&mut b);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "idle connection {i} still open after {:?}: {r:?}",
            start.elapsed()
        );
    }
    drop(idle);
    let until = Instant::now() + DEADLINE;
    while fd_count(pid) > fds_before + 16 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = fd_count(pid);
    assert!(
        after <= fds_before + 16,
        "coordinator still holds {after} fds (before: {fds_before})"
    );
    t.assert_healthy("idle connections closed");
}

#[test]
fn malformed_quotes_are_refused() {
    let t = Target::start();
    let quote = t.ev.quote.clone();
    assert!(quote.len() > 1000, "quote of {} bytes", quote.len());
    let raw = quote[16..].to_vec();
    // SGX quote v3: header 48, report body 384, u32 signature data length, then the ECDSA
    // signature (64), the attestation key (64) and the QE report (384); OE header 16 in front.
    let mut flipped_sig = quote.clone();
    flipped_sig[16 + 436 + 5] ^= 0x01;
    let mut flipped_key = quote.clone();
    flipped_key[16 + 500 + 5] ^= 0x01;
    let mut flipped_qe = quote.clone();
    flipped_qe[16 + 564 + 100] ^= 0x01;
    let mut flipped_body = quote.clone();
    flipped_body[16 + 48 + 64] ^= 0x01; // MRENCLAVE
    let mut huge_oe = quote.clone();
    huge_oe[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut wrong_type = quote.clone();
    wrong_type[4..8].copy_from_slice(&7u32.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random", random(5000)),
        ("16-byte OE header only", quote[..16].to_vec()),
        ("truncated to 100 bytes", quote[..100].to_vec()),
        ("truncated to half", quote[..quote.len() / 2].to_vec()),
        ("last byte missing", quote[..quote.len() - 1].to_vec()),
        (
            "raw quote, last byte missing",
            raw[..raw.len() - 1].to_vec(),
        ),
        ("quote signature byte flipped", flipped_sig),
        ("attestation key byte flipped", flipped_key),
        ("QE report byte flipped", flipped_qe),
        ("MRENCLAVE byte flipped", flipped_body),
        ("OE size u64::MAX", huge_oe),
        ("OE type 7", wrong_type),
        ("trailing garbage", [quote.clone(), random(64)].concat()),
    ];
    let mut wrong = Vec::new();
    for (name, q) in cases {
        let req = ActivationReq {
            quote: q,
            csr: t.ev.csr_der.clone(),
            marble_type: "m".into(),
            uuid: evidence::random_uuid().expect("uuid"),
        };
        match t
            .rt
            .activate_raw(t.mesh, &t.ev.cert_der, &t.ev.key_der, req)
        {
            Ok(Err(s)) if s.code() == tonic::Code::PermissionDenied => {}
            other => wrong.push(format!(
                "{name}: {:?}",
                other.map(|r| r.map(|_| "accepted"))
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "malformed quotes not refused:\n{}",
        wrong.join("\n")
    );
    // A valid quote bound to another certificate.
    let other = evidence::evidence(
        &cairn_platform::SimPlatformDir::open(&t.coord.sim_dir()).expect("sim"),
        &evidence::sim_identity(
            &cairn_platform::SimPlatformDir::open(&t.coord.sim_dir()).expect("sim"),
            cairn_crypto::sha256(b"cairn-e2e hostile marble"),
        ),
    )
    .expect("evidence");
    let s = t.activate_with_quote("bound to another certificate", other.quote);
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("not bound"), "{s:?}");
    t.assert_healthy("malformed quotes");
}

/// Field case FR-35: a crash-looping marble with the wrong identity plus unparsable quotes do not
/// flood the log or slow status requests, and a valid activation still succeeds afterwards.
#[test]
fn fr35_refusal_storm_is_summarised_not_logged_line_by_line() {
    const WRONG_IDENTITY: usize = 400;
    const UNPARSABLE_EVERY: usize = 10;
    let t = Target::start();
    let sim = cairn_platform::SimPlatformDir::open(&t.coord.sim_dir()).expect("sim dir");
    let wrong = evidence::evidence(
        &sim,
        &evidence::sim_identity(&sim, cairn_crypto::sha256(b"not the manifest's marble")),
    )
    .expect("evidence");
    let started = Instant::now();
    let mut slowest_status = Duration::ZERO;
    let mut refused = 0usize;
    for i in 0..WRONG_IDENTITY {
        let mut ev = wrong.clone();
        ev.uuid = evidence::random_uuid().expect("uuid");
        match t.rt.activate(t.mesh, &ev, "m") {
            Ok(Err(s)) if s.code() == tonic::Code::PermissionDenied => refused += 1,
            other => panic!(
                "wrong identity {i}: {:?}",
                other.map(|r| r.map(|_| "accepted"))
            ),
        }
        if i % UNPARSABLE_EVERY == 0 {
            let s = t.activate_with_quote("unparsable", random(700));
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
            refused += 1;
            let asked = Instant::now();
            assert_eq!(t.rt.status_code(t.client).expect("status"), 3);
            slowest_status = slowest_status.max(asked.elapsed());
        }
    }
    let elapsed = started.elapsed();
    eprintln!("fr35: {refused} refusals in {elapsed:?}, slowest status {slowest_status:?}");
    assert!(
        slowest_status < Duration::from_secs(1),
        "status took {slowest_status:?}"
    );
    let text = t.coord.proc.lines.text();
    let full_lines = text
        .lines()
        .filter(|l| l.contains("marble activation refused"))
        .count();
    // Windows the storm spanned, each allowed its full lines.
    let windows = elapsed.as_secs() / REFUSAL_LOG_WINDOW_SECS + 2;
    let bound = windows as usize * REFUSAL_LINES_PER_WINDOW;
    assert!(
        (1..=bound).contains(&full_lines),
        "{full_lines} refusal lines for {refused} refusals (bound {bound})"
    );
    assert!(
        text.contains("counted and summarised"),
        "no notice that refusals are summarised:\n{text}"
    );
    t.assert_healthy("refusal storm");
}
