//! The client REST API (marblerun-compat §1): axum handlers, JSend responses, and the HTTPS
//! connection loop (optional, unverified client certificates passed on as [`PeerCert`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use cairn_api::rest::{
    error_body, JSend, ManifestGetV1, ManifestGetV2, ManifestSetReqV2, ManifestSetResp, QuoteV1,
    QuoteV2, StatusV1, StatusV2, UpdateLogV2,
};
use cairn_core::{CoordinatorCore, CoreError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::metrics::Metrics;

/// v2 manifest upload: base64 of up to 16 MiB plus JSON framing.
const V2_MANIFEST_LIMIT: usize = (cairn_manifest::MAX_MANIFEST_BYTES / 3 + 1) * 4 + 64 * 1024;
/// v1 manifest upload: raw bytes.
const V1_MANIFEST_LIMIT: usize = cairn_manifest::MAX_MANIFEST_BYTES + 64 * 1024;
/// Every other body.
const SMALL_LIMIT: usize = 64 * 1024;
/// TLS handshake deadline per connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline to receive a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for one request (body read + handling).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The first certificate of the client's TLS chain (DER), if one was presented. Not verified;
/// user authentication compares it byte for byte with the manifest.
#[derive(Debug, Clone)]
pub struct PeerCert(pub Option<Vec<u8>>);

/// Shared handler state.
#[derive(Clone)]
pub struct ApiState {
    /// The Coordinator logic.
    pub core: Arc<CoordinatorCore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Paths served today. Later issues add `/api/v2/secrets`, `/api/v2/update` (POST),
/// `/api/v2/update-manifest`, `/api/v2/update-cancel`, `/api/v2/recover`,
/// `/api/v2/recover/public-key`, `/api/v2/sign-quote` and `/api/v2/monotonic-counter` here;
/// until then they answer 405 like any unknown path, which MarbleRun clients understand.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v2/status", get(v2_status))
        .route("/api/v2/quote", get(v2_quote))
        .route(
            "/api/v2/manifest",
            get(v2_manifest_get)
                .post(v2_manifest_set)
                .layer(DefaultBodyLimit::max(V2_MANIFEST_LIMIT)),
        )
        .route("/api/v2/update", get(v2_update_log))
        .route("/status", get(v1_status))
        .route("/quote", get(v1_quote))
        .route(
            "/manifest",
            get(v1_manifest_get)
                .post(v1_manifest_set)
                .layer(DefaultBodyLimit::max(V1_MANIFEST_LIMIT)),
        )
        .route("/update", get(v1_update_log))
        .route("/recover", post(v1_recover))
        .fallback(not_allowed)
        .method_not_allowed_fallback(not_allowed)
        .layer(DefaultBodyLimit::max(SMALL_LIMIT))
        .with_state(state)
}

/// Path label for metrics (bounded cardinality).
fn path_label(path: &str) -> &'static str {
    match path {
        "/api/v2/status" => "/api/v2/status",
        "/api/v2/quote" => "/api/v2/quote",
        "/api/v2/manifest" => "/api/v2/manifest",
        "/api/v2/update" => "/api/v2/update",
        "/status" => "/status",
        "/quote" => "/quote",
        "/manifest" => "/manifest",
        "/update" => "/update",
        "/recover" => "/recover",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

fn success<T: Serialize>(data: T) -> Response<Body> {
    json_response(StatusCode::OK, &JSend::success(data))
}

fn success_null() -> Response<Body> {
    json_response(StatusCode::OK, &JSend::<()>::success_null())
}

fn fail(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &JSend::<()>::fail(None, message))
}

/// Go `http.Error` style: plain text content type, JSON body plus newline.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = (status, error_body(message)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding response: {e}"),
        ),
    }
}

async fn not_allowed() -> Response<Body> {
    error(StatusCode::METHOD_NOT_ALLOWED, "")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(CoreError::Internal(format!("worker task failed: {e}"))))
}

// ---------------------------------------------------------------------------------------------
// v2

async fn v2_status(State(s): State<ApiState>) -> Response<Body> {
    let (code, message) = s.core.status();
    s.metrics.set_state(code);
    success(StatusV2 {
        code,
        message: message.into(),
    })
}

async fn v2_quote(
    State(s): State<ApiState>,
    query: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = query else {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid query: malformed query string",
        );
    };
    let nonce = match q.get("nonce").filter(|n| !n.is_empty()) {
        None => None,
        Some(n) => match base64::engine::general_purpose::URL_SAFE.decode(n) {
            Ok(b) => Some(b),
            Err(e) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    &format!(
                    "invalid query: bad nonce format: {e} (expected URL-safe base64 with padding)"
                ),
                )
            }
        },
    };
    let core = s.core.clone();
    match blocking(move || core.quote(nonce.as_deref())).await {
        Ok(q) => success(QuoteV2 {
            cert: q.cert_chain_pem,
            quote: Some(q.quote),
        }),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn v2_manifest_get(State(s): State<ApiState>) -> Response<Body> {
    match s.core.manifest() {
        Ok(m) => success(ManifestGetV2 {
            manifest_signature_root_ecdsa: Some(m.signature),
            manifest_fingerprint: m.fingerprint_hex,
            manifest: Some(m.raw),
        }),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn v2_manifest_set(State(s): State<ApiState>, body: Bytes) -> Response<Body> {
    let req: ManifestSetReqV2 = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                &format!("invalid request body: {e}"),
            )
        }
    };
    let core = s.core.clone();
    match blocking(move || core.set_manifest(&req.manifest)).await {
        Ok(r) => {
            s.metrics.set_state(s.core.phase().code());
            let secrets = (!r.recovery_secrets.is_empty()).then_some(r.recovery_secrets);
            success(ManifestSetResp {
                RecoverySecrets: secrets,
            })
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn v2_update_log(State(s): State<ApiState>) -> Response<Body> {
    match s.core.update_log() {
        Ok(lines) => success(UpdateLogV2 { update_log: lines }),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// v1 (legacy)

fn deprecated(path: &str) {
    tracing::info!(
        path,
        "deprecated v1 API used; consider using /api/v2{path} instead"
    );
}

async fn v1_status(State(s): State<ApiState>) -> Response<Body> {
    deprecated("/status");
    let (code, message) = s.core.status();
    success(StatusV1 {
        StatusCode: code,
        StatusMessage: message.into(),
    })
}

async fn v1_quote(State(s): State<ApiState>) -> Response<Body> {
    deprecated("/quote");
    let core = s.core.clone();
    match blocking(move || core.quote(None)).await {
        Ok(q) => success(QuoteV1 {
            Cert: q.cert_chain_pem,
            Quote: Some(q.quote),
        }),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn v1_manifest_get(State(s): State<ApiState>) -> Response<Body> {
    deprecated("/manifest");
    match s.core.manifest() {
        Ok(m) => success(ManifestGetV1 {
            ManifestSignatureRootECDSA: Some(m.signature),
            ManifestSignature: m.fingerprint_hex,
            Manifest: Some(m.raw),
        }),
        Err(_) => success(ManifestGetV1 {
            ManifestSignatureRootECDSA: None,
            ManifestSignature: String::new(),
            Manifest: None,
        }),
    }
}

async fn v1_manifest_set(State(s): State<ApiState>, body: Bytes) -> Response<Body> {
    deprecated("/manifest");
    let core = s.core.clone();
    let raw = body.to_vec();
    match blocking(move || core.set_manifest(&raw)).await {
        Ok(r) if r.recovery_secrets.is_empty() => success_null(),
        Ok(r) => success(ManifestSetResp {
            RecoverySecrets: Some(r.recovery_secrets),
        }),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn v1_update_log(State(s): State<ApiState>) -> Response<Body> {
    deprecated("/update");
    match s.core.update_log() {
        Ok(lines) => {
            let mut text = lines.join("\n");
            text.push('\n');
            success(text)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn v1_recover() -> Response<Body> {
    error(
        StatusCode::GONE,
        "Recovering the Coordinator using the /recover API endpoint has been disabled. Use the /api/v2/recover endpoint instead.",
    )
}

// ---------------------------------------------------------------------------------------------
// Connection loop

/// Accepts TLS connections until `shutdown` flips, serving each on its own task (a slow client
/// only holds its own task; handshake and header reads have deadlines).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let app = app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    ));
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "client API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let metrics = metrics.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "client API TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "client API TLS handshake timed out");
                    return;
                }
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerCert(peer.clone()));
                let label = path_label(req.uri().path());
                let app = app.clone();
                let metrics = metrics.clone();
                async move {
                    let resp = match app.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    metrics.request(label, resp.status().as_u16());
                    Ok::<_, Infallible>(resp)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)));
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%remote, error = %e, "client API connection ended with an error");
                    }
                }
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
