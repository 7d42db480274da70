//! Synchronous wrappers over [`crate::client`] for tests written without an async runtime.

use std::net::SocketAddr;

use crate::client::{self, ActivationResult, Resp};
use crate::evidence::Evidence;
use crate::ActivationReq;

/// A multi-threaded Tokio runtime; its methods may be called from several threads at once.
pub struct Blocking {
    rt: tokio::runtime::Runtime,
}

impl Blocking {
    /// A runtime with `workers` threads.
    pub fn new(workers: usize) -> anyhow::Result<Self> {
        cairn_crypto::install_default_provider();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .enable_all()
            .build()?;
        Ok(Blocking { rt })
    }

    /// See [`client::https_request`].
    pub fn https_request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Resp> {
        self.rt
            .block_on(client::https_request(addr, method, path, body))
    }

    /// See [`client::https_request_as`].
    pub fn https_request_as(
        &self,
        addr: SocketAddr,
        client_cert: Option<(&[u8], &[u8])>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Resp> {
        self.rt.block_on(client::https_request_as(
            addr,
            client_cert,
            method,
            path,
            body,
        ))
    }

    /// See [`client::status_code`].
    pub fn status_code(&self, addr: SocketAddr) -> anyhow::Result<i64> {
        self.rt.block_on(client::status_code(addr))
    }

    /// See [`client::quote_cert`].
    pub fn quote_cert(&self, addr: SocketAddr) -> anyhow::Result<String> {
        self.rt.block_on(client::quote_cert(addr))
    }

    /// See [`client::set_manifest`].
    pub fn set_manifest(&self, addr: SocketAddr, raw: &[u8]) -> anyhow::Result<Resp> {
        self.rt.block_on(client::set_manifest(addr, raw))
    }

    /// See [`client::activate`].
    pub fn activate(&self, mesh: SocketAddr, ev: &Evidence, marble_type: &str) -> ActivationResult {
        self.rt.block_on(client::activate(mesh, ev, marble_type))
    }

    /// See [`client::grpc_raw`].
    pub fn grpc_raw(
        &self,
        mesh: SocketAddr,
        cert_der: &[u8],
        key_der: &[u8],
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<client::GrpcRaw> {
        self.rt
            .block_on(client::grpc_raw(mesh, cert_der, key_der, path, body))
    }

    /// See [`client::activate_raw`].
    pub fn activate_raw(
        &self,
        mesh: SocketAddr,
        cert_der: &[u8],
        key_der: &[u8],
        req: ActivationReq,
    ) -> ActivationResult {
        self.rt
            .block_on(client::activate_raw(mesh, cert_der, key_der, req))
    }
}
