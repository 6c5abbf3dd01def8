//! Certificate storage by key name: the contract hardware stores (PKCS#11 `CKO_CERTIFICATE`
//! objects, TPM NV) and `keychain-certstore`'s file and hybrid stores share.

use async_trait::async_trait;

use crate::error::Result;
use crate::name::KeyName;

/// How much a [`CertStore`] holds and can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CertCapacity {
    /// Certificates stored now (every certificate of every chain).
    pub stored: usize,
    /// The most certificates the store takes, when it has a limit (configured or known).
    pub max_certificates: Option<usize>,
    /// Free bytes where the device reports them (a token's free public memory).
    pub free_bytes: Option<u64>,
}

impl CertCapacity {
    /// A capacity record.
    pub fn new(stored: usize, max_certificates: Option<usize>, free_bytes: Option<u64>) -> Self {
        Self {
            stored,
            max_certificates,
            free_bytes,
        }
    }

    /// Whether `more` certificates still fit under `max_certificates`.
    pub fn fits(&self, more: usize) -> bool {
        self.max_certificates
            .is_none_or(|max| self.stored.saturating_add(more) <= max)
    }
}

/// Certificates and chains (DER X.509, leaf first) stored under the name of the key they
/// certify.
///
/// Shared by every store, so that a hybrid store (hardware first, overflow elsewhere on
/// [`ErrorKind::CapacityExceeded`](crate::ErrorKind::CapacityExceeded)) can sit on top of any of
/// them. Methods are safe to call concurrently.
///
/// # Errors
/// Common to every method: [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) and the
/// credential kinds as for [`crate::Backend`].
#[async_trait]
pub trait CertStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `chain` (DER certificates, leaf first, at least one) for `name`, replacing any
    /// chain stored for it. All or nothing: on error the previous chain is still there.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for an empty chain or a
    /// certificate that is not DER X.509;
    /// [`ErrorKind::CapacityExceeded`](crate::ErrorKind::CapacityExceeded) when the chain does not
    /// fit (see [`CertStore::capacity`]).
    async fn save_chain(&self, name: &KeyName, chain: &[Vec<u8>]) -> Result<()>;

    /// The chain stored for `name`, leaf first.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when none is stored.
    async fn chain(&self, name: &KeyName) -> Result<Vec<Vec<u8>>>;

    /// Removes the chain stored for `name`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when none is stored.
    async fn delete_chain(&self, name: &KeyName) -> Result<()>;

    /// The names with a stored chain, sorted.
    async fn list_chains(&self) -> Result<Vec<KeyName>>;

    /// How much the store holds and can hold.
    async fn capacity(&self) -> Result<CertCapacity>;

    /// Stores a single certificate for `name` (a chain of one).
    ///
    /// # Errors
    /// As [`CertStore::save_chain`].
    async fn save_certificate(&self, name: &KeyName, certificate: &[u8]) -> Result<()> {
        self.save_chain(name, &[certificate.to_vec()]).await
    }

    /// The leaf certificate stored for `name`.
    ///
    /// # Errors
    /// As [`CertStore::chain`].
    async fn certificate(&self, name: &KeyName) -> Result<Vec<u8>> {
        self.chain(name)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| crate::Error::not_found(format!("no certificate stored for {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_fits() {
        let c = CertCapacity::new(3, Some(4), None);
        assert!(c.fits(1));
        assert!(!c.fits(2));
        assert!(CertCapacity::new(100, None, Some(10)).fits(50));
    }
}
