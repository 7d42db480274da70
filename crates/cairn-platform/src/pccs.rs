//! Collateral from a PCCS or Intel's PCS over HTTP(S), with an on-disk cache.
//!
//! Endpoints (PCS API v4; a PCCS serves the same paths):
//! `{base}/{sgx|tdx}/certification/v4/tcb?fmspc=FMSPC`, `{base}/{sgx|tdx}/certification/v4/qe/identity`,
//! `{base}/sgx/certification/v4/pckcrl?ca=processor|platform&encoding=der` and
//! `{base}/sgx/certification/v4/rootcacrl`. Issuer chains arrive as URL-encoded PEM in response
//! headers. Nothing fetched here is trusted: dcap-qvl verifies every item against the trust root,
//! so the network and the cache can only make verification fail, never succeed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::collateral::CollateralSource;
use crate::{fsutil, Collateral, PlatformError};

/// Intel's Provisioning Certification Service (API v4), the default collateral source.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com/sgx/certification/v4/";

/// Default bound on one collateral fetch (connect and the whole exchange).
pub const DEFAULT_PCCS_TIMEOUT: Duration = Duration::from_secs(10);

/// Default age after which a cached entry is refetched even though it is still valid.
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A clock returning Unix seconds (injectable for tests).
pub type UnixClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Largest response body accepted (TCB Info and CRLs are a few KiB).
const MAX_BODY: usize = 8 << 20;
/// Version of the cache file layout.
const CACHE_FORMAT: u32 = 1;

/// Fetches TCB Info, QE Identity and the two CRLs for a quote's TEE, FMSPC and PCK CA from a
/// PCCS or the Intel PCS, caching them on disk.
///
/// A cached entry is used without contacting the server while it is younger than `max_age` and
/// before the earliest `nextUpdate` of its TCB Info, QE Identity and CRLs. Otherwise it is
/// refetched; if that fails and the cached entry has not reached its `nextUpdate`, the cached
/// entry is used (with a warning). Errors name the URL that failed.
#[derive(Clone)]
pub struct PccsCollateral {
    url: String,
    base: String,
    cache_dir: Option<PathBuf>,
    timeout: Duration,
    connect_timeout: Duration,
    max_age: Duration,
    tls: rustls::ClientConfig,
    clock: UnixClock,
}

impl fmt::Debug for PccsCollateral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PccsCollateral")
            .field("url", &self.url)
            .field("cache_dir", &self.cache_dir)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl PccsCollateral {
    /// A source for `url` (e.g. [`INTEL_PCS_URL`] or `https://pccs.local:8081/sgx/certification/v4/`;
    /// a bare origin works too), caching in `cache_dir` when given. HTTPS uses the Mozilla roots
    /// (webpki-roots) and the aws-lc-rs provider; add a private PCCS CA with
    /// [`with_extra_roots`](Self::with_extra_roots).
    pub fn new(url: &str, cache_dir: Option<PathBuf>) -> Result<Self, PlatformError> {
        let base = normalize_base(url)?;
        let tls = tls_config(&[])?;
        Ok(PccsCollateral {
            url: url.to_string(),
            base,
            cache_dir,
            timeout: DEFAULT_PCCS_TIMEOUT,
            connect_timeout: DEFAULT_PCCS_TIMEOUT,
            max_age: DEFAULT_CACHE_MAX_AGE,
            tls,
            clock: Arc::new(system_now),
        })
    }

    /// Bounds a whole fetch (all requests together); also caps the connect timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bounds establishing one connection (TCP and TLS).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Age after which a cached, still valid entry is refetched (`Duration::ZERO`: always try).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Replaces the clock used for cache decisions.
    pub fn with_clock(mut self, clock: UnixClock) -> Self {
        self.clock = clock;
        self
    }

    /// Also trusts these CA certificates (DER) for HTTPS, e.g. a PCCS's self-signed certificate.
    pub fn with_extra_roots(mut self, roots_der: &[Vec<u8>]) -> Result<Self, PlatformError> {
        self.tls = tls_config(roots_der)?;
        Ok(self)
    }

    /// The URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cache directory, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// Collateral for `raw_quote` (raw or OE-wrapped): cached, fetched, or an error naming the URL.
    pub fn fetch(&self, raw_quote: &[u8]) -> Result<Collateral, PlatformError> {
        let key = CollateralKey::from_quote(raw_quote)?;
        let now = (self.clock)();
        let cached = self.load_cached(&key);
        if let Some(entry) = &cached {
            if entry.is_fresh(now, self.max_age) {
                tracing::debug!(key = %key, "collateral cache hit");
                return Ok(entry.collateral.clone());
            }
        }
        match self.fetch_remote(&key) {
            Ok(collateral) => {
                self.store_cached(&key, now, &collateral);
                Ok(collateral)
            }
            Err(e) => match cached {
                Some(entry) if entry.is_valid(now) => {
                    tracing::warn!(
                        key = %key,
                        error = %e,
                        "collateral fetch failed; using the cached entry, valid until {}",
                        entry.valid_until
                    );
                    Ok(entry.collateral)
                }
                _ => Err(e),
            },
        }
    }

    /// The URLs fetched for `key` (pckcrl, tcb, qe identity, rootcacrl).
    fn endpoints(&self, key: &CollateralKey) -> Endpoints {
        let tee = key.tee.path();
        let b = &self.base;
        Endpoints {
            pck_crl: format!("{b}/sgx/certification/v4/pckcrl?ca={}&encoding=der", key.ca),
            tcb: format!("{b}/{tee}/certification/v4/tcb?fmspc={}", key.fmspc),
            qe_identity: format!("{b}/{tee}/certification/v4/qe/identity"),
            root_ca_crl: format!("{b}/sgx/certification/v4/rootcacrl"),
        }
    }

    /// Runs the async fetch on a private current-thread runtime on its own thread, so this works
    /// from plain sync code and from inside another tokio runtime alike.
    fn fetch_remote(&self, key: &CollateralKey) -> Result<Collateral, PlatformError> {
        let endpoints = self.endpoints(key);
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("cairn-pccs".into())
                .spawn_scoped(s, || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| self.err(&self.url, format!("cannot start runtime: {e}")))?;
                    rt.block_on(async {
                        match tokio::time::timeout(self.timeout, self.fetch_async(&endpoints)).await
                        {
                            Ok(r) => r,
                            Err(_) => Err(self.err(
                                &self.url,
                                format!(
                                    "no complete answer within {} s (timed out)",
                                    self.timeout.as_secs_f32()
                                ),
                            )),
                        }
                    })
                })
                .map_err(|e| self.err(&self.url, format!("cannot start fetch thread: {e}")))?;
            handle
                .join()
                .unwrap_or_else(|_| Err(self.err(&self.url, "fetch thread panicked".into())))
        })
    }

    async fn fetch_async(&self, ep: &Endpoints) -> Result<Collateral, PlatformError> {
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(self.tls.clone())
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .timeout(self.timeout)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")));
        if is_loopback_base(&self.base) {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| self.err(&self.url, format!("cannot build HTTP client: {e}")))?;

        let (pck, tcb, qe, root) = tokio::join!(
            get(&client, &ep.pck_crl),
            get(&client, &ep.tcb),
            get(&client, &ep.qe_identity),
            get(&client, &ep.root_ca_crl),
        );
        let pck = pck.map_err(|e| self.fetch_err(&ep.pck_crl, e))?;
        let tcb = tcb.map_err(|e| self.fetch_err(&ep.tcb, e))?;
        let qe = qe.map_err(|e| self.fetch_err(&ep.qe_identity, e))?;

        let pck_crl_issuer_chain = header_chain(&pck, &["SGX-PCK-CRL-Issuer-Chain"])
            .map_err(|r| self.err(&ep.pck_crl, r))?;
        let pck_crl = decode_crl(&pck.body).map_err(|r| self.err(&ep.pck_crl, r))?;

        let tcb_info_issuer_chain = header_chain(
            &tcb,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )
        .map_err(|r| self.err(&ep.tcb, r))?;
        let (tcb_info, tcb_info_signature) =
            signed_json(&tcb.body, "tcbInfo").map_err(|r| self.err(&ep.tcb, r))?;

        let qe_identity_issuer_chain = header_chain(
            &qe,
            &[
                "SGX-Enclave-Identity-Issuer-Chain",
                "Enclave-Identity-Issuer-Chain",
            ],
        )
        .map_err(|r| self.err(&ep.qe_identity, r))?;
        let (qe_identity, qe_identity_signature) =
            signed_json(&qe.body, "enclaveIdentity").map_err(|r| self.err(&ep.qe_identity, r))?;

        let root_ca_crl = match root {
            Ok(resp) => decode_crl(&resp.body).map_err(|r| self.err(&ep.root_ca_crl, r))?,
            // A server without the rootcacrl endpoint (the PCS): use the root's CRL
            // distribution point instead.
            Err(FetchError::Status(status)) => {
                let url = root_crl_distribution_point(&qe_identity_issuer_chain).ok_or_else(|| {
                    self.err(
                        &ep.root_ca_crl,
                        format!("HTTP {status}, and the root certificate names no CRL distribution point"),
                    )
                })?;
                let resp = get(&client, &url)
                    .await
                    .map_err(|e| self.fetch_err(&url, e))?;
                decode_crl(&resp.body).map_err(|r| self.err(&url, r))?
            }
            Err(e) => return Err(self.fetch_err(&ep.root_ca_crl, e)),
        };

        Ok(Collateral {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }

    fn err(&self, url: &str, reason: String) -> PlatformError {
        PlatformError::Pccs {
            url: url.to_string(),
            reason,
        }
    }

    fn fetch_err(&self, url: &str, e: FetchError) -> PlatformError {
        let reason = match e {
            FetchError::Status(s) => format!("HTTP {s}"),
            FetchError::Transport(r) => r,
        };
        self.err(url, reason)
    }

    fn cache_path(&self, key: &CollateralKey) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}-{}.json", key.tee.path(), key.fmspc, key.ca)))
    }

    /// A readable, well-formed cache entry; anything else is a miss (logged).
    fn load_cached(&self, key: &CollateralKey) -> Option<CacheEntry> {
        let path = self.cache_path(key)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "collateral cache unreadable");
                return None;
            }
        };
        let file: CacheFile = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "collateral cache corrupt; ignoring it");
                return None;
            }
        };
        if file.format != CACHE_FORMAT {
            return None;
        }
        let valid_until = valid_until(&file.collateral)?;
        Some(CacheEntry {
            fetched_at: file.fetched_at,
            valid_until,
            collateral: file.collateral,
        })
    }

    /// Best effort: a cache that cannot be written only costs a refetch next time.
    fn store_cached(&self, key: &CollateralKey, now: u64, collateral: &Collateral) {
        let (Some(dir), Some(path)) = (self.cache_dir.as_ref(), self.cache_path(key)) else {
            return;
        };
        let file = CacheFileRef {
            format: CACHE_FORMAT,
            fetched_at: now,
            source: &self.url,
            collateral,
        };
        let res = serde_json::to_vec_pretty(&file)
            .map_err(|e| PlatformError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })
            .and_then(|bytes| {
                fsutil::create_private_dir(dir)?;
                fsutil::write_atomic(&path, &bytes)
            });
        if let Err(e) = res {
            tracing::warn!(error = %e, "cannot write the collateral cache");
        }
    }
}

impl CollateralSource for PccsCollateral {
    fn collateral_for(&self, raw_quote: &[u8]) -> Result<Collateral, PlatformError> {
        self.fetch(raw_quote)
    }
}

/// What selects a collateral set: TEE, FMSPC (upper-case hex) and PCK CA.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CollateralKey {
    tee: TeeKind,
    fmspc: String,
    ca: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeeKind {
    Sgx,
    Tdx,
}

impl TeeKind {
    fn path(self) -> &'static str {
        match self {
            TeeKind::Sgx => "sgx",
            TeeKind::Tdx => "tdx",
        }
    }
}

impl fmt::Display for CollateralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tee.path(), self.fmspc, self.ca)
    }
}

impl CollateralKey {
    fn from_quote(evidence: &[u8]) -> Result<Self, PlatformError> {
        let bad = |m: String| PlatformError::CollateralKey(m);
        let raw = cairn_attest::oe::unwrap(evidence).map_err(|e| bad(e.to_string()))?;
        let quote = dcap_qvl::quote::Quote::parse(raw).map_err(|e| bad(format!("{e:#}")))?;
        let tee = if quote.header.is_sgx() {
            TeeKind::Sgx
        } else {
            TeeKind::Tdx
        };
        let fmspc = dcap_qvl::intel::quote_fmspc(&quote)
            .map_err(|e| bad(format!("no FMSPC in the quote's PCK certificate: {e:#}")))?;
        let ca = dcap_qvl::intel::quote_ca(&quote)
            .map_err(|e| bad(format!("no PCK CA in the quote's PCK certificate: {e:#}")))?;
        Ok(CollateralKey {
            tee,
            fmspc: hex::encode_upper(fmspc),
            ca: ca.as_id_str(),
        })
    }
}

struct Endpoints {
    pck_crl: String,
    tcb: String,
    qe_identity: String,
    root_ca_crl: String,
}

#[derive(Deserialize)]
struct CacheFile {
    format: u32,
    fetched_at: u64,
    collateral: Collateral,
}

#[derive(Serialize)]
struct CacheFileRef<'a> {
    format: u32,
    fetched_at: u64,
    source: &'a str,
    collateral: &'a Collateral,
}

struct CacheEntry {
    fetched_at: u64,
    valid_until: u64,
    collateral: Collateral,
}

impl CacheEntry {
    fn is_valid(&self, now: u64) -> bool {
        now < self.valid_until
    }

    fn is_fresh(&self, now: u64, max_age: Duration) -> bool {
        self.is_valid(now) && now < self.fetched_at.saturating_add(max_age.as_secs())
    }
}

/// The earliest `nextUpdate` of TCB Info, QE Identity, PCK CRL and root CA CRL (Unix seconds);
/// `None` when one is missing or unparsable.
fn valid_until(c: &Collateral) -> Option<u64> {
    let json_next = |text: &str| -> Option<i64> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let s = v.get("nextUpdate")?.as_str()?;
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        Some(t.unix_timestamp())
    };
    let times = [
        json_next(&c.tcb_info)?,
        json_next(&c.qe_identity)?,
        crl_next_update(&c.pck_crl)?,
        crl_next_update(&c.root_ca_crl)?,
    ];
    times.into_iter().min().and_then(|t| u64::try_from(t).ok())
}

fn crl_next_update(der: &[u8]) -> Option<i64> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    crl.next_update().map(|t| t.timestamp())
}

/// One HTTP answer (2xx only).
struct Response {
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

enum FetchError {
    /// The server answered with a non-2xx status.
    Status(reqwest::StatusCode),
    /// No usable answer (connect, TLS, timeout, body).
    Transport(String),
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Response, FetchError> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| FetchError::Transport(describe(&e)))?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status()));
    }
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Transport(describe(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::Transport(format!(
                "response body larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response { headers, body })
}

/// A short cause: "connection refused", "timed out", or the innermost error's text.
fn describe(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return "connection refused".into();
            }
        }
        innermost = s;
        src = s.source();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    let what = if e.is_connect() {
        "connect failed: "
    } else {
        ""
    };
    format!("{what}{innermost}")
}

/// The first of `names` present, URL-decoded; it must be a PEM certificate chain.
fn header_chain(resp: &Response, names: &[&str]) -> Result<String, String> {
    let raw = names
        .iter()
        .find_map(|n| resp.headers.get(*n))
        .ok_or_else(|| format!("response lacks the {} header", names.join(" / ")))?;
    let raw = raw
        .to_str()
        .map_err(|_| format!("header {} is not ASCII", names[0]))?;
    let pem = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| format!("header {} is not URL-encoded UTF-8", names[0]))?
        .into_owned();
    let certs = pem::parse_many(pem.as_bytes())
        .map_err(|e| format!("header {} is not a PEM chain: {e}", names[0]))?;
    if certs.is_empty() || certs.iter().any(|c| c.tag() != "CERTIFICATE") {
        return Err(format!(
            "header {} holds no PEM certificate chain",
            names[0]
        ));
    }
    Ok(pem)
}

/// `{"<field>": {...}, "signature": "<hex r||s>"}` → (exact text of the object, signature bytes).
fn signed_json(body: &[u8], field: &str) -> Result<(String, Vec<u8>), String> {
    let map: std::collections::HashMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("body is not a JSON object: {e}"))?;
    let obj = map
        .get(field)
        .ok_or_else(|| format!("body lacks \"{field}\""))?;
    if !obj.get().starts_with('{') {
        return Err(format!("\"{field}\" is not an object"));
    }
    let sig_hex: String = map
        .get("signature")
        .ok_or_else(|| "body lacks \"signature\"".to_string())
        .and_then(|v| {
            serde_json::from_str(v.get()).map_err(|_| "\"signature\" is not a string".to_string())
        })?;
    let sig = hex::decode(&sig_hex).map_err(|_| "\"signature\" is not hex".to_string())?;
    if sig.len() != 64 {
        return Err(format!(
            "\"signature\" is {} bytes; an ECDSA P-256 r||s signature has 64",
            sig.len()
        ));
    }
    // The signature covers these exact bytes, so the raw text is kept, never re-serialized.
    Ok((obj.get().to_string(), sig))
}

/// A CRL in any of the forms servers use (DER, PEM, hex of DER), returned as checked DER.
fn decode_crl(body: &[u8]) -> Result<Vec<u8>, String> {
    let trimmed = body.trim_ascii();
    let der = if trimmed.starts_with(b"-----BEGIN") {
        let p = pem::parse(trimmed).map_err(|e| format!("CRL is not valid PEM: {e}"))?;
        p.into_contents()
    } else if trimmed.first() == Some(&0x30) {
        trimmed.to_vec()
    } else if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_hexdigit) {
        hex::decode(trimmed).map_err(|e| format!("CRL is not valid hex: {e}"))?
    } else {
        return Err("body is not a CRL (neither DER, PEM nor hex)".into());
    };
    x509_parser::parse_x509_crl(&der).map_err(|e| format!("CRL does not parse: {e}"))?;
    Ok(der)
}

/// The first URI of the CRL distribution points of the last certificate of `chain_pem`.
fn root_crl_distribution_point(chain_pem: &str) -> Option<String> {
    let certs = pem::parse_many(chain_pem.as_bytes()).ok()?;
    let root = certs.last()?;
    let (_, cert) = x509_parser::parse_x509_certificate(root.contents()).ok()?;
    cert.extensions().iter().find_map(|ext| {
        let x509_parser::extensions::ParsedExtension::CRLDistributionPoints(points) =
            ext.parsed_extension()
        else {
            return None;
        };
        points
            .points
            .iter()
            .find_map(|p| match &p.distribution_point {
                Some(x509_parser::extensions::DistributionPointName::FullName(names)) => {
                    names.iter().find_map(|n| match n {
                        x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                }
                _ => None,
            })
    })
}

/// `https://host[:port][/prefix]` without a trailing `/` and without `/{sgx,tdx}/certification/v4`.
fn normalize_base(url: &str) -> Result<String, PlatformError> {
    let bad = |reason: &str| PlatformError::Pccs {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| bad(&format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// URLs are supported"));
    }
    if parsed.host_str().is_none() {
        return Err(bad("URL has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("URL must not have a query or fragment"));
    }
    let mut s = parsed.as_str().trim_end_matches('/').to_string();
    for suffix in ["/sgx/certification/v4", "/tdx/certification/v4"] {
        if let Some(stripped) = s.strip_suffix(suffix) {
            s = stripped.to_string();
            break;
        }
    }
    Ok(s)
}

fn is_loopback_base(base: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(base) else {
        return false;
    };
    let host = u.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// rustls client config with the aws-lc-rs provider, Mozilla roots and `extra` (DER) roots.
fn tls_config(extra: &[Vec<u8>]) -> Result<rustls::ClientConfig, PlatformError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| PlatformError::Pccs {
                url: String::new(),
                reason: format!("extra root certificate rejected: {e}"),
            })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PlatformError::Pccs {
            url: String::new(),
            reason: format!("TLS configuration: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Collateral {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/attestation/dcap-qvl/sgx_quote_collateral.json"
        );
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn base_url_forms() {
        let n = |u: &str| normalize_base(u).unwrap();
        assert_eq!(n(INTEL_PCS_URL), "https://api.trustedservices.intel.com");
        assert_eq!(
            n("https://pccs.local:8081/sgx/certification/v4"),
            "https://pccs.local:8081"
        );
        assert_eq!(
            n("https://pccs.local:8081/tdx/certification/v4/"),
            "https://pccs.local:8081"
        );
        assert_eq!(n("http://10.0.0.1:8081/"), "http://10.0.0.1:8081");
        assert_eq!(n("https://proxy/pccs/"), "https://proxy/pccs");
        for bad in [
            "",
            "pccs.local",
            "ftp://x/",
            "https://x/?a=b",
            "file:///tmp",
        ] {
            let e = normalize_base(bad).unwrap_err();
            assert!(e.to_string().starts_with(&format!("PCCS {bad}:")), "{e}");
        }
        assert!(is_loopback_base("http://127.0.0.1:8"));
        assert!(is_loopback_base("http://[::1]:8"));
        assert!(is_loopback_base("https://LOCALHOST"));
        assert!(!is_loopback_base("https://api.trustedservices.intel.com"));
    }

    #[test]
    fn endpoint_paths_by_tee() {
        let p = PccsCollateral::new("https://h/sgx/certification/v4/", None).unwrap();
        let mut key = CollateralKey {
            tee: TeeKind::Sgx,
            fmspc: "00A067110000".into(),
            ca: "platform",
        };
        let e = p.endpoints(&key);
        assert_eq!(
            e.pck_crl,
            "https://h/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
        );
        assert_eq!(
            e.tcb,
            "https://h/sgx/certification/v4/tcb?fmspc=00A067110000"
        );
        assert_eq!(e.qe_identity, "https://h/sgx/certification/v4/qe/identity");
        assert_eq!(e.root_ca_crl, "https://h/sgx/certification/v4/rootcacrl");
        key.tee = TeeKind::Tdx;
        let e = p.endpoints(&key);
        assert_eq!(
            e.tcb,
            "https://h/tdx/certification/v4/tcb?fmspc=00A067110000"
        );
        assert_eq!(e.qe_identity, "https://h/tdx/certification/v4/qe/identity");
        assert!(e.pck_crl.starts_with("https://h/sgx/"));
        assert!(e.root_ca_crl.starts_with("https://h/sgx/"));
    }

    #[test]
    fn crl_in_every_form() {
        let der = sample().root_ca_crl;
        let pem_text = pem::encode(&pem::Pem::new("X509 CRL", der.clone()));
        assert_eq!(decode_crl(&der).unwrap(), der);
        assert_eq!(decode_crl(hex::encode(&der).as_bytes()).unwrap(), der);
        assert_eq!(
            decode_crl(format!("{}\n", hex::encode_upper(&der)).as_bytes()).unwrap(),
            der
        );
        assert_eq!(decode_crl(pem_text.as_bytes()).unwrap(), der);
        assert!(decode_crl(b"").is_err());
        assert!(decode_crl(b"<html>nope</html>").is_err());
        assert!(decode_crl(b"3082").unwrap_err().contains("does not parse"));
    }

    #[test]
    fn signed_json_keeps_exact_text() {
        // Key order and spacing inside the object must survive byte for byte.
        let body = br#"{ "signature":"ABCD", "tcbInfo":{"z":1, "a":[ 2 ,3],"s":"\/x"} }"#;
        let e = signed_json(body, "tcbInfo").unwrap_err();
        assert!(e.contains("2 bytes"), "{e}");
        let sig = "ab".repeat(64);
        let body = format!(r#"{{"tcbInfo":{{"z":1, "a":[ 2 ,3],"s":"\/x"}},"signature":"{sig}"}}"#);
        let (text, s) = signed_json(body.as_bytes(), "tcbInfo").unwrap();
        assert_eq!(text, r#"{"z":1, "a":[ 2 ,3],"s":"\/x"}"#);
        assert_eq!(s, vec![0xab; 64]);
        assert!(signed_json(body.as_bytes(), "enclaveIdentity")
            .unwrap_err()
            .contains("lacks"));
        assert!(signed_json(b"[1]", "tcbInfo").is_err());
        assert!(signed_json(br#"{"tcbInfo":1,"signature":""}"#, "tcbInfo").is_err());
    }

    #[test]
    fn validity_window_is_the_earliest_next_update() {
        let c = sample();
        // QE Identity nextUpdate 2025-07-19T10:01:18Z is earlier than TCB Info's and the CRLs'.
        assert_eq!(valid_until(&c), Some(1_752_919_278));
        let mut broken = c.clone();
        broken.pck_crl = vec![0x30, 0x00];
        assert_eq!(valid_until(&broken), None);
        let e = CacheEntry {
            fetched_at: 100,
            valid_until: 1000,
            collateral: c,
        };
        assert!(e.is_fresh(150, Duration::from_secs(100)));
        assert!(!e.is_fresh(200, Duration::from_secs(100)));
        assert!(e.is_valid(200));
        assert!(!e.is_valid(1000));
    }

    #[test]
    fn root_crl_distribution_point_of_intel_root() {
        let c = sample();
        assert_eq!(
            root_crl_distribution_point(&c.qe_identity_issuer_chain).as_deref(),
            Some("https://certificates.trustedservices.intel.com/IntelSGXRootCA.der")
        );
        assert_eq!(root_crl_distribution_point("junk"), None);
    }

    #[test]
    fn key_from_quote() {
        let q = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/attestation/dcap-qvl/sgx_quote"
        ))
        .unwrap();
        let k = CollateralKey::from_quote(&q).unwrap();
        assert_eq!(k.to_string(), "sgx/00A067110000/processor");
        let e = CollateralKey::from_quote(&q[..100]).unwrap_err();
        assert!(e.to_string().starts_with("cannot select collateral"), "{e}");
    }
}
