//! Factories of the backends compiled into this build.

#[cfg(feature = "pkcs8")]
pub(crate) use pkcs8::Pkcs8Factory;

#[cfg(feature = "pkcs8")]
mod pkcs8 {
    use std::path::Path;
    use std::sync::Arc;

    use async_trait::async_trait;
    use keychain_core::{Backend, Error, KeyUri, Result};

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
            let config: keychain_pkcs8::Config = settings
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| Error::invalid_input(e.message().to_owned()))?;
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
