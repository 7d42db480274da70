//! Crash consistency of the real Coordinator: marbles activate and a user writes a secret while
//! the process is SIGKILLed at random points; after every restart the sealed state opens, every
//! acknowledged write is present, MaxActivations is never exceeded and the root CA is unchanged.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cairn_bench::blocking::Blocking;
use cairn_bench::client::{pem_ders, Resp};
use cairn_bench::evidence::{self, MarbleKeys};
use cairn_bench::Evidence;
use cairn_e2e::Coordinator;

/// Kill-and-restart rounds.
const ROUNDS: u64 = 24;
/// MaxActivations of the marble type: small enough that the rounds reach it, so refusals at
/// the limit are exercised across crashes too.
const MAX_ACTIVATIONS: u64 = 300;
/// Concurrent activating marbles per round.
const WORKERS: usize = 3;
/// Distinct marble keys/quotes; activations reuse them with fresh UUIDs.
const EVIDENCE_POOL: usize = 16;
/// Upper bound of the random delay between readiness and SIGKILL.
const MAX_KILL_DELAY_MS: u64 = 400;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("coordinator address {s:?}: {e}"))
}

fn random_u64() -> u64 {
    let b = cairn_crypto::random_bytes(8).expect("random");
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

fn manifest(mr_enclave: &[u8; 32], user: &MarbleKeys) -> Vec<u8> {
    let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", user.cert_der.clone()));
    serde_json::json!({
        "Packages": {"p": {"UniqueID": hex::encode(mr_enclave)}},
        "Marbles": {"m": {"Package": "p", "MaxActivations": MAX_ACTIVATIONS}},
        "Secrets": {"pw": {"Type": "plain", "UserDefined": true}},
        "Users": {"writer": {"Certificate": cert_pem, "Roles": ["pw-rw"]}},
        "Roles": {"pw-rw": {
            "ResourceType": "Secrets",
            "ResourceNames": ["pw"],
            "Actions": ["ReadSecret", "WriteSecret"]
        }}
    })
    .to_string()
    .into_bytes()
}

fn start(seal: &Path) -> Coordinator {
    Coordinator::start(seal, &[]).expect("coordinator starts")
}

fn root_der(rt: &Blocking, c: &Coordinator) -> Vec<u8> {
    let pem_text = rt
        .quote_cert(addr(&c.client_addr))
        .expect("GET /api/v2/quote");
    pem_ders(&pem_text)
        .into_iter()
        .next()
        .expect("quote chain has a root certificate")
}

fn write_secret(
    rt: &Blocking,
    c: SocketAddr,
    user: &MarbleKeys,
    value: &str,
) -> anyhow::Result<Resp> {
    let body = serde_json::json!({"secrets": {"pw": {"Key": B64.encode(value)}}});
    rt.https_request_as(
        c,
        Some((&user.cert_der, &user.key_der)),
        "POST",
        "/api/v2/secrets",
        Some(body.to_string().into_bytes()),
    )
}

fn read_secret(rt: &Blocking, c: SocketAddr, user: &MarbleKeys) -> Option<String> {
    let r = rt
        .https_request_as(
            c,
            Some((&user.cert_der, &user.key_der)),
            "GET",
            "/api/v2/secrets?s=pw",
            None,
        )
        .expect("GET /api/v2/secrets");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json().expect("json");
    let private = &v["data"]["secrets"]["pw"]["Private"];
    private
        .as_str()
        .map(|s| String::from_utf8(B64.decode(s).expect("base64 secret")).expect("utf-8 secret"))
}

/// What the clients know about the activation counter.
#[derive(Default)]
struct Tally {
    /// Activations the Coordinator answered with credentials.
    acked: AtomicU64,
    /// Refused with "reached max activations".
    refused_at_max: AtomicU64,
    /// Sent, but the process died before an answer: may or may not have been committed.
    unknown: AtomicU64,
}

/// What the secret writer knows: the last acknowledged value and the value in flight when the
/// process died (committed or not).
#[derive(Default, Clone)]
struct SecretLog {
    acked: Option<String>,
    in_flight: Option<String>,
}

fn with_uuid(ev: &Evidence) -> Evidence {
    let mut e = ev.clone();
    e.uuid = evidence::random_uuid().expect("uuid");
    e
}

/// One activation; returns false when the Coordinator is gone (the worker stops).
fn activate_once(rt: &Blocking, mesh: SocketAddr, ev: &Evidence, tally: &Tally) -> bool {
    match rt.activate(mesh, &with_uuid(ev), "m") {
        Ok(Ok(resp)) => {
            let params = resp.parameters.expect("activation parameters");
            assert!(
                params
                    .env
                    .contains_key("MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN"),
                "activation answered without a certificate chain"
            );
            tally.acked.fetch_add(1, Ordering::SeqCst);
            true
        }
        Ok(Err(s)) => {
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
            assert!(
                s.message().contains("reached max activations"),
                "unexpected refusal: {s:?}"
            );
            tally.refused_at_max.fetch_add(1, Ordering::SeqCst);
            true
        }
        Err(_) => {
            tally.unknown.fetch_add(1, Ordering::SeqCst);
            false
        }
    }
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_write() {
    let started = Instant::now();
    let rt = Blocking::new(2).expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let seal = tmp.path().join("seal");
    let user = evidence::marble_keys().expect("user keys");

    // Set-up: manifest, root, evidence (outside the crash rounds).
    let mut coord = start(&seal);
    let sim = cairn_platform::SimPlatformDir::open(&coord.sim_dir()).expect("sim dir");
    let mr_enclave = cairn_crypto::sha256(b"cairn-e2e crash marble");
    let id = evidence::sim_identity(&sim, mr_enclave);
    let r = rt
        .set_manifest(addr(&coord.client_addr), &manifest(&mr_enclave, &user))
        .expect("POST /api/v2/manifest");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let root = root_der(&rt, &coord);
    let pool = evidence::prepare(&sim, &id, EVIDENCE_POOL, 2).expect("evidence");

    let tally = Tally::default();
    let secret = Mutex::new(SecretLog::default());
    let mut kills = 0u64;
    for round in 0..ROUNDS {
        let client = addr(&coord.client_addr);
        let mesh = addr(&coord.mesh_addr);

        // The state opened: AcceptingMarbles, same root, acknowledged secret present.
        assert_eq!(rt.status_code(client).expect("status"), 3, "round {round}");
        assert_eq!(
            root_der(&rt, &coord),
            root,
            "root CA changed in round {round}"
        );
        {
            let mut log = secret.lock().expect("lock");
            let stored = read_secret(&rt, client, &user);
            assert!(
                stored == log.acked || (stored.is_some() && stored == log.in_flight),
                "round {round}: secret is {stored:?}, acknowledged {:?}, in flight {:?}",
                log.acked,
                log.in_flight
            );
            // What is stored now is durable: the baseline for the next kill.
            log.acked = stored;
            log.in_flight = None;
        }

        // Load, then SIGKILL after a random delay.
        let stop = AtomicBool::new(false);
        let delay = Duration::from_millis(random_u64() % MAX_KILL_DELAY_MS);
        std::thread::scope(|s| {
            for w in 0..WORKERS {
                let (rt, tally, stop, pool) = (&rt, &tally, &stop, &pool);
                s.spawn(move || {
                    let mut i = w;
                    while !stop.load(Ordering::SeqCst) {
                        if !activate_once(rt, mesh, &pool[i % pool.len()], tally) {
                            break;
                        }
                        i += WORKERS;
                    }
                });
            }
            let (rt, secret, stop, user) = (&rt, &secret, &stop, &user);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let value = format!("round {round} write {n}");
                    n += 1;
                    secret.lock().expect("lock").in_flight = Some(value.clone());
                    match write_secret(rt, client, user, &value) {
                        Ok(r) => {
                            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                            let mut log = secret.lock().expect("lock");
                            log.acked = Some(value);
                            log.in_flight = None;
                        }
                        Err(_) => break,
                    }
                }
            });
            std::thread::sleep(delay);
            coord.proc.child.kill().expect("SIGKILL");
            stop.store(true, Ordering::SeqCst);
        });
        let _ = coord.proc.child.wait();
        kills += 1;
        coord = start(&seal);
    }

    // After the last restart: fill the remaining budget one by one.
    let client = addr(&coord.client_addr);
    let mesh = addr(&coord.mesh_addr);
    assert_eq!(rt.status_code(client).expect("status"), 3);
    assert_eq!(root_der(&rt, &coord), root, "root CA changed");
    let mut extra = 0u64;
    let refusal = loop {
        match rt
            .activate(mesh, &with_uuid(&pool[0]), "m")
            .expect("transport")
        {
            Ok(_) => extra += 1,
            Err(s) => break s,
        }
        assert!(
            extra <= MAX_ACTIVATIONS,
            "more than MaxActivations accepted"
        );
    };
    assert_eq!(refusal.code(), tonic::Code::PermissionDenied, "{refusal:?}");
    assert!(
        refusal.message().contains("reached max activations"),
        "{refusal:?}"
    );

    let acked = tally.acked.load(Ordering::SeqCst);
    let unknown = tally.unknown.load(Ordering::SeqCst);
    // Every acknowledged activation was counted durably: the budget left is at most MAX - acked.
    assert!(
        acked + extra <= MAX_ACTIVATIONS,
        "acked {acked} + accepted after the last restart {extra} exceed MaxActivations {MAX_ACTIVATIONS}"
    );
    // Every committed increment is either acknowledged, accepted at the end, or was in flight
    // at a kill.
    assert!(
        acked + extra + unknown >= MAX_ACTIVATIONS,
        "acked {acked} + extra {extra} + in flight {unknown} < MaxActivations {MAX_ACTIVATIONS}"
    );
    let log = secret.lock().expect("lock").clone();
    let stored = read_secret(&rt, client, &user);
    assert!(log.acked.is_some(), "no secret write was ever acknowledged");
    assert!(
        stored == log.acked || (stored.is_some() && stored == log.in_flight),
        "secret {stored:?}, acknowledged {:?}, in flight {:?}",
        log.acked,
        log.in_flight
    );
    assert_eq!(kills, ROUNDS);
    eprintln!(
        "crash test: {ROUNDS} SIGKILLs, {acked} acknowledged activations, {} refused at the limit, \
         {unknown} in flight at a kill, {extra} accepted after the last restart, {:.1}s",
        tally.refused_at_max.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
}
