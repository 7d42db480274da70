//! Wire types: MarbleRun's gRPC activation API and client REST DTOs with the JSend envelope.

/// Generated types and client/server stubs for `rpc.Marble/Activate`.
#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod rpc {
    tonic::include_proto!("rpc");
}
