//! The client REST API (marblerun-compat §1): axum handlers, JSend responses, and the HTTPS
//! connection loop (optional, unverified client certificates passed on as [`PeerCert`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, RawQuery, State};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use base64::Engine as _;
use cairn_api::rest::{
    error_body, JSend, ManifestGetV1, ManifestGetV2, ManifestSetReqV2, ManifestSetResp, MessageV2,
    MonotonicCounterReqV2, MonotonicCounterRespV2, QuoteV1, QuoteV2, RecoverPublicKeyV2,
    RecoverReqV2, RecoverRespV2, Secret, SecretsGetV2, SecretsSetReqV2, SignQuoteReqV2,
    SignQuoteRespV2, StatusV1, StatusV2, UpdateLogV2, UpdateManifestAckRespV2, UpdateManifestGetV2,
    UpdateRespV2, UserSecret,
};
use cairn_core::{
    CoordinatorCore, CoreError, ErrorKind, SecretInfo, SignQuoteError, UpdateOutcome,
    UserSecretInput,
};
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

/// Recover request body limit (MarbleRun's).
const RECOVER_LIMIT: usize = 20480;

/// Every path of the client API; anything else answers 405, which MarbleRun clients understand.
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
        .route(
            "/api/v2/update",
            get(v2_update_log)
                .post(v2_update)
                .layer(DefaultBodyLimit::max(V2_MANIFEST_LIMIT)),
        )
        .route(
            "/api/v2/update-manifest",
            get(update_manifest_get)
                .post(v2_update_ack)
                .layer(DefaultBodyLimit::max(V2_MANIFEST_LIMIT)),
        )
        .route("/api/v2/update-cancel", post(v2_update_cancel))
        .route("/api/v2/secrets", get(v2_secrets_get).post(v2_secrets_set))
        .route("/api/v2/sign-quote", post(v2_sign_quote))
        .route("/api/v2/monotonic-counter", post(v2_monotonic_counter))
        .route(
            "/api/v2/recover",
            post(v2_recover).layer(DefaultBodyLimit::max(RECOVER_LIMIT)),
        )
        .route("/api/v2/recover/public-key", get(v2_recover_public_key))
        .route("/status", get(v1_status))
        .route("/quote", get(v1_quote))
        .route(
            "/manifest",
            get(v1_manifest_get)
                .post(v1_manifest_set)
                .layer(DefaultBodyLimit::max(V1_MANIFEST_LIMIT)),
        )
        .route(
            "/update",
            get(v1_update_log)
                .post(v1_update)
                .layer(DefaultBodyLimit::max(V1_MANIFEST_LIMIT)),
        )
        .route(
            "/update-manifest",
            get(update_manifest_get)
                .post(v1_update_ack)
                .layer(DefaultBodyLimit::max(V1_MANIFEST_LIMIT)),
        )
        .route("/update-cancel", post(v1_update_cancel))
        .route("/secrets", get(v1_secrets_get).post(v1_secrets_set))
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
        "/api/v2/update-manifest" => "/api/v2/update-manifest",
        "/api/v2/update-cancel" => "/api/v2/update-cancel",
        "/api/v2/secrets" => "/api/v2/secrets",
        "/api/v2/sign-quote" => "/api/v2/sign-quote",
        "/api/v2/monotonic-counter" => "/api/v2/monotonic-counter",
        "/api/v2/recover" => "/api/v2/recover",
        "/api/v2/recover/public-key" => "/api/v2/recover/public-key",
        "/update-manifest" => "/update-manifest",
        "/update-cancel" => "/update-cancel",
        "/secrets" => "/secrets",
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

/// `POST /api/v2/recover[?force=true]`: 400 fail for a bad body or a secret the ephemeral key
/// cannot decrypt, 409 fail when other HA instances serve the shared state and `force` is not
/// `true`, 500 error for everything else (wrong state, refused share), as MarbleRun answers.
async fn v2_recover(
    State(s): State<ApiState>,
    query: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Response<Body> {
    let Ok(Query(q)) = query else {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid query: malformed query string",
        );
    };
    let force = match q.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return fail(
                StatusCode::BAD_REQUEST,
                &format!("invalid query: force must be true or false, got {other:?}"),
            )
        }
    };
    let req: RecoverReqV2 = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    let core = s.core.clone();
    let r = blocking(move || {
        core.recover_with(&req.recovery_secret, &req.recovery_secret_signature, force)
    })
    .await;
    s.metrics.set_state(s.core.phase().code());
    match r {
        Ok(o) => success(RecoverRespV2 {
            remaining: o.remaining,
            message: o.message(),
        }),
        Err(e) if e.kind() == ErrorKind::InvalidArgument => {
            fail(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) if e.kind() == ErrorKind::PeersServing => fail(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /api/v2/recover/public-key`: the ephemeral RSA key (state 1 only).
async fn v2_recover_public_key(State(s): State<ApiState>) -> Response<Body> {
    let core = s.core.clone();
    match blocking(move || core.recovery_public_key()).await {
        Ok(der) => success(RecoverPublicKeyV2 {
            algorithm: "RSA".into(),
            ephemeral_public_key: der,
        }),
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
// Users, secrets, updates, feature gates

type Peer = Option<Extension<PeerCert>>;

fn peer_der(p: &Peer) -> Option<Vec<u8>> {
    p.as_ref().and_then(|Extension(PeerCert(c))| c.clone())
}

/// v2 mapping: 401 fail for authentication, 403 error for a feature gate, 500 error otherwise
/// (MarbleRun answers refused permissions and invalid input with 500 errors).
fn v2_core_error(e: &CoreError) -> Response<Body> {
    match e.kind() {
        ErrorKind::Unauthenticated => fail(StatusCode::UNAUTHORIZED, &e.to_string()),
        ErrorKind::FeatureDisabled => error(StatusCode::FORBIDDEN, &e.to_string()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// v1 mapping: 401 for authentication, 400 otherwise (all errors).
fn v1_core_error(e: &CoreError) -> Response<Body> {
    match e.kind() {
        ErrorKind::Unauthenticated => error(StatusCode::UNAUTHORIZED, &e.to_string()),
        _ => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// update-manifest / update-cancel: 404 when nothing is pending.
fn pending_error(e: &CoreError, v2: bool) -> Response<Body> {
    match e.kind() {
        ErrorKind::NotFound => error(StatusCode::NOT_FOUND, &e.to_string()),
        ErrorKind::Unauthenticated if v2 => fail(StatusCode::UNAUTHORIZED, &e.to_string()),
        ErrorKind::Unauthenticated => error(StatusCode::UNAUTHORIZED, &e.to_string()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn bad_body(e: impl std::fmt::Display) -> Response<Body> {
    fail(
        StatusCode::BAD_REQUEST,
        &format!("invalid request body: {e}"),
    )
}

fn to_secret(i: SecretInfo) -> Secret {
    Secret {
        Type: i.kind,
        Size: i.size,
        Shared: i.shared,
        UserDefined: i.user_defined,
        Cert: i.cert,
        ValidFor: i.valid_for,
        Private: i.private.map(|p| p.to_vec()),
        Public: i.public.map(|p| p.to_vec()),
    }
}

fn to_input(u: UserSecret) -> UserSecretInput {
    UserSecretInput {
        cert: u.Cert,
        private: u.Private.map(cairn_crypto::Zeroizing::new),
        key: u.Key.map(cairn_crypto::Zeroizing::new),
    }
}

/// The `s` values of a query string. Errors carry MarbleRun's 400 messages.
fn secret_names(query: Option<&str>) -> Result<Vec<String>, &'static str> {
    let mut names = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k).as_deref() != Some("s") {
            continue;
        }
        match percent_decode(v) {
            Some(v) if !v.is_empty() => names.push(v),
            _ => return Err("malformed query string: empty query parameter"),
        }
    }
    if names.is_empty() {
        return Err("invalid query: endpoint requires at least one query parameter");
    }
    Ok(names)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hexs = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hexs, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

async fn read_secrets(
    s: &ApiState,
    peer: &Peer,
    query: Option<String>,
) -> Result<BTreeMap<String, Secret>, Response<Body>> {
    let names = secret_names(query.as_deref()).map_err(|m| fail(StatusCode::BAD_REQUEST, m))?;
    let core = s.core.clone();
    let peer = peer_der(peer);
    let got = blocking(move || core.get_secrets(peer.as_deref(), &names)).await;
    got.map(|m| m.into_iter().map(|(k, v)| (k, to_secret(v))).collect())
        .map_err(|e| v2_core_error(&e))
}

async fn v2_secrets_get(
    State(s): State<ApiState>,
    peer: Peer,
    RawQuery(query): RawQuery,
) -> Response<Body> {
    match read_secrets(&s, &peer, query).await {
        Ok(secrets) => success(SecretsGetV2 { secrets }),
        Err(r) => r,
    }
}

async fn v2_secrets_set(State(s): State<ApiState>, peer: Peer, body: Bytes) -> Response<Body> {
    let req: SecretsSetReqV2 = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    let core = s.core.clone();
    let peer = peer_der(&peer);
    let uploads = req
        .secrets
        .into_iter()
        .map(|(k, v)| (k, to_input(v)))
        .collect();
    match blocking(move || core.set_secrets(peer.as_deref(), uploads)).await {
        Ok(()) => success_null(),
        Err(e) => v2_core_error(&e),
    }
}

async fn v2_update(State(s): State<ApiState>, peer: Peer, body: Bytes) -> Response<Body> {
    let req: ManifestSetReqV2 = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    let core = s.core.clone();
    let peer = peer_der(&peer);
    match blocking(move || core.update_manifest(peer.as_deref(), &req.manifest)).await {
        Ok(o) => success(UpdateRespV2 {
            missing_acknowledgments: o.missing_acknowledgments,
            missing_users: (!o.missing_users.is_empty()).then_some(o.missing_users),
            recovery_secrets: (!o.recovery_secrets.is_empty()).then_some(o.recovery_secrets),
        }),
        Err(e) => v2_core_error(&e),
    }
}

async fn update_manifest_get(State(s): State<ApiState>) -> Response<Body> {
    match s.core.pending_update() {
        Ok(p) => success(UpdateManifestGetV2 {
            manifest: p.manifest_raw,
            message: cairn_core::missing_message(p.missing_acknowledgments),
            missing_users: p.missing_users,
        }),
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

async fn acknowledge(s: &ApiState, peer: &Peer, raw: Vec<u8>) -> Result<UpdateOutcome, CoreError> {
    let core = s.core.clone();
    let peer = peer_der(peer);
    blocking(move || core.acknowledge_update(peer.as_deref(), &raw)).await
}

async fn v2_update_ack(State(s): State<ApiState>, peer: Peer, body: Bytes) -> Response<Body> {
    let req: ManifestSetReqV2 = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    match acknowledge(&s, &peer, req.manifest).await {
        Ok(o) => success(UpdateManifestAckRespV2 {
            message: o.ack_message(),
            missing_acknowledgments: o.missing_acknowledgments,
            recovery_secrets: (!o.recovery_secrets.is_empty())
                .then_some(o.recovery_secrets.clone()),
            missing_users: o.missing_users,
        }),
        Err(e) => pending_error(&e, true),
    }
}

async fn v2_update_cancel(State(s): State<ApiState>, peer: Peer) -> Response<Body> {
    let core = s.core.clone();
    let peer = peer_der(&peer);
    match blocking(move || core.cancel_update(peer.as_deref())).await {
        Ok(()) => success(MessageV2 {
            message: "Update successfully cancelled".into(),
        }),
        Err(e) => pending_error(&e, true),
    }
}

async fn v2_sign_quote(State(s): State<ApiState>, body: Bytes) -> Response<Body> {
    if !s
        .core
        .feature_enabled(cairn_manifest::FeatureGate::SignQuoteEndpoint)
    {
        return error(StatusCode::FORBIDDEN, cairn_core::SIGN_QUOTE_DISABLED);
    }
    let req: SignQuoteReqV2 = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &JSend::fail(
                    Some(serde_json::json!({"sgxQuote": "failed to parse JSON data"})),
                    format!("bad request: {e}"),
                ),
            )
        }
    };
    let core = s.core.clone();
    let r = tokio::task::spawn_blocking(move || core.sign_quote(&req.sgx_quote))
        .await
        .unwrap_or_else(|e| {
            Err(SignQuoteError::Core(CoreError::Internal(format!(
                "worker task failed: {e}"
            ))))
        });
    match r {
        Ok(q) => success(SignQuoteRespV2 {
            tcb_status: q.tcb_status,
            verification_signature: q.signature,
        }),
        Err(SignQuoteError::Verification(reason)) => json_response(
            StatusCode::BAD_REQUEST,
            &JSend::fail(
                Some(serde_json::json!({
                    "sgxQuote": format!("quote verification failed: {reason}")
                })),
                "quote verification failed",
            ),
        ),
        Err(SignQuoteError::Core(e)) => v2_core_error(&e),
    }
}

async fn v2_monotonic_counter(
    State(s): State<ApiState>,
    peer: Peer,
    body: Bytes,
) -> Response<Body> {
    if !s
        .core
        .feature_enabled(cairn_manifest::FeatureGate::MonotonicCounter)
    {
        return error(StatusCode::FORBIDDEN, cairn_core::COUNTER_DISABLED);
    }
    let req: MonotonicCounterReqV2 = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    let core = s.core.clone();
    let peer = peer_der(&peer);
    match blocking(move || core.monotonic_counter(peer.as_deref(), &req.name, req.value)).await {
        Ok(value) => success(MonotonicCounterRespV2 { value }),
        Err(e) => v2_core_error(&e),
    }
}

async fn v1_secrets_get(
    State(s): State<ApiState>,
    peer: Peer,
    RawQuery(query): RawQuery,
) -> Response<Body> {
    deprecated("/secrets");
    match read_secrets(&s, &peer, query).await {
        Ok(secrets) => success(secrets),
        Err(r) => {
            // v1 has no `fail` envelopes: re-map the status onto an error.
            let status = r.status();
            let code = if status == StatusCode::UNAUTHORIZED {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            };
            let msg = body_message(r).await;
            error(code, &msg)
        }
    }
}

async fn body_message(r: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), SMALL_LIMIT)
        .await
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn v1_secrets_set(State(s): State<ApiState>, peer: Peer, body: Bytes) -> Response<Body> {
    deprecated("/secrets");
    let req: BTreeMap<String, UserSecret> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid request body: {e}"),
            )
        }
    };
    let core = s.core.clone();
    let peer = peer_der(&peer);
    let uploads = req.into_iter().map(|(k, v)| (k, to_input(v))).collect();
    match blocking(move || core.set_secrets(peer.as_deref(), uploads)).await {
        Ok(()) => success_null(),
        Err(e) => v1_core_error(&e),
    }
}

async fn v1_update(State(s): State<ApiState>, peer: Peer, body: Bytes) -> Response<Body> {
    deprecated("/update");
    let core = s.core.clone();
    let peer = peer_der(&peer);
    let raw = body.to_vec();
    match blocking(move || core.update_manifest(peer.as_deref(), &raw)).await {
        Ok(_) => success_null(),
        Err(e) => v1_core_error(&e),
    }
}

async fn v1_update_ack(State(s): State<ApiState>, peer: Peer, body: Bytes) -> Response<Body> {
    match acknowledge(&s, &peer, body.to_vec()).await {
        Ok(o) if o.applied => success(o.ack_message()),
        Ok(o) => success(cairn_core::missing_message(o.missing_acknowledgments)),
        Err(e) => pending_error(&e, false),
    }
}

async fn v1_update_cancel(State(s): State<ApiState>, peer: Peer) -> Response<Body> {
    let core = s.core.clone();
    let peer = peer_der(&peer);
    match blocking(move || core.cancel_update(peer.as_deref())).await {
        Ok(()) => success("Update successfully cancelled"),
        Err(e) => pending_error(&e, false),
    }
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
        // Small responses must not wait for the peer's delayed ACK (Nagle).
        let _ = tcp.set_nodelay(true);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query() {
        assert_eq!(secret_names(Some("s=a&s=b%20c")).unwrap(), vec!["a", "b c"]);
        assert_eq!(
            secret_names(None).unwrap_err(),
            "invalid query: endpoint requires at least one query parameter"
        );
        assert_eq!(
            secret_names(Some("s=")).unwrap_err(),
            "malformed query string: empty query parameter"
        );
        assert_eq!(
            secret_names(Some("x=1")).unwrap_err(),
            "invalid query: endpoint requires at least one query parameter"
        );
    }
}
