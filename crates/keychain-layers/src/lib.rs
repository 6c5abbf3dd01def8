#![doc = include_str!("../README.md")]

mod audit;
mod cache;
mod fallback;
mod metrics;
mod retry;
mod timeout;

use std::sync::Arc;

use keychain_core::{Backend, Error, Operation, Result};
use serde::{Deserialize, Serialize};

pub use crate::audit::{AUDIT_TARGET, AuditConfig, audit};
pub use crate::cache::{CacheConfig, cache};
pub use crate::fallback::fallback;
pub use crate::metrics::{Metrics, MetricsSnapshot, OpMetrics, metrics};
pub use crate::retry::{RetryPolicy, retry};
pub use crate::timeout::{TimeoutPolicy, timeout};

/// One layer as a configuration file declares it, tagged by `type`:
///
/// ```toml
/// [[layers]]
/// type = "audit"
/// name = "prod-hsm"
///
/// [[layers]]
/// type = "metrics"
///
/// [[layers]]
/// type = "cache"
/// ttl-ms = 60000
///
/// [[layers]]
/// type = "retry"
/// max-attempts = 4
///
/// [[layers]]
/// type = "timeout"
/// operation-ms = 5000
/// ```
///
/// [`fallback`] joins two backends, so it is not a `LayerSpec`; whoever builds the backends
/// wires it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LayerSpec {
    /// [`retry`].
    Retry(RetryPolicy),
    /// [`timeout`].
    Timeout(TimeoutPolicy),
    /// [`audit`].
    Audit(AuditConfig),
    /// [`metrics`]; its handle is returned in [`Stack::metrics`].
    Metrics,
    /// [`cache`].
    Cache(CacheConfig),
}

impl LayerSpec {
    /// The `type` tag (`retry`, `timeout`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Retry(_) => "retry",
            Self::Timeout(_) => "timeout",
            Self::Audit(_) => "audit",
            Self::Metrics => "metrics",
            Self::Cache(_) => "cache",
        }
    }

    /// Checks values that deserialize but make no sense.
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] for a retry with `max-attempts = 0` or a
    /// timeout of 0 ms.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |msg: &'static str| Err(Error::invalid_input(msg).with_operation(Operation::Open));
        match self {
            Self::Retry(p) if p.max_attempts == 0 => {
                invalid("retry layer: max-attempts must be at least 1")
            }
            Self::Timeout(p) if p.operation_ms == 0 || p.generate_key_ms == 0 => {
                invalid("timeout layer: deadlines must be at least 1 ms")
            }
            _ => Ok(()),
        }
    }
}

/// A backend with its layers, and the handle of its metrics layer if it has one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stack {
    /// The outermost layer: call this.
    pub backend: Arc<dyn Backend>,
    /// The counters of the [`LayerSpec::Metrics`] layer, if the stack has one.
    pub metrics: Option<Metrics>,
}

/// Wraps `inner` in the one layer `spec` declares (without [`LayerSpec::validate`]; a retry with
/// `max-attempts = 0` tries once).
pub fn apply(spec: &LayerSpec, inner: Arc<dyn Backend>) -> Stack {
    let (backend, metrics) = match spec {
        LayerSpec::Retry(p) => (retry(inner, p.clone()), None),
        LayerSpec::Timeout(p) => (timeout(inner, p.clone()), None),
        LayerSpec::Audit(c) => (audit(inner, c.clone()), None),
        LayerSpec::Metrics => {
            let (backend, handle) = metrics(inner);
            (backend, Some(handle))
        }
        LayerSpec::Cache(c) => (cache(inner, c.clone()), None),
    };
    Stack { backend, metrics }
}

/// Wraps `inner` in every layer of `specs`, the **first listed outermost**: a call passes
/// through the layers in the order they are listed, then reaches `inner`. A good order is
/// audit, metrics, cache, retry, timeout: the audit trail and the metrics see each call as the
/// caller made it (cache hits included, retries folded into one), the cache answers before any
/// retry, and each attempt gets its own deadline.
///
/// # Errors
/// [`keychain_core::ErrorKind::InvalidInput`] when a spec fails [`LayerSpec::validate`] or more
/// than one metrics layer is listed (only one handle could be returned).
pub fn apply_all(specs: &[LayerSpec], inner: Arc<dyn Backend>) -> Result<Stack> {
    for spec in specs {
        spec.validate()?;
    }
    if specs.iter().filter(|s| **s == LayerSpec::Metrics).count() > 1 {
        return Err(
            Error::invalid_input("more than one metrics layer").with_operation(Operation::Open)
        );
    }
    let mut stack = Stack {
        backend: inner,
        metrics: None,
    };
    for spec in specs.iter().rev() {
        let layered = apply(spec, stack.backend);
        stack = Stack {
            backend: layered.backend,
            metrics: layered.metrics.or(stack.metrics),
        };
    }
    Ok(stack)
}
