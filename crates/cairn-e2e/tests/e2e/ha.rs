//! High availability (issue 8): a real etcd and three Coordinator processes on loopback, each on
//! its own simulated "machine" (same simulation root, different platform secret, so different
//! seal keys): the state key travels between instances over the attested peer port.
//!
//! Needs `etcd` on PATH and a Coordinator built with `--features etcd` named by
//! `CAIRN_HA_COORDINATOR` (`scripts/test-etcd.sh` sets both). Without them the tests print a
//! note and pass, unless `CAIRN_REQUIRE_ETCD=1`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_bench::blocking::Blocking;
use cairn_bench::evidence::{prepare, sim_identity};
use cairn_bench::Evidence;
use cairn_e2e::Proc;
use cairn_platform::{EnclaveIdentity, SimPlatformDir};

use crate::etcd_server::{start_or_skip, EtcdServer};

const DEADLINE: Duration = Duration::from_secs(60);
const MR_ENCLAVE: [u8; 32] = [0x5a; 32];

/// One Coordinator process in HA mode.
struct Instance {
    proc: Proc,
    client: SocketAddr,
    mesh: SocketAddr,
    seal: PathBuf,
    sim: PathBuf,
}

struct Cluster {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    etcd: EtcdServer,
    nodes: Vec<Instance>,
    sim: SimPlatformDir,
    id: EnclaveIdentity,
    b: Blocking,
}

fn coordinator_or_skip(test: &str) -> Option<PathBuf> {
    match std::env::var_os("CAIRN_HA_COORDINATOR") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("CAIRN_REQUIRE_ETCD").as_deref() == Ok("1") => panic!(
            "{test}: CAIRN_REQUIRE_ETCD=1 but CAIRN_HA_COORDINATOR does not name a \
             cairn-coordinator built with --features etcd (scripts/test-etcd.sh builds it)"
        ),
        None => {
            eprintln!("note: skipping {test}: CAIRN_HA_COORDINATOR is not set (scripts/test-etcd.sh runs it)");
            None
        }
    }
}

impl Cluster {
    fn start(test: &str) -> Option<Cluster> {
        let bin = coordinator_or_skip(test)?;
        let etcd = start_or_skip(test)?;
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("sim-0");
        let sim = SimPlatformDir::open_or_create(&base).unwrap();
        let id = sim_identity(&sim, MR_ENCLAVE);
        let mut c = Cluster {
            bin,
            etcd,
            nodes: Vec::new(),
            sim,
            id,
            b: Blocking::new(4).unwrap(),
            _tmp: tmp,
        };
        for i in 0..3 {
            let sim_dir = c._tmp.path().join(format!("sim-{i}"));
            if i > 0 {
                clone_machine(&base, &sim_dir);
            }
            let seal = c._tmp.path().join(format!("seal-{i}"));
            let node = c.spawn(&seal, &sim_dir, &[]);
            // The first instance creates the state; the others obtain its key from a peer.
            wait_status(&c.b, node.client, 2);
            if i > 0 {
                wait_log(&node.proc, "received the state key from a peer instance");
            }
            c.nodes.push(node);
        }
        Some(c)
    }

    fn spawn(&self, seal: &Path, sim: &Path, extra: &[&str]) -> Instance {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--simulation",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &self.etcd.url(),
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
            "--dns-names",
            "localhost,127.0.0.1",
        ])
        .arg("--seal-dir")
        .arg(seal)
        .arg("--sim-dir")
        .arg(sim)
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("EDG_COORDINATOR_CLIENT_ADDR")
        .env_remove("EDG_COORDINATOR_MESH_ADDR")
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_PEER_ADDR");
        let mut proc = Proc::spawn(cmd).unwrap();
        let client = proc
            .lines
            .wait_for("client API listening on ", &mut proc.child)
            .unwrap();
        let mesh = proc
            .lines
            .wait_for("mesh API listening on ", &mut proc.child)
            .unwrap();
        Instance {
            proc,
            client: client.parse().unwrap(),
            mesh: mesh.parse().unwrap(),
            seal: seal.to_path_buf(),
            sim: sim.to_path_buf(),
        }
    }

    fn evidence(&self, n: usize) -> Vec<Evidence> {
        prepare(&self.sim, &self.id, n, 4).unwrap()
    }

    fn set_manifest(&self, node: usize, manifest: &str) {
        let r = self
            .b
            .set_manifest(self.nodes[node].client, manifest.as_bytes())
            .unwrap();
        assert_eq!(
            r.status,
            200,
            "manifest set: {}",
            String::from_utf8_lossy(&r.body)
        );
        let t = Instant::now();
        for n in &self.nodes {
            wait_status(&self.b, n.client, 3);
        }
        eprintln!(
            "manifest set through instance {node} served by all within {:?}",
            t.elapsed()
        );
    }

    /// `GET /api/v2/manifest` data and the served certificate chain.
    fn view(&self, node: usize) -> (serde_json::Value, String) {
        let addr = self.nodes[node].client;
        let r = self
            .b
            .https_request(addr, "GET", "/api/v2/manifest", None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let data = r.json().unwrap()["data"].clone();
        (data, self.b.quote_cert(addr).unwrap())
    }
}

/// A second simulated machine: same simulation PKI (so quotes verify everywhere) but its own
/// platform secret, hence its own seal keys.
fn clone_machine(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["root.pem", "collateral.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("platform.json")).unwrap()).unwrap();
    let secret = cairn_crypto::random_bytes(32).unwrap();
    assert!(v["platform_secret"].is_string(), "platform.json layout");
    v["platform_secret"] = hex::encode(secret).into();
    std::fs::write(dst.join("platform.json"), serde_json::to_vec(&v).unwrap()).unwrap();
}

/// The program the `cairn-premain` marbles run (measured in simulation).
const TOOL: &str = "/bin/true";

fn manifest(limited: u64, crash: u64) -> String {
    serde_json::json!({
        "Packages": {
            "p": {"UniqueID": hex::encode(MR_ENCLAVE)},
            "tool": {"UniqueID": cairn_e2e::measure(Path::new(TOOL)).unwrap()}
        },
        "Marbles": {
            "free": {"Package": "p"},
            "tool": {"Package": "tool"},
            "limited": {"Package": "p", "MaxActivations": limited},
            "crash": {"Package": "p", "MaxActivations": crash},
            "w": {"Package": "p", "MaxActivations": 1_000_000}
        }
    })
    .to_string()
}

fn wait_log(p: &Proc, marker: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !p.lines.text().contains(marker) {
        assert!(
            Instant::now() < deadline,
            "no {marker:?} within {DEADLINE:?}:\n{}",
            p.lines.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_status(b: &Blocking, addr: SocketAddr, want: i64) {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    while Instant::now() < deadline {
        match b.status_code(addr) {
            Ok(s) if s == want => return,
            other => last = Some(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} did not reach state {want} within {DEADLINE:?}: last {last:?}");
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Refused(String),
    Transport(String),
}

fn activate(b: &Blocking, mesh: SocketAddr, ev: &Evidence, marble_type: &str) -> Outcome {
    match b.activate(mesh, ev, marble_type) {
        Ok(Ok(_)) => Outcome::Ok,
        Ok(Err(s)) => Outcome::Refused(s.message().to_string()),
        Err(e) => Outcome::Transport(format!("{e:#}")),
    }
}

/// Runs `evidence` through `workers` threads, request `i` to `targets[i % len]`.
fn load(
    b: &Blocking,
    evidence: &[Evidence],
    targets: &[SocketAddr],
    marble_type: &str,
    workers: usize,
    acked: &AtomicUsize,
) -> Vec<(SocketAddr, Outcome)> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(ev) = evidence.get(i) else { return };
                let target = targets[i % targets.len()];
                let o = activate(b, target, ev, marble_type);
                if o == Outcome::Ok {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                out.lock().unwrap().push((target, o));
            });
        }
    });
    out.into_inner().unwrap()
}

#[test]
fn three_coordinators_share_one_state_on_etcd() {
    let Some(mut c) = Cluster::start("three_coordinators_share_one_state_on_etcd") else {
        return;
    };
    const N: u64 = 12;
    const M: u64 = 40;

    // An instance of a lower SecurityVersion is attested and refused the state key: it stays in
    // recovery mode and never sees the state.
    let rogue_sim = c._tmp.path().join("sim-rogue");
    clone_machine(&c.nodes[0].sim, &rogue_sim);
    let rogue = c.spawn(
        &c._tmp.path().join("seal-rogue"),
        &rogue_sim,
        &["--sim-svn", "0"],
    );
    let refusal = "SecurityVersion 0 is lower than this instance's 1";
    let deadline = Instant::now() + DEADLINE;
    while !c
        .nodes
        .iter()
        .any(|n| n.proc.lines.text().contains(refusal))
    {
        assert!(
            Instant::now() < deadline,
            "no peer refused the rogue instance"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.b.status_code(rogue.client).unwrap(), 1);
    assert!(!rogue
        .proc
        .lines
        .text()
        .contains("received the state key from a peer instance"));
    drop(rogue);

    // Manifest through the second instance; every instance serves the same root and manifest.
    c.set_manifest(1, &manifest(N, M));
    let views: Vec<_> = (0..3).map(|i| c.view(i)).collect();
    assert!(views[0].1.contains("BEGIN CERTIFICATE"));
    assert_eq!(views[0], views[1]);
    assert_eq!(views[0], views[2]);
    let expected_fp = hex::encode(cairn_crypto::sha256(manifest(N, M).as_bytes()));
    assert_eq!(views[0].0["manifestFingerprint"], expected_fp.as_str());

    // Marbles activate through all three.
    let ev = c.evidence(3);
    for (i, n) in c.nodes.iter().enumerate() {
        assert_eq!(
            activate(&c.b, n.mesh, &ev[i], "free"),
            Outcome::Ok,
            "node {i}"
        );
    }

    // A real marble (`cairn-premain` measuring and launching a program) through each one, its
    // Coordinator root pinned to the root all three serve.
    let root_pem = c._tmp.path().join("root.pem");
    let chain = &views[0].1;
    let root = &chain[chain.rfind("-----BEGIN CERTIFICATE-----").unwrap()..];
    std::fs::write(&root_pem, root).unwrap();
    for (i, n) in c.nodes.iter().enumerate() {
        let mut cmd = Command::new(cairn_e2e::bin("cairn-premain").unwrap());
        cmd.arg("--")
            .arg(TOOL)
            .env("EDG_MARBLE_TYPE", "tool")
            .env("EDG_MARBLE_COORDINATOR_ADDR", n.mesh.to_string())
            .env(
                "EDG_MARBLE_UUID_FILE",
                c._tmp.path().join(format!("uuid-{i}")),
            )
            .env("CAIRN_SIM_DIR", &c.nodes[0].sim)
            .env("CAIRN_COORDINATOR_ROOT_CA", &root_pem);
        let o = cairn_e2e::run_bounded(cmd, DEADLINE).unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "premain through node {i}: {}",
            cairn_e2e::show(&o)
        );
    }

    // MaxActivations = N under concurrent load over the three: exactly N succeed.
    let meshes: Vec<_> = c.nodes.iter().map(|n| n.mesh).collect();
    let ev = c.evidence(45);
    let acked = AtomicUsize::new(0);
    let results = load(&c.b, &ev, &meshes, "limited", 9, &acked);
    let ok = results.iter().filter(|(_, o)| *o == Outcome::Ok).count();
    assert_eq!(ok, usize::try_from(N).unwrap(), "{results:?}");
    for (addr, o) in &results {
        if let Outcome::Refused(m) = o {
            assert!(m.contains("reached max activations"), "{addr}: {m}");
        } else {
            assert_eq!(*o, Outcome::Ok, "{addr}");
        }
    }
    // SIGKILL one instance mid-load: acknowledged activations are never lost.
    let ev = c.evidence(90);
    let acked = AtomicUsize::new(0);
    let killed_mesh = c.nodes[2].mesh;
    let results = std::thread::scope(|s| {
        let h = s.spawn(|| load(&c.b, &ev, &meshes, "crash", 6, &acked));
        let deadline = Instant::now() + DEADLINE;
        while acked.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        c.nodes[2].proc.child.kill().unwrap();
        h.join().unwrap()
    });
    let killed_unknown = results
        .iter()
        .filter(|(a, o)| *a == killed_mesh && matches!(o, Outcome::Transport(_)))
        .count();
    for (a, o) in &results {
        if *a != killed_mesh {
            assert!(
                !matches!(o, Outcome::Transport(_)),
                "a surviving instance failed: {a}: {o:?}"
            );
        }
    }
    // Drain the budget through the survivors.
    let mut acked = results.iter().filter(|(_, o)| *o == Outcome::Ok).count();
    let ev = c.evidence(usize::try_from(M).unwrap() + 5);
    let mut refused = false;
    for (i, e) in ev.iter().enumerate() {
        match activate(&c.b, meshes[i % 2], e, "crash") {
            Outcome::Ok => acked += 1,
            Outcome::Refused(m) => {
                assert!(m.contains("reached max activations"), "{m}");
                refused = true;
                break;
            }
            t => panic!("survivor failed: {t:?}"),
        }
    }
    assert!(refused, "the budget of {M} was never exhausted");
    let m = usize::try_from(M).unwrap();
    // Nothing acknowledged was lost (else more than M would have been granted); at most the
    // answers the killed instance could not send are unaccounted for.
    assert!(acked <= m, "acked {acked} > MaxActivations {m}");
    assert!(
        acked + killed_unknown >= m,
        "acked {acked} + unknown {killed_unknown} < {m}"
    );

    // The killed instance restarts from its own seal dir: it opens the state with its own
    // sealed key, without recovery and without asking a peer.
    let (seal, sim) = (c.nodes[2].seal.clone(), c.nodes[2].sim.clone());
    let node = c.spawn(&seal, &sim, &[]);
    wait_status(&c.b, node.client, 3);
    assert!(
        !node
            .proc
            .lines
            .text()
            .contains("asking the running instances"),
        "{}",
        node.proc.lines.text()
    );
    c.nodes[2] = node;
    assert_eq!(c.view(2), views[0]);
    let ev = c.evidence(1);
    assert_eq!(activate(&c.b, c.nodes[2].mesh, &ev[0], "free"), Outcome::Ok);
    // It sees the exhausted budget.
    let ev = c.evidence(1);
    match activate(&c.b, c.nodes[2].mesh, &ev[0], "crash") {
        Outcome::Refused(m) => assert!(m.contains("reached max activations"), "{m}"),
        o => panic!("{o:?}"),
    }

    // etcd down: writes fail with a clear error, cached reads keep working.
    c.etcd.kill();
    let ev = c.evidence(3);
    let started = Instant::now();
    match activate(&c.b, c.nodes[0].mesh, &ev[0], "w") {
        Outcome::Refused(m) => {
            assert!(m.contains("etcd"), "{m}");
            eprintln!(
                "write with etcd down failed after {:?}: {m}",
                started.elapsed()
            );
        }
        o => panic!("write with etcd down: {o:?}"),
    }
    for i in 0..3 {
        assert_eq!(c.b.status_code(c.nodes[i].client).unwrap(), 3);
        assert_eq!(c.view(i), views[0]);
    }
    assert_eq!(activate(&c.b, c.nodes[1].mesh, &ev[1], "free"), Outcome::Ok);

    // etcd back: writes work again through every instance.
    c.etcd.restart();
    let ev = c.evidence(60);
    let mut used = 0;
    for i in 0..3 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let o = activate(&c.b, c.nodes[i].mesh, &ev[used], "w");
            used += 1;
            if o == Outcome::Ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} after etcd restart: {o:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Activations per second with every activation committed (MaxActivations set), through one
/// instance and spread over three. Measurement only (run by hand, figures in the issue):
/// `CAIRN_HA_COORDINATOR=… cargo test --release -p cairn-e2e --test e2e ha::throughput -- --ignored --nocapture`
#[test]
#[ignore = "measurement, run by hand"]
fn throughput() {
    let Some(c) = Cluster::start("throughput") else {
        return;
    };
    c.set_manifest(0, &manifest(1, 1));
    let meshes: Vec<_> = c.nodes.iter().map(|n| n.mesh).collect();
    let n = std::env::var("CAIRN_HA_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600usize);
    let workers = 16;
    let warm = c.evidence(30);
    load(&c.b, &warm, &meshes, "w", 6, &AtomicUsize::new(0));
    for (label, targets) in [
        ("one instance", &meshes[..1]),
        ("three instances", &meshes[..]),
    ] {
        let ev = c.evidence(n);
        let acked = AtomicUsize::new(0);
        let t = Instant::now();
        let r = load(&c.b, &ev, targets, "w", workers, &acked);
        let secs = t.elapsed().as_secs_f64();
        let ok = acked.load(Ordering::SeqCst);
        let failed: Vec<_> = r
            .iter()
            .filter(|(_, o)| *o != Outcome::Ok)
            .take(3)
            .collect();
        eprintln!(
            "HA throughput, {label}: {ok}/{n} committed activations in {secs:.2} s = {:.0}/s (concurrency {workers}); failures: {failed:?}",
            ok as f64 / secs
        );
    }
}

/// Test PKI for an etcd that requires mutual TLS: CA, server certificate for 127.0.0.1, client
/// certificate. Writes `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`, `client-key.pem`.
fn etcd_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, eku) in [
        // etcd's own gateway dials the server with the server certificate as client.
        (
            "server",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        ),
        ("client", vec![ExtendedKeyUsagePurpose::ClientAuth]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        p.extended_key_usages = eku;
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

/// `--etcd-ca/--etcd-cert/--etcd-key`: a Coordinator in HA mode on an etcd that accepts only
/// clients with a certificate from its CA; without the client certificate it cannot start.
#[test]
fn etcd_with_mutual_tls() {
    let test = "etcd_with_mutual_tls";
    let Some(bin) = coordinator_or_skip(test) else {
        return;
    };
    let Some(plain) = start_or_skip(test) else {
        return;
    };
    drop(plain);
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path();
    etcd_pki(pki);
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let url = format!("https://127.0.0.1:{}", ports[0]);
    let peer = format!("http://127.0.0.1:{}", ports[1]);
    let mut etcd = Command::new("etcd");
    etcd.arg("--name=default")
        .arg(format!("--data-dir={}", pki.join("etcd").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=default={peer}"))
        .arg(format!("--cert-file={}", pki.join("server.pem").display()))
        .arg(format!(
            "--key-file={}",
            pki.join("server-key.pem").display()
        ))
        .arg(format!(
            "--trusted-ca-file={}",
            pki.join("ca.pem").display()
        ))
        .arg("--client-cert-auth");
    let mut etcd = Proc::spawn(etcd).unwrap();
    wait_log(&etcd, "serving client requests on");
    let path = |f: &str| pki.join(f).display().to_string();
    let start = |extra: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--simulation",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &url,
            "--etcd-ca",
            &path("ca.pem"),
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
        ])
        .arg("--seal-dir")
        .arg(pki.join("seal"))
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("CAIRN_STORE");
        Proc::spawn(cmd).unwrap()
    };
    // Without a client certificate etcd refuses the connection: start-up fails naming etcd.
    let mut refused = start(&[]);
    let code = refused.wait(DEADLINE).unwrap();
    assert_ne!(code, 0);
    assert!(
        refused.lines.text().contains("etcd"),
        "{}",
        refused.lines.text()
    );
    let mut ok = start(&[
        "--etcd-cert",
        &path("client.pem"),
        "--etcd-key",
        &path("client-key.pem"),
    ]);
    let client = ok
        .lines
        .wait_for("client API listening on ", &mut ok.child)
        .unwrap();
    let b = Blocking::new(2).unwrap();
    let addr: SocketAddr = client.parse().unwrap();
    wait_status(&b, addr, 2);
    let r = b.set_manifest(addr, manifest(1, 1).as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_status(&b, addr, 3);
    let _ = etcd.child.kill();
}

fn key_file(name: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests/keys");
    std::fs::read_to_string(format!("{dir}/{name}")).unwrap()
}

/// `POST /api/v2/recover[?force=true]` with the decrypted, signed `secret`.
fn post_recover(
    b: &Blocking,
    addr: SocketAddr,
    secret: &[u8],
    force: bool,
) -> (u16, serde_json::Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = cairn_recovery::sign_secret(&key_file("recovery1.key"), secret).unwrap();
    let body = serde_json::json!({
        "recoverySecret": b64.encode(secret),
        "recoverySecretSignature": b64.encode(sig),
    });
    let path = if force {
        "/api/v2/recover?force=true"
    } else {
        "/api/v2/recover"
    };
    let r = b
        .https_request(addr, "POST", path, Some(body.to_string().into_bytes()))
        .unwrap();
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&r.body).into()));
    (r.status, v)
}

/// FR-34 (Contrast PR #1563, MarbleRun distributed Coordinator): 1) an instance restarted
/// without its KEK gets it from the serving peers by itself, and a manual recovery of an
/// instance in recovery mode is refused while peers serve, and when forced the serving instances
/// fetch the new key from the recovered one; 2) every instance restarted on a new
/// machine (no KEK anywhere) waits in recovery mode, and one recovery through one instance
/// restores all three, serving the same root and manifest.
#[test]
fn fr34_recovery_across_instances() {
    let Some(mut c) = Cluster::start("fr34_recovery_across_instances") else {
        return;
    };
    let mut m: serde_json::Value = serde_json::from_str(&manifest(5, 5)).unwrap();
    m["RecoveryKeys"] = serde_json::json!({ "recovery1": key_file("recovery1.pub") });
    let m = m.to_string();
    let r = c.b.set_manifest(c.nodes[0].client, m.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let data: serde_json::Value = r.json().unwrap();
    let share = {
        use base64::Engine as _;
        let b64 = data["data"]["RecoverySecrets"]["recovery1"]
            .as_str()
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let secret = cairn_recovery::decrypt_secret(&key_file("recovery1.key"), &share)
        .unwrap()
        .to_vec();
    for n in &c.nodes {
        wait_status(&c.b, n.client, 3);
    }
    let views: Vec<_> = (0..3).map(|i| c.view(i)).collect();
    assert_eq!(views[0], views[1]);
    assert_eq!(views[0], views[2]);
    let expected_fp = hex::encode(cairn_crypto::sha256(m.as_bytes()));
    assert_eq!(views[0].0["manifestFingerprint"], expected_fp.as_str());

    // 1a) Instance 2 restarts with its KEK dir removed: its peers hand the key over.
    c.nodes[2].proc.child.kill().unwrap();
    let (seal, sim) = (c.nodes[2].seal.clone(), c.nodes[2].sim.clone());
    std::fs::remove_dir_all(seal.join("kek")).unwrap();
    let node = c.spawn(&seal, &sim, &[]);
    wait_log(&node.proc, "received the state key from a peer instance");
    wait_status(&c.b, node.client, 3);
    c.nodes[2] = node;
    assert_eq!(c.view(2), views[0]);

    // 1b) An instance that stays in recovery mode (its peers refuse it the key: lower SVN) is
    // refused a manual recovery while the three serve; nothing is consumed or changed.
    let rogue_sim = c._tmp.path().join("sim-rogue");
    clone_machine(&c.nodes[0].sim, &rogue_sim);
    let rogue = c.spawn(
        &c._tmp.path().join("seal-rogue"),
        &rogue_sim,
        &["--sim-svn", "0"],
    );
    wait_status(&c.b, rogue.client, 1);
    let (status, body) = post_recover(&c.b, rogue.client, &secret, false);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["status"], "fail", "{body}");
    let msg = body["message"].as_str().unwrap_or_default().to_owned();
    let msg = if msg.is_empty() {
        body.to_string()
    } else {
        msg
    };
    assert!(
        msg.contains("other Coordinator instance(s) serve the shared state"),
        "{msg}"
    );
    assert!(
        msg.contains("obtains the state key from them automatically"),
        "{msg}"
    );
    assert!(msg.contains("force=true"), "{msg}");
    assert_eq!(c.b.status_code(rogue.client).unwrap(), 1);
    for i in 0..3 {
        assert_eq!(c.view(i), views[0], "instance {i}");
    }

    // 1c) Forced, the recovery runs and re-keys the state; the three notice that their key no
    // longer opens it and fetch the current one from the recovered instance: writes through
    // every instance work again and all serve the same root and manifest.
    let (status, body) = post_recover(&c.b, rogue.client, &secret, true);
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("Recovery successful."), "{body}");
    wait_status(&c.b, rogue.client, 3);
    for (i, n) in c.nodes.iter().enumerate() {
        wait_log(&n.proc, "the shared state was re-keyed");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ev = c.evidence(1);
            match activate(&c.b, n.mesh, &ev[0], "w") {
                Outcome::Ok => break,
                o => assert!(
                    Instant::now() < deadline,
                    "instance {i} after the forced recovery: {o:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(c.view(i), views[0], "instance {i}");
    }
    drop(rogue);

    // 2) All three stop and start on new machines: no KEK anywhere, all in recovery mode.
    for n in &mut c.nodes {
        n.proc.child.kill().unwrap();
        let _ = n.proc.child.wait();
    }
    let mut fresh = Vec::new();
    for i in 0..3 {
        let sim = c._tmp.path().join(format!("sim-new-{i}"));
        clone_machine(&c.nodes[0].sim, &sim);
        let node = c.spawn(&c._tmp.path().join(format!("seal-new-{i}")), &sim, &[]);
        wait_status(&c.b, node.client, 1);
        fresh.push(node);
    }
    c.nodes = fresh;
    // One recovery through instance 0. The stopped instances count as serving until their
    // presence expires (peer::PRESENCE_TTL), so it may first be refused; never forced here.
    let deadline = Instant::now() + DEADLINE;
    let mut refusals = 0;
    let body = loop {
        let (status, body) = post_recover(&c.b, c.nodes[0].client, &secret, false);
        if status == 200 {
            break body;
        }
        assert_eq!(status, 409, "{body}");
        refusals += 1;
        assert!(Instant::now() < deadline, "recovery still refused: {body}");
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("recovery accepted after {refusals} refusals while stopped instances expired");
    assert!(body.to_string().contains("Recovery successful."), "{body}");
    let t = Instant::now();
    for n in &c.nodes {
        wait_status(&c.b, n.client, 3);
    }
    eprintln!(
        "all three instances serving {:?} after the recovery",
        t.elapsed()
    );
    for i in 1..3 {
        assert!(
            c.nodes[i]
                .proc
                .lines
                .text()
                .contains("received the state key from a peer instance"),
            "instance {i}"
        );
    }
    for i in 0..3 {
        assert_eq!(c.view(i), views[0], "instance {i}");
    }
    let ev = c.evidence(3);
    for (i, n) in c.nodes.iter().enumerate() {
        assert_eq!(
            activate(&c.b, n.mesh, &ev[i], "free"),
            Outcome::Ok,
            "instance {i}"
        );
    }
}
