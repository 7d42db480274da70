//! `PccsCollateral` against a fake PCCS on loopback (axum, port 0) serving the recorded dcap-qvl
//! collateral in the PCS response shapes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_attest::{verify, Collateral, TrustRoot};
use cairn_platform::{CollateralSource, PccsCollateral, PlatformError};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

const NOW: u64 = 1_751_328_000;
/// 2025-07-19T10:01:18Z, the QE Identity's nextUpdate (the earliest of the sample's).
const QE_NEXT_UPDATE: u64 = 1_752_919_278;

fn data(p: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/attestation/dcap-qvl/{p}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn collateral(p: &str) -> Collateral {
    serde_json::from_slice(&data(p)).unwrap()
}

fn json(c: &Collateral) -> serde_json::Value {
    serde_json::to_value(c).unwrap()
}

fn clock(t: u64) -> cairn_platform::UnixClock {
    Arc::new(move || t)
}

/// How the fake serves `rootcacrl` (PCCS: hex text; others: DER or PEM).
#[derive(Clone, Copy)]
enum RootCrlForm {
    Hex,
    Der,
    Pem,
}

struct FakeState {
    coll: Collateral,
    /// The PCK CA whose CRL this fake serves (`processor` or `platform`).
    ca: &'static str,
    root_form: RootCrlForm,
    fail_tcb: bool,
    hits: AtomicUsize,
    paths: Mutex<Vec<String>>,
}

/// A scripted PCCS: exactly the four v4 endpoints for one FMSPC; anything else is 404.
struct FakePccs {
    addr: SocketAddr,
    state: Arc<FakeState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakePccs {
    fn start(coll: Collateral) -> Self {
        Self::start_with(coll, "processor", RootCrlForm::Hex, false)
    }

    fn start_with(
        coll: Collateral,
        ca: &'static str,
        root_form: RootCrlForm,
        fail_tcb: bool,
    ) -> Self {
        let state = Arc::new(FakeState {
            coll,
            ca,
            root_form,
            fail_tcb,
            hits: AtomicUsize::new(0),
            paths: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        FakePccs {
            addr,
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/sgx/certification/v4/", self.addr)
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn paths(&self) -> Vec<String> {
        let mut p = self.state.paths.lock().unwrap().clone();
        p.sort();
        p
    }

    /// Stops serving; afterwards the port refuses connections.
    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for FakePccs {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chain_header(pem: &str) -> HeaderValue {
    HeaderValue::from_str(&utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string()).unwrap()
}

async fn handle(State(st): State<Arc<FakeState>>, req: Request) -> Response {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    st.paths.lock().unwrap().push(if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    });
    let c = &st.coll;
    let tcb: serde_json::Value = serde_json::from_str(&c.tcb_info).unwrap();
    let tee = if tcb["id"] == "TDX" { "tdx" } else { "sgx" };
    let fmspc = tcb["fmspc"].as_str().unwrap().to_string();
    let not_found = || StatusCode::NOT_FOUND.into_response();
    match path.as_str() {
        "/sgx/certification/v4/pckcrl" => {
            if query != format!("ca={}&encoding=der", st.ca) {
                return StatusCode::BAD_REQUEST.into_response();
            }
            let mut r = c.pck_crl.clone().into_response();
            r.headers_mut().insert(
                "SGX-PCK-CRL-Issuer-Chain",
                chain_header(&c.pck_crl_issuer_chain),
            );
            r
        }
        p if p == format!("/{tee}/certification/v4/tcb") => {
            if st.fail_tcb {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            if query != format!("fmspc={fmspc}") {
                return not_found();
            }
            let body = format!(
                "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                c.tcb_info,
                hex::encode(&c.tcb_info_signature)
            );
            let mut r = body.into_response();
            // The PCS sends TCB-Info-Issuer-Chain; older PCCS versions SGX-TCB-Info-Issuer-Chain.
            let name = if tee == "sgx" {
                "SGX-TCB-Info-Issuer-Chain"
            } else {
                "TCB-Info-Issuer-Chain"
            };
            r.headers_mut()
                .insert(name, chain_header(&c.tcb_info_issuer_chain));
            r
        }
        p if p == format!("/{tee}/certification/v4/qe/identity") => {
            let body = format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                c.qe_identity,
                hex::encode(&c.qe_identity_signature)
            );
            let mut r = body.into_response();
            r.headers_mut().insert(
                "SGX-Enclave-Identity-Issuer-Chain",
                chain_header(&c.qe_identity_issuer_chain),
            );
            r
        }
        "/sgx/certification/v4/rootcacrl" => match st.root_form {
            RootCrlForm::Hex => hex::encode(&c.root_ca_crl).into_response(),
            RootCrlForm::Der => c.root_ca_crl.clone().into_response(),
            RootCrlForm::Pem => {
                pem::encode(&pem::Pem::new("X509 CRL", c.root_ca_crl.clone())).into_response()
            }
        },
        _ => not_found(),
    }
}

#[test]
fn pccs_fetch_verifies_caches_and_names_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let recorded = collateral("sgx_quote_collateral.json");
    let server = FakePccs::start(recorded.clone());
    let quote = data("sgx_quote");
    let src = PccsCollateral::new(&server.url(), Some(cache.clone()))
        .unwrap()
        .with_clock(clock(NOW));

    let c = src.collateral_for(&quote).unwrap();
    assert_eq!(json(&c), json(&recorded));
    let v = verify(&quote, &c, NOW, &TrustRoot::IntelProduction).unwrap();
    assert_eq!(v.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_eq!(v.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(
        server.paths(),
        [
            "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
            "/sgx/certification/v4/qe/identity",
            "/sgx/certification/v4/rootcacrl",
            "/sgx/certification/v4/tcb?fmspc=00A067110000",
        ]
    );
    assert_eq!(server.hits(), 4);
    let file = cache.join("sgx-00A067110000-processor.json");
    assert_eq!(super::mode(&file), 0o600);

    // Cache hit: no request, from the same source and from a new one on the same directory.
    let c2 = src.collateral_for(&quote).unwrap();
    assert_eq!(json(&c2), json(&recorded));
    let src2 = PccsCollateral::new(&server.url(), Some(cache.clone()))
        .unwrap()
        .with_clock(clock(NOW + 3600));
    src2.collateral_for(&quote).unwrap();
    assert_eq!(server.hits(), 4, "cache hit must make no request");

    // An OE-wrapped quote selects the same entry.
    src2.collateral_for(&cairn_attest::oe::wrap(&quote))
        .unwrap();
    assert_eq!(server.hits(), 4);
}

#[test]
fn pccs_refetches_when_stale_or_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let server = FakePccs::start(collateral("sgx_quote_collateral.json"));
    let quote = data("sgx_quote");
    let at = |t: u64| {
        PccsCollateral::new(&server.url(), Some(cache.clone()))
            .unwrap()
            .with_clock(clock(t))
    };
    at(NOW).fetch(&quote).unwrap();
    assert_eq!(server.hits(), 4);
    // Older than the default max age (24 h) but still valid: refetched.
    at(NOW + 2 * 86_400).fetch(&quote).unwrap();
    assert_eq!(server.hits(), 8);
    // Past the QE Identity's nextUpdate: refetched (and dcap-qvl will judge the result).
    at(QE_NEXT_UPDATE).fetch(&quote).unwrap();
    assert_eq!(server.hits(), 12);
    // Fetched just before it: the entry is fresh until then, so the second call is a hit.
    let cache2 = tmp.path().join("cache2");
    let s = PccsCollateral::new(&server.url(), Some(cache2))
        .unwrap()
        .with_clock(clock(QE_NEXT_UPDATE - 10));
    s.fetch(&quote).unwrap();
    s.fetch(&quote).unwrap();
    assert_eq!(server.hits(), 16);
    // No cache directory: every call fetches.
    let nocache = PccsCollateral::new(&server.url(), None)
        .unwrap()
        .with_clock(clock(NOW));
    nocache.fetch(&quote).unwrap();
    nocache.fetch(&quote).unwrap();
    assert_eq!(server.hits(), 24);
}

#[test]
fn pccs_down_uses_valid_cache_else_names_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let recorded = collateral("sgx_quote_collateral.json");
    let mut server = FakePccs::start(recorded.clone());
    let url = server.url();
    let quote = data("sgx_quote");
    PccsCollateral::new(&url, Some(cache.clone()))
        .unwrap()
        .with_clock(clock(NOW))
        .fetch(&quote)
        .unwrap();
    server.stop();

    // Down, cached entry stale by age (max_age 0) but before nextUpdate: the cached copy.
    let c = PccsCollateral::new(&url, Some(cache.clone()))
        .unwrap()
        .with_max_age(Duration::ZERO)
        .with_clock(clock(NOW + 86_400))
        .fetch(&quote)
        .unwrap();
    assert_eq!(json(&c), json(&recorded));

    // Down, cached entry expired: the fetch error.
    let e = PccsCollateral::new(&url, Some(cache.clone()))
        .unwrap()
        .with_clock(clock(QE_NEXT_UPDATE))
        .fetch(&quote)
        .unwrap_err();
    assert!(matches!(e, PlatformError::Pccs { .. }), "{e:?}");

    // Down, no cache: an error naming the URL and the cause.
    let e = PccsCollateral::new(&url, Some(tmp.path().join("empty")))
        .unwrap()
        .fetch(&quote)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("PCCS {url}")),
        "error must name the URL: {msg}"
    );
    assert!(msg.contains("connection refused"), "{msg}");
}

#[test]
fn pccs_closed_port_fails_fast_naming_the_url() {
    // FR-22: an unreachable PCCS is an error naming it, never a fallback.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("https://127.0.0.1:{port}/sgx/certification/v4/");
    let src = PccsCollateral::new(&url, None)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    let t0 = Instant::now();
    let e = src.fetch(&data("sgx_quote")).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "PCCS https://127.0.0.1:{port}/sgx/certification/v4/"
        )),
        "{msg}"
    );
    assert!(msg.ends_with(": connection refused"), "{msg}");
}

#[test]
fn pccs_silent_server_times_out() {
    // Accepts connections (kernel backlog) but never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let src = PccsCollateral::new(&url, None)
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    let t0 = Instant::now();
    let e = src.fetch(&data("sgx_quote")).unwrap_err();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let msg = e.to_string();
    assert!(msg.contains(&url) && msg.contains("timed out"), "{msg}");
    drop(l);
}

#[test]
fn pccs_tdx_uses_tdx_paths() {
    let recorded = collateral("tdx_quote_collateral.json");
    let server = FakePccs::start_with(recorded.clone(), "platform", RootCrlForm::Der, false);
    let quote = data("tdx_quote");
    let c = PccsCollateral::new(&server.url(), None)
        .unwrap()
        .fetch(&quote)
        .unwrap();
    assert_eq!(json(&c), json(&recorded));
    let v = verify(&quote, &c, NOW, &TrustRoot::IntelProduction).unwrap();
    assert_eq!(v.tcb_status, "UpToDate");
    let paths = server.paths();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/tdx/certification/v4/tcb?fmspc=")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/tdx/certification/v4/qe/identity".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/sgx/certification/v4/pckcrl?ca=platform&encoding=der".to_string()),
        "{paths:?}"
    );
}

#[test]
fn pccs_root_crl_forms_and_server_errors() {
    let recorded = collateral("sgx_quote_collateral.json");
    let quote = data("sgx_quote");
    for form in [RootCrlForm::Der, RootCrlForm::Pem] {
        let server = FakePccs::start_with(recorded.clone(), "processor", form, false);
        // A bare origin works like the full v4 URL.
        let url = format!("http://{}", server.addr);
        let c = PccsCollateral::new(&url, None)
            .unwrap()
            .fetch(&quote)
            .unwrap();
        assert_eq!(c.root_ca_crl, recorded.root_ca_crl);
    }
    let server = FakePccs::start_with(recorded, "processor", RootCrlForm::Hex, true);
    let e = PccsCollateral::new(&server.url(), None)
        .unwrap()
        .fetch(&quote)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("/sgx/certification/v4/tcb?fmspc=00A067110000: HTTP 500"),
        "{msg}"
    );
    // A quote without a PCK chain: no request at all.
    let hits = server.hits();
    let e = PccsCollateral::new(&server.url(), None)
        .unwrap()
        .fetch(&[0u8; 700])
        .unwrap_err();
    assert!(matches!(e, PlatformError::CollateralKey(_)), "{e:?}");
    assert_eq!(server.hits(), hits);
}
