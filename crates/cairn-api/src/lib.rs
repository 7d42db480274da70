//! Wire types: MarbleRun's gRPC activation API and client REST DTOs with the JSend envelope.
#![cfg_attr(test, allow(clippy::unwrap_used))]

/// Generated types and client/server stubs for `rpc.Marble/Activate`.
#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod rpc {
    tonic::include_proto!("rpc");
}

pub mod rest;

pub use rest::{
    error_body, JSend, JSendStatus, ManifestGetV1, ManifestGetV2, ManifestSetReqV2,
    ManifestSetResp, ManifestSetRespV1, ManifestSetRespV2, MessageV2, MonotonicCounterReqV2,
    MonotonicCounterRespV2, QuoteV1, QuoteV2, RecoverPublicKeyV2, RecoverReqV2, RecoverRespV2,
    Secret, SecretsGetV2, SecretsSetReqV2, SignQuoteReqV2, SignQuoteRespV2, StatusV1, StatusV2,
    UpdateLogV2, UpdateManifestAckRespV2, UpdateManifestGetV2, UpdateRespV2, UserSecret,
};
