//! etcd backend: the sealed blob is the value of one key; revisions are the key's `mod_revision`
//! and writes are etcd transactions that compare it (layout and semantics in the README).
//!
//! [`Persistence`] is synchronous while etcd-client is async. Each [`EtcdPersistence`] owns a
//! current-thread tokio runtime on its own OS thread; calls are sent to it over a channel and the
//! caller blocks on a std channel for the answer. This works from plain threads and from
//! `tokio::task::spawn_blocking`, and never runs `block_on` on another runtime's worker thread.

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex};

use crate::{Persistence, Revision, StoreError};

/// Key holding the sealed state when the configuration names none.
pub const DEFAULT_ETCD_KEY: &str = "/cairn/state";

const BACKEND: &str = "etcd";
/// Pause between attempts to re-establish a broken watch.
const WATCH_RETRY: Duration = Duration::from_millis(500);

/// Connection settings of [`EtcdPersistence`]. `Debug` never shows the password or the client
/// key.
#[derive(Clone)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:port`, or `https://` with TLS settings), tried round-robin.
    pub endpoints: Vec<String>,
    /// Key holding the sealed state (default [`DEFAULT_ETCD_KEY`]).
    pub key: String,
    /// PEM CA certificate(s) that verify the etcd servers (TLS; endpoints must be `https://`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate for mutual TLS (with `client_key_pem`).
    pub client_cert_pem: Option<Vec<u8>>,
    /// PEM private key of the client certificate.
    pub client_key_pem: Option<Vec<u8>>,
    /// etcd user for role-based access (with `password`).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// Limit for establishing a connection to an endpoint.
    pub connect_timeout: Duration,
    /// Limit for one read or write, connecting included.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// Plain-HTTP settings for `endpoints` with the default key, 5 s connect and 10 s request
    /// timeouts.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            key: DEFAULT_ETCD_KEY.to_owned(),
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    fn uses_tls(&self) -> bool {
        self.ca_pem.is_some() || self.client_cert_pem.is_some()
    }

    fn validate(&self) -> Result<(), StoreError> {
        let invalid = |m: &str| Err(backend_error(format!("invalid etcd configuration: {m}")));
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return invalid("no etcd endpoints given");
        }
        if self.key.is_empty() {
            return invalid("the state key is empty");
        }
        if self.client_cert_pem.is_some() != self.client_key_pem.is_some() {
            return invalid("a client certificate needs its key and a key needs its certificate");
        }
        if self.user.is_some() != self.password.is_some() {
            return invalid("an etcd user needs a password and a password needs a user");
        }
        if self.uses_tls() {
            if let Some(e) = self.endpoints.iter().find(|e| e.starts_with("http://")) {
                return invalid(&format!(
                    "TLS settings are given but endpoint {e} is plain http:// (use https://)"
                ));
            }
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return invalid("timeouts must be positive");
        }
        Ok(())
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            o = o.with_user(user.clone(), password.clone());
        }
        if self.uses_tls() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let (Some(cert), Some(key)) = (&self.client_cert_pem, &self.client_key_pem) {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            o = o.with_tls(tls);
        }
        o
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |set: bool| if set { Some("<redacted>") } else { None };
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("key", &self.key)
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|c| c.len()),
            )
            .field("client_key_pem", &redacted(self.client_key_pem.is_some()))
            .field("user", &self.user)
            .field("password", &redacted(self.password.is_some()))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// The sealed state as the value of one etcd key; see the module documentation for threading.
///
/// Calls block the calling thread for at most about `connect_timeout + request_timeout`; async
/// code calls them from `tokio::task::spawn_blocking`. When a write fails with
/// [`StoreError::Backend`] (etcd unreachable or too slow) it may or may not have been applied:
/// reload before retrying. A stale retry cannot overwrite a newer state, it gets a `Conflict`.
pub struct EtcdPersistence {
    requests: mpsc::UnboundedSender<Request>,
    revisions: Arc<watch::Sender<Option<Revision>>>,
    watch_started: AtomicBool,
    label: Arc<str>,
    key: String,
    reply_timeout: Duration,
}

impl EtcdPersistence {
    /// Checks `config` and starts the backend thread. Does not contact etcd: an unreachable
    /// etcd is reported by the first [`Persistence`] call (which retries the connection).
    pub fn new(config: EtcdConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let label: Arc<str> = config.endpoints.join(", ").into();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| backend_error(format!("cannot start the etcd client runtime: {e}")))?;
        let (requests, rx) = mpsc::unbounded_channel();
        let (revisions, _) = watch::channel(None);
        let revisions = Arc::new(revisions);
        let worker = Arc::new(Worker {
            options: config.connect_options(),
            endpoints: config.endpoints.clone(),
            key: config.key.clone(),
            label: label.clone(),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            client: AsyncMutex::new(None),
            revisions: revisions.clone(),
        });
        thread::Builder::new()
            .name("cairn-etcd".to_owned())
            .spawn(move || serve(runtime, worker, rx))
            .map_err(|e| backend_error(format!("cannot start the etcd client thread: {e}")))?;
        Ok(EtcdPersistence {
            requests,
            revisions,
            watch_started: AtomicBool::new(false),
            label,
            key: config.key,
            // The worker enforces both limits itself; this only guards against a stuck worker.
            reply_timeout: config.connect_timeout + config.request_timeout + Duration::from_secs(2),
        })
    }

    /// The key holding the sealed state.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Revisions of the state key as etcd reports them (`None`: the key does not exist or was
    /// not read yet). The first call starts one watch on the key, re-established after errors;
    /// a change is normally seen well within a second. A change is a hint: call
    /// [`Persistence::load`] for the state itself. Missed intermediate revisions are coalesced.
    pub fn subscribe(&self) -> watch::Receiver<Option<Revision>> {
        let rx = self.revisions.subscribe();
        if !self.watch_started.swap(true, Ordering::SeqCst)
            && self.requests.send(Request::StartWatch).is_err()
        {
            tracing::warn!(endpoints = %self.label, "etcd client thread stopped; no watch started");
        }
        rx
    }

    /// Writes `value` under `key` (another key than the state's) bound to a fresh etcd lease of
    /// `ttl` (whole seconds, at least 1): etcd deletes the key `ttl` after the last such write, so
    /// the key tells that the writing process is alive. Older leases of the key simply expire.
    pub fn put_expiring(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.call(|reply| Request::PutExpiring {
            key: key.to_owned(),
            value: value.to_vec(),
            ttl_secs: i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX),
            reply,
        })
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.call(|reply| Request::ListPrefix {
            prefix: prefix.to_owned(),
            reply,
        })
    }

    fn call<T>(
        &self,
        make: impl FnOnce(std_mpsc::SyncSender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.requests.send(make(tx)).map_err(|_| self.stopped())?;
        match rx.recv_timeout(self.reply_timeout) {
            Ok(result) => result,
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(backend_error(format!(
                "etcd at {} did not answer within {:?} (key {})",
                self.label, self.reply_timeout, self.key
            ))),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> StoreError {
        backend_error(format!(
            "the etcd client thread for {} has stopped",
            self.label
        ))
    }
}

impl fmt::Debug for EtcdPersistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdPersistence")
            .field("endpoints", &self.label)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Persistence for EtcdPersistence {
    fn load(&self) -> Result<Option<(Revision, Vec<u8>)>, StoreError> {
        self.call(Request::Load)
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        blob: &[u8],
    ) -> Result<Revision, StoreError> {
        self.call(|reply| Request::CompareAndSwap {
            expected,
            blob: blob.to_vec(),
            reply,
        })
    }
}

type Reply<T> = std_mpsc::SyncSender<Result<T, StoreError>>;

enum Request {
    Load(Reply<Option<(Revision, Vec<u8>)>>),
    CompareAndSwap {
        expected: Option<Revision>,
        blob: Vec<u8>,
        reply: Reply<Revision>,
    },
    StartWatch,
    PutExpiring {
        key: String,
        value: Vec<u8>,
        ttl_secs: i64,
        reply: Reply<()>,
    },
    ListPrefix {
        prefix: String,
        reply: Reply<Vec<(String, Vec<u8>)>>,
    },
}

/// State of the backend thread. `options` may hold the password: never log or format it.
struct Worker {
    options: ConnectOptions,
    endpoints: Vec<String>,
    key: String,
    label: Arc<str>,
    connect_timeout: Duration,
    request_timeout: Duration,
    client: AsyncMutex<Option<Client>>,
    revisions: Arc<watch::Sender<Option<Revision>>>,
}

/// Body of the backend thread: serves requests concurrently until every sender is dropped,
/// then drops the runtime (cancelling the watch) on this thread, outside any async context.
fn serve(
    runtime: tokio::runtime::Runtime,
    worker: Arc<Worker>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    runtime.block_on(async move {
        while let Some(request) = rx.recv().await {
            let w = worker.clone();
            match request {
                Request::Load(reply) => {
                    tokio::spawn(async move {
                        let result = w.bounded(false, w.load()).await;
                        // The caller may have given up waiting; nothing to do then.
                        let _ = reply.send(result);
                    });
                }
                Request::CompareAndSwap {
                    expected,
                    blob,
                    reply,
                } => {
                    tokio::spawn(async move {
                        let result = w.bounded(true, w.compare_and_swap(expected, blob)).await;
                        let _ = reply.send(result);
                    });
                }
                Request::StartWatch => {
                    tokio::spawn(w.watch_loop());
                }
                Request::PutExpiring {
                    key,
                    value,
                    ttl_secs,
                    reply,
                } => {
                    tokio::spawn(async move {
                        let result = w.bounded(true, w.put_expiring(key, value, ttl_secs)).await;
                        let _ = reply.send(result);
                    });
                }
                Request::ListPrefix { prefix, reply } => {
                    tokio::spawn(async move {
                        let result = w.bounded(false, w.list_prefix(prefix)).await;
                        let _ = reply.send(result);
                    });
                }
            }
        }
    });
    drop(runtime);
}

impl Worker {
    /// Runs `op` within the request timeout; after any failure the connection is rebuilt on
    /// the next call, so a restarted etcd is picked up.
    async fn bounded<T>(
        &self,
        write: bool,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.connect_timeout + self.request_timeout;
        let result = match tokio::time::timeout(limit, op).await {
            Ok(r) => r,
            Err(_) => Err(backend_error(format!(
                "etcd at {} did not answer within {limit:?} (key {}){}",
                self.label,
                self.key,
                if write {
                    "; the write may or may not have been applied, reload before retrying"
                } else {
                    ""
                }
            ))),
        };
        if matches!(result, Err(StoreError::Backend { .. })) {
            *self.client.lock().await = None;
        }
        result
    }

    async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let connect = Client::connect(&self.endpoints, Some(self.options.clone()));
        let client = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(backend_error(format!(
                    "cannot connect to etcd at {}: {}",
                    self.label,
                    chain(&e)
                )))
            }
            Err(_) => {
                return Err(backend_error(format!(
                    "cannot connect to etcd at {} within {:?}",
                    self.label, self.connect_timeout
                )))
            }
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    fn failed(&self, what: &str, e: &etcd_client::Error) -> StoreError {
        backend_error(format!(
            "etcd {what} of key {} at {} failed: {}",
            self.key,
            self.label,
            chain(e)
        ))
    }

    async fn load(&self) -> Result<Option<(Revision, Vec<u8>)>, StoreError> {
        let mut client = self.client().await?;
        let resp = client
            .get(self.key.as_bytes(), None)
            .await
            .map_err(|e| self.failed("read", &e))?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some((to_revision(kv.mod_revision())?, kv.value().to_vec()))),
        }
    }

    async fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        blob: Vec<u8>,
    ) -> Result<Revision, StoreError> {
        let key = self.key.as_bytes();
        let guard = match expected {
            // create_revision 0: the key does not exist.
            None => Compare::create_revision(key, CompareOp::Equal, 0),
            // No key has a negative mod_revision, so an unrepresentable one always conflicts.
            Some(r) => {
                Compare::mod_revision(key, CompareOp::Equal, i64::try_from(r.0).unwrap_or(-1))
            }
        };
        let txn = Txn::new()
            .when(vec![guard])
            .and_then(vec![TxnOp::put(key, blob, None)])
            .or_else(vec![TxnOp::get(key, None)]);
        let mut client = self.client().await?;
        let resp = client
            .txn(txn)
            .await
            .map_err(|e| self.failed("write", &e))?;
        if resp.succeeded() {
            // The put is the transaction's only change, so its revision is the key's new
            // mod_revision.
            let header = resp.header().ok_or_else(|| {
                backend_error("etcd answered a write without a response header".to_owned())
            })?;
            return to_revision(header.revision());
        }
        let actual = match resp.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => match get.kvs().first() {
                Some(kv) => Some(to_revision(kv.mod_revision())?.0),
                None => None,
            },
            _ => {
                return Err(backend_error(
                    "etcd answered a failed compare without the current key".to_owned(),
                ))
            }
        };
        Err(StoreError::Conflict {
            expected: expected.map(|r| r.0),
            actual,
        })
    }

    async fn put_expiring(
        &self,
        key: String,
        value: Vec<u8>,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let lease = client
            .lease_grant(ttl_secs, None)
            .await
            .map_err(|e| self.failed_on("lease grant", &key, &e))?;
        client
            .put(
                key.as_bytes(),
                value,
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await
            .map_err(|e| self.failed_on("write", &key, &e))?;
        Ok(())
    }

    async fn list_prefix(&self, prefix: String) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut client = self.client().await?;
        let resp = client
            .get(prefix.as_bytes(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.failed_on("read", &prefix, &e))?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }

    fn failed_on(&self, what: &str, key: &str, e: &etcd_client::Error) -> StoreError {
        backend_error(format!(
            "etcd {what} of key {key} at {} failed: {}",
            self.label,
            chain(e)
        ))
    }

    /// Keeps `revisions` current until the runtime stops; logs once per outage.
    async fn watch_loop(self: Arc<Self>) {
        let mut failing = false;
        loop {
            match self.watch_once(&mut failing).await {
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "etcd watch interrupted; retrying");
                        failing = true;
                    }
                    *self.client.lock().await = None;
                }
            }
            tokio::time::sleep(WATCH_RETRY).await;
        }
    }

    /// Publishes the current revision, then follows changes from the next revision on, so
    /// nothing between the read and the watch is missed. Returns when the stream ends.
    async fn watch_once(&self, failing: &mut bool) -> Result<(), StoreError> {
        let key = self.key.as_bytes();
        let mut client = tokio::time::timeout(self.connect_timeout, self.client())
            .await
            .map_err(|_| backend_error(format!("cannot connect to etcd at {}", self.label)))??;
        let resp = tokio::time::timeout(self.request_timeout, client.get(key, None))
            .await
            .map_err(|_| self.slow("read"))?
            .map_err(|e| self.failed("read", &e))?;
        let current = match resp.kvs().first() {
            Some(kv) => Some(to_revision(kv.mod_revision())?),
            None => None,
        };
        self.publish(current);
        let next = resp.header().map_or(0, |h| h.revision()).saturating_add(1);
        let options = WatchOptions::new().with_start_revision(next);
        let mut stream =
            tokio::time::timeout(self.request_timeout, client.watch(key, Some(options)))
                .await
                .map_err(|_| self.slow("watch"))?
                .map_err(|e| self.failed("watch", &e))?;
        if *failing {
            tracing::info!(endpoints = %self.label, "etcd watch re-established");
            *failing = false;
        }
        while let Some(msg) = stream
            .message()
            .await
            .map_err(|e| self.failed("watch", &e))?
        {
            if msg.canceled() {
                return Err(backend_error(format!(
                    "etcd cancelled the watch of key {}: {}",
                    self.key,
                    msg.cancel_reason()
                )));
            }
            for event in msg.events() {
                let revision = match event.event_type() {
                    EventType::Put => match event.kv() {
                        Some(kv) => Some(to_revision(kv.mod_revision())?),
                        None => continue,
                    },
                    EventType::Delete => None,
                };
                self.publish(revision);
            }
        }
        Ok(())
    }

    fn publish(&self, revision: Option<Revision>) {
        self.revisions.send_if_modified(|v| {
            let changed = *v != revision;
            *v = revision;
            changed
        });
    }

    fn slow(&self, what: &str) -> StoreError {
        backend_error(format!(
            "etcd {what} of key {} at {} did not finish within {:?}",
            self.key, self.label, self.request_timeout
        ))
    }
}

fn to_revision(r: i64) -> Result<Revision, StoreError> {
    u64::try_from(r)
        .map(Revision)
        .map_err(|_| backend_error(format!("etcd reported a negative revision {r}")))
}

fn backend_error(message: String) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message,
    }
}

/// A readable description: for gRPC statuses the code, the message and the transport causes
/// ("Connection refused"), instead of tonic's debug rendering.
fn chain(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return e.to_string();
    };
    let mut s = format!("{}: {}", status.code(), status.message());
    let mut source = status.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let mut c = EtcdConfig::new(["https://127.0.0.1:2379"]);
        c.user = Some("cairn".into());
        c.password = Some("hunter2-secret".into());
        c.client_cert_pem = Some(b"CERT".to_vec());
        c.client_key_pem = Some(b"-----BEGIN PRIVATE KEY-----SECRETKEY".to_vec());
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(!d.contains("SECRETKEY"), "{d}");
        assert!(d.contains("cairn") && d.contains("127.0.0.1:2379"), "{d}");
        let p = EtcdPersistence::new(c).unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert_eq!(p.key(), DEFAULT_ETCD_KEY);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let cases: Vec<(EtcdConfig, &str)> = vec![
            (EtcdConfig::new(Vec::<String>::new()), "no etcd endpoints"),
            (
                EtcdConfig {
                    key: String::new(),
                    ..EtcdConfig::new(["http://127.0.0.1:1"])
                },
                "key is empty",
            ),
            (
                EtcdConfig {
                    ca_pem: Some(b"x".to_vec()),
                    ..EtcdConfig::new(["http://127.0.0.1:1"])
                },
                "plain http://",
            ),
            (
                EtcdConfig {
                    client_cert_pem: Some(b"x".to_vec()),
                    ..EtcdConfig::new(["https://127.0.0.1:1"])
                },
                "needs its key",
            ),
            (
                EtcdConfig {
                    password: Some("pw-do-not-print".into()),
                    ..EtcdConfig::new(["http://127.0.0.1:1"])
                },
                "needs a user",
            ),
        ];
        for (config, want) in cases {
            let e = EtcdPersistence::new(config).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(
                    e,
                    StoreError::Backend {
                        backend: "etcd",
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(msg.contains(want), "{msg}");
            assert!(!msg.contains("pw-do-not-print"), "{msg}");
        }
    }

    #[test]
    fn unreachable_endpoint_is_named() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let mut c = EtcdConfig::new(["http://127.0.0.1:1"]);
        c.connect_timeout = Duration::from_secs(2);
        c.request_timeout = Duration::from_secs(2);
        let p = EtcdPersistence::new(c).unwrap();
        for e in [
            p.load().unwrap_err(),
            p.compare_and_swap(None, b"x").unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    StoreError::Backend {
                        backend: "etcd",
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("http://127.0.0.1:1"), "{e}");
        }
    }
}
