//! The backends compiled into this build: one registration per cargo feature. Everything else
//! about a backend — its `type`, URI schemes, configuration, which key a URI names — is the
//! backend crate's own [`BackendConfig`](keychain_core::BackendConfig).

use crate::registry::Openers;

/// Registers every backend whose cargo feature is enabled.
pub(crate) fn register_builtin(openers: &mut Openers) {
    let _ = &openers;
    #[cfg(feature = "pkcs8")]
    openers.register_config::<keychain_pkcs8::Config>();
    #[cfg(feature = "pkcs11")]
    openers.register_config::<keychain_pkcs11::Config>();
    #[cfg(feature = "sc-hsm")]
    openers.register_config::<keychain_sc_hsm::Config>();
    #[cfg(feature = "aws")]
    openers.register_config::<keychain_aws::Config>();
    #[cfg(feature = "vault")]
    openers.register_config::<keychain_vault::Config>();
    #[cfg(feature = "tpm2")]
    openers.register_config::<keychain_tpm2::Config>();
}
