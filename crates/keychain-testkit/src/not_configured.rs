//! A stand-in backend for a test cell whose service is not configured.

use keychain_core::{
    Backend, Capabilities, Error, KeyInfo, KeyName, KeyRef, KeySpec, Protection, Result, SignInput,
    Signature, SignatureScheme, async_trait,
};

/// Declares nothing, so every conformance check has nothing to test. A cell's factory returns
/// it when the cell's settings are absent (after writing `skipped: <cell> not configured` to
/// stderr), so `conformance!` still expands to the same tests either way; [`crate::run`] reports
/// every check on it as skipped without running it.
///
/// ```
/// # use std::sync::Arc;
/// # use keychain_core::{Backend, Protection};
/// let backend: Arc<dyn Backend> =
///     Arc::new(keychain_testkit::NotConfigured::new("mykms", Protection::CloudHsm));
/// assert!(backend.capabilities().algorithms.is_empty());
/// ```
#[derive(Debug)]
pub struct NotConfigured(Capabilities);

/// How the stand-in's backend name ends.
const SUFFIX: &str = " (not configured)";

impl NotConfigured {
    /// A stand-in for `backend` (named `"<backend> (not configured)"`).
    pub fn new(backend: &str, protection: Protection) -> Self {
        Self(Capabilities::new(format!("{backend}{SUFFIX}"), protection))
    }
}

/// Whether `caps` are a [`NotConfigured`] stand-in's: its name, and nothing declared.
pub(crate) fn is_stand_in(caps: &Capabilities) -> bool {
    caps.backend.ends_with(SUFFIX) && caps.algorithms.is_empty()
}

#[async_trait]
impl Backend for NotConfigured {
    fn capabilities(&self) -> &Capabilities {
        &self.0
    }
    async fn generate_key(&self, _: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        Err(Error::unsupported(format!(
            "{} (not configured)",
            spec.algorithm
        )))
    }
    async fn key_info(&self, _: &KeyRef) -> Result<KeyInfo> {
        Err(Error::not_found("not configured"))
    }
    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        Ok(Vec::new())
    }
    async fn delete_key(&self, _: &KeyName) -> Result<()> {
        Err(Error::not_found("not configured"))
    }
    async fn sign(&self, _: &KeyRef, _: SignInput<'_>, _: SignatureScheme) -> Result<Signature> {
        Err(Error::not_found("not configured"))
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
