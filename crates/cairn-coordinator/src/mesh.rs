//! The marble API: gRPC `rpc.Marble/Activate` over TLS with a required (unverified) client
//! certificate, whose DER reaches the handler as [`MeshConnectInfo`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cairn_api::rpc::marble_server::{Marble, MarbleServer};
use cairn_api::rpc::{ActivationReq, ActivationResp, Parameters};
use cairn_core::{ActivationRequest, CoordinatorCore, CoreError, ErrorKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::refusal_log::{RefusalLog, WINDOW};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection facts a handler can read from the request extensions.
#[derive(Debug, Clone)]
pub struct MeshConnectInfo {
    /// First certificate of the client's TLS chain (DER).
    pub peer_cert: Option<Vec<u8>>,
    /// Remote address.
    pub remote: SocketAddr,
}

/// A server-side TLS connection that tells tonic who is on the other end.
pub struct MeshConn {
    inner: TlsStream<TcpStream>,
    info: MeshConnectInfo,
}

impl Connected for MeshConn {
    type ConnectInfo = MeshConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for MeshConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MeshConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The `rpc.Marble` service.
pub struct MarbleService {
    core: Arc<CoordinatorCore>,
    metrics: Arc<Metrics>,
    workers: Arc<tokio::sync::Semaphore>,
    refusals: Arc<RefusalLog>,
}

/// Activations verified and committed at once. Enough to fill the cores and to batch counter
/// commits while one is being written; a burst beyond it waits as a cheap async task instead of
/// a blocking thread each (which costs memory and context switches under overload).
pub const MAX_CONCURRENT_ACTIVATIONS: usize = 32;

impl MarbleService {
    /// A service over `core`.
    pub fn new(core: Arc<CoordinatorCore>, metrics: Arc<Metrics>) -> Self {
        MarbleService {
            core,
            metrics,
            workers: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_ACTIVATIONS)),
            refusals: Arc::new(RefusalLog::default()),
        }
    }
}

/// Maps a core error to a gRPC status (one place).
pub fn to_status(e: &CoreError) -> Status {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::FailedPrecondition => Status::failed_precondition(msg),
        ErrorKind::Unauthenticated => Status::unauthenticated(msg),
        ErrorKind::PermissionDenied => Status::permission_denied(msg),
        ErrorKind::InvalidArgument | ErrorKind::InvalidManifest => Status::invalid_argument(msg),
        ErrorKind::NotFound => Status::not_found(msg),
        _ => Status::internal(msg),
    }
}

#[tonic::async_trait]
impl Marble for MarbleService {
    async fn activate(
        &self,
        request: Request<ActivationReq>,
    ) -> Result<Response<ActivationResp>, Status> {
        let info = request.extensions().get::<MeshConnectInfo>().cloned();
        let r = request.into_inner();
        let marble_type = r.marble_type.clone();
        let req = ActivationRequest {
            quote: r.quote,
            csr: r.csr,
            marble_type: r.marble_type,
            uuid: r.uuid,
            peer_cert_der: info.as_ref().and_then(|i| i.peer_cert.clone()),
        };
        let core = self.core.clone();
        // Invariant: the semaphore is never closed, so acquiring only waits.
        let permit = self.workers.clone().acquire_owned().await.ok();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            core.activate(&req)
        })
        .await
        .unwrap_or_else(|e| Err(CoreError::Internal(format!("worker task failed: {e}"))));
        match result {
            Ok(resp) => {
                self.metrics.activation(&marble_type, "success");
                Ok(Response::new(ActivationResp {
                    parameters: Some(Parameters {
                        files: resp.files.into_iter().collect(),
                        env: resp.env.into_iter().collect(),
                        argv: resp.argv,
                    }),
                }))
            }
            Err(e) => {
                let kind = format!("{:?}", e.kind());
                self.metrics.activation(&marble_type, &kind);
                self.refusals
                    .record(&marble_type, &kind, info.as_ref().map(|i| i.remote), &e);
                Err(to_status(&e))
            }
        }
    }
}

/// Serves the marble API on `listener` until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: MarbleService,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel::<Result<MeshConn, io::Error>>(64);
    let acceptor = TlsAcceptor::from(tls);
    let mut accept_shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = accept_shutdown.changed() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "mesh API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // HTTP/2 writes headers, data and trailers separately: without TCP_NODELAY, Nagle
            // and the peer's delayed ACK add ~40 ms to every activation.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let peer_cert = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.to_vec());
                        let conn = MeshConn {
                            inner: tls,
                            info: MeshConnectInfo { peer_cert, remote },
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "mesh API TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%remote, "mesh API TLS handshake timed out"),
                }
            });
        }
    });
    let refusals = service.refusals.clone();
    let mut tick_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(WINDOW);
        loop {
            tokio::select! {
                _ = tick_shutdown.changed() => break,
                _ = every.tick() => refusals.tick(),
            }
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    tonic::transport::Server::builder()
        .add_service(MarbleServer::new(service))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await
}
