//! Factories of the backends compiled into this build.

#[cfg(feature = "aws")]
pub(crate) use aws::AwsFactory;
#[cfg(feature = "pkcs8")]
pub(crate) use pkcs8::Pkcs8Factory;
#[cfg(feature = "pkcs11")]
pub(crate) use pkcs11::Pkcs11Factory;
#[cfg(feature = "tpm2")]
pub(crate) use tpm2::Tpm2Factory;
#[cfg(feature = "vault")]
pub(crate) use vault::VaultFactory;

/// Turns a backend's settings table into its typed configuration.
#[cfg(any(
    feature = "pkcs8",
    feature = "pkcs11",
    feature = "aws",
    feature = "vault",
    feature = "tpm2"
))]
fn settings<T: serde::de::DeserializeOwned>(table: &toml::Table) -> keychain_core::Result<T> {
    table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| keychain_core::Error::invalid_input(e.message().to_owned()))
}

#[cfg(feature = "pkcs8")]
mod pkcs8 {
    use std::path::Path;
    use std::sync::Arc;

    use async_trait::async_trait;
    use keychain_core::{Backend, KeyUri, Result};

    use crate::registry::BackendFactory;

    /// `type = "pkcs8"`: [`keychain_pkcs8::Pkcs8Backend`] from a [`keychain_pkcs8::Config`].
    pub(crate) struct Pkcs8Factory;

    #[async_trait]
    impl BackendFactory for Pkcs8Factory {
        fn backend_type(&self) -> &str {
            "pkcs8"
        }

        fn uri_scheme(&self) -> &str {
            "pkcs8"
        }

        async fn open(&self, _name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
            let config: keychain_pkcs8::Config = super::settings(settings)?;
            Ok(Arc::new(keychain_pkcs8::Pkcs8Backend::open(config).await?))
        }

        /// A `pkcs8:` URI with `dir=` matches the backend keeping its keys there.
        fn matches(&self, settings: &toml::Table, uri: &KeyUri) -> bool {
            match (
                uri.path_attr("dir"),
                settings.get("dir").and_then(|d| d.as_str()),
            ) {
                (None, _) => true,
                (Some(want), Some(have)) => same_dir(Path::new(want), Path::new(have)),
                (Some(_), None) => false,
            }
        }
    }

    fn same_dir(a: &Path, b: &Path) -> bool {
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        }
    }
}

#[cfg(feature = "pkcs11")]
mod pkcs11 {
    use std::sync::Arc;

    use async_trait::async_trait;
    use keychain_core::{Backend, KeyUri, Result};

    use crate::registry::BackendFactory;

    /// `type = "pkcs11"`: [`keychain_pkcs11::Pkcs11Backend`] from a [`keychain_pkcs11::Config`].
    pub(crate) struct Pkcs11Factory;

    #[async_trait]
    impl BackendFactory for Pkcs11Factory {
        fn backend_type(&self) -> &str {
            "pkcs11"
        }

        fn uri_scheme(&self) -> &str {
            "pkcs11"
        }

        async fn open(&self, _name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
            let config: keychain_pkcs11::Config = super::settings(settings)?;
            Ok(Arc::new(
                keychain_pkcs11::Pkcs11Backend::open(config).await?,
            ))
        }

        /// A `pkcs11:` URI matches the backend on the token it names (`token=` label or
        /// `slot-id=`); a URI naming neither matches every PKCS#11 backend.
        fn matches(&self, settings: &toml::Table, uri: &KeyUri) -> bool {
            let same = |attr: &str, key: &str| match (uri.path_attr(attr), settings.get(key)) {
                (None, _) => true,
                (Some(want), Some(toml::Value::String(have))) => want == have,
                (Some(want), Some(toml::Value::Integer(have))) => want == have.to_string(),
                (Some(_), _) => false,
            };
            same("token", "token") && same("slot-id", "slot-id")
        }
    }
}

#[cfg(feature = "aws")]
mod aws {
    use std::sync::Arc;

    use async_trait::async_trait;
    use keychain_core::{Backend, Result};

    use crate::registry::BackendFactory;

    /// `type = "aws"`: [`keychain_aws::AwsKmsBackend`] from a [`keychain_aws::Config`].
    pub(crate) struct AwsFactory;

    #[async_trait]
    impl BackendFactory for AwsFactory {
        fn backend_type(&self) -> &str {
            "aws"
        }

        fn uri_scheme(&self) -> &str {
            "awskms"
        }

        async fn open(&self, _name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
            let config: keychain_aws::Config = super::settings(settings)?;
            Ok(Arc::new(keychain_aws::AwsKmsBackend::open(config).await?))
        }
    }
}

#[cfg(feature = "vault")]
mod vault {
    use std::sync::Arc;

    use async_trait::async_trait;
    use keychain_core::{Backend, KeyUri, Result};

    use crate::registry::BackendFactory;

    /// `type = "vault"`: [`keychain_vault::TransitBackend`] from a [`keychain_vault::Config`].
    pub(crate) struct VaultFactory;

    #[async_trait]
    impl BackendFactory for VaultFactory {
        fn backend_type(&self) -> &str {
            "vault"
        }

        fn uri_scheme(&self) -> &str {
            "transit"
        }

        async fn open(&self, _name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
            let config: keychain_vault::Config = super::settings(settings)?;
            Ok(Arc::new(
                keychain_vault::TransitBackend::open(config).await?,
            ))
        }

        /// A `transit:` URI matches the backend on the mount (`mount=`, default `transit`) and
        /// server (`address=`) it names; attributes it leaves out match any.
        fn matches(&self, settings: &toml::Table, uri: &KeyUri) -> bool {
            let setting = |key: &str| settings.get(key).and_then(|v| v.as_str());
            let mount = uri.path_attr("mount").or_else(|| uri.query_attr("mount"));
            let mount_ok = mount.is_none_or(|m| {
                m.trim_matches('/') == setting("mount").unwrap_or(keychain_vault::DEFAULT_MOUNT)
            });
            let address_ok = uri.query_attr("address").is_none_or(|a| {
                setting("address")
                    .is_some_and(|have| have.trim_end_matches('/') == a.trim_end_matches('/'))
            });
            mount_ok && address_ok
        }
    }
}

#[cfg(feature = "tpm2")]
mod tpm2 {
    use std::sync::Arc;

    use async_trait::async_trait;
    use keychain_core::{Backend, KeyUri, Result};

    use crate::registry::BackendFactory;

    /// `type = "tpm2"`: [`keychain_tpm2::TpmBackend`] from a [`keychain_tpm2::Config`].
    pub(crate) struct Tpm2Factory;

    #[async_trait]
    impl BackendFactory for Tpm2Factory {
        fn backend_type(&self) -> &str {
            "tpm2"
        }

        fn uri_scheme(&self) -> &str {
            "tpm2"
        }

        async fn open(&self, _name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
            let config: keychain_tpm2::Config = super::settings(settings)?;
            Ok(Arc::new(keychain_tpm2::TpmBackend::open(config).await?))
        }

        /// A `tpm2:` URI matches the backend on the TPM (`tcti=`, default the kernel's
        /// resource manager) it names; a URI naming none matches every TPM backend.
        fn matches(&self, settings: &toml::Table, uri: &KeyUri) -> bool {
            let tcti = uri.path_attr("tcti").or_else(|| uri.query_attr("tcti"));
            tcti.is_none_or(|t| {
                t == settings
                    .get("tcti")
                    .and_then(|v| v.as_str())
                    .unwrap_or(keychain_tpm2::DEFAULT_TCTI)
            })
        }
    }
}
