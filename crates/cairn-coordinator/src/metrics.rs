//! Prometheus metrics (prometheus-client text format) on an optional plain-HTTP listener.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActivationLabels {
    r#type: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: String,
    code: String,
}

/// The Coordinator's metrics.
pub struct Metrics {
    registry: Registry,
    activations: Family<ActivationLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    state: Gauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("cairn");
        let activations = Family::<ActivationLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let state = Gauge::default();
        registry.register(
            "marble_activations",
            "Marble activations by marble type and result",
            activations.clone(),
        );
        registry.register(
            "client_api_requests",
            "Client API requests by path and HTTP status code",
            requests.clone(),
        );
        registry.register("coordinator_state", "Coordinator state code", state.clone());
        Arc::new(Metrics {
            registry,
            activations,
            requests,
            state,
        })
    }

    /// Counts one activation; `result` is `success` or the error kind.
    pub fn activation(&self, marble_type: &str, result: &str) {
        self.activations
            .get_or_create(&ActivationLabels {
                r#type: marble_type.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Counts one client API request.
    pub fn request(&self, path: &str, code: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                path: path.into(),
                code: code.to_string(),
            })
            .inc();
    }

    /// Records the Coordinator state code.
    pub fn set_state(&self, code: i32) {
        self.state.set(i64::from(code));
    }

    /// Text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
