//! The logged-in client: builds vaultrs clients from the configuration, logs in (token, AppRole,
//! Kubernetes) and renews the token before it expires.
//!
//! Renewal is lazy: every call asks [`Session::client`], which renews (or logs in again) once
//! two thirds of the token's TTL have passed. No background task runs, so nothing outlives the
//! backend.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use keychain_core::{Error, ErrorKind, Operation, Result, SecretSource, SecretString};
use tokio::sync::Mutex as AsyncMutex;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use zeroize::Zeroizing;

use crate::config::{Auth, Config};
use crate::error::{BACKEND, map};

/// What the client is built from, minus the token.
pub(crate) struct Settings {
    address: String,
    namespace: Option<String>,
    ca_bundle: Option<String>,
    identity: Option<reqwest::Identity>,
    verify: bool,
    timeout: Duration,
}

/// How the backend logs in. Login credentials stay sources and are resolved at every login, so
/// a rotated secret-id file or projected service-account token is read afresh.
enum Login {
    /// A token, resolved once at open.
    Token(SecretString),
    AppRole {
        mount: String,
        role_id: SecretSource,
        secret_id: SecretSource,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt: SecretSource,
    },
}

/// A client with a token, and when to renew it.
pub(crate) struct Current {
    pub(crate) client: VaultClient,
    /// The token (for login methods: to rebuild the client after a renewal).
    token: Zeroizing<String>,
    /// `None`: the token does not expire, or cannot be renewed.
    renew_at: Option<Instant>,
    /// The TTL the last login granted (for a configured token: its TTL at open), in seconds.
    /// A renewal that grants less than half of it means the token nears its max TTL.
    lease: u64,
    /// When the token expires, as of the last login or renewal; `None` when unknown or never.
    expires_at: Option<Instant>,
}

/// When a token granted `ttl_secs` now expires.
fn expiry(ttl_secs: u64) -> Option<Instant> {
    (ttl_secs > 0).then(|| Instant::now() + Duration::from_secs(ttl_secs))
}

pub(crate) struct Session {
    settings: Settings,
    login: Login,
    current: RwLock<Arc<Current>>,
    refresh: AsyncMutex<()>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // vaultrs's settings derive Debug with the token in them: never print them.
        f.debug_struct("Session")
            .field("address", &self.settings.address)
            .field("namespace", &self.settings.namespace)
            .field("auth", &self.method())
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn open_err(e: Error) -> Error {
    e.with_backend(BACKEND).with_operation(Operation::Open)
}

/// How long to wait before renewing again after the server could not be reached.
const RETRY_RENEWAL: Duration = Duration::from_secs(5);

/// When to renew a token with `ttl` left: after two thirds of it.
fn renew_time(ttl_secs: u64) -> Option<Instant> {
    (ttl_secs > 0).then(|| Instant::now() + Duration::from_secs(ttl_secs.saturating_mul(2) / 3))
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path).map(Zeroizing::new).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::PermissionDenied
        };
        Error::new(kind, format!("cannot read {what} {}: {e}", path.display()))
    })
}

/// A refused login is `Unauthenticated` (Vault answers bad credentials with 400 or 403);
/// an unreachable server keeps its retryable kind.
fn login_failed(e: Error, method: &str) -> Error {
    if matches!(
        e.kind(),
        ErrorKind::InvalidInput | ErrorKind::PermissionDenied | ErrorKind::NotFound
    ) {
        let mut err = Error::new(
            ErrorKind::Unauthenticated,
            format!("{method} login refused: {}", e.message()),
        )
        .with_backend(BACKEND);
        if let Some(code) = e.provider_code() {
            err = err.with_code(code.clone());
        }
        err
    } else {
        e.with_context(format_args!("{method} login failed"))
    }
}

impl Settings {
    pub(crate) fn from_config(config: &Config) -> Result<Self> {
        let identity = match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert, "client certificate")?;
                pem.push(b'\n');
                pem.extend_from_slice(&read_file(key, "client key")?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    Error::invalid_input(format!(
                        "client-cert/client-key are not a PEM certificate and key: {e}"
                    ))
                })?)
            }
            _ => None,
        };
        let ca_bundle = config
            .ca_bundle
            .as_ref()
            .map(|p| {
                p.to_str().map(str::to_owned).ok_or_else(|| {
                    Error::invalid_input(format!("ca-bundle path {} is not UTF-8", p.display()))
                })
            })
            .transpose()?;
        if config.danger_accept_invalid_certs {
            tracing::warn!(
                target: "keychain::vault",
                address = %config.address,
                "TLS certificate verification is OFF (danger-accept-invalid-certs): \
                 development only"
            );
        }
        Ok(Self {
            address: config.address.clone(),
            namespace: config.namespace.clone(),
            ca_bundle,
            identity,
            verify: !config.danger_accept_invalid_certs,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    /// A client with `token`. Every setting is given explicitly, so vaultrs never falls back to
    /// `VAULT_*` environment variables.
    fn client(&self, token: &str) -> Result<VaultClient> {
        let mut b = VaultClientSettingsBuilder::default();
        // The address was validated as a URL by Config::validate, so this setter cannot panic.
        b.address(&self.address)
            .token(token)
            .verify(self.verify)
            .ca_certs(self.ca_bundle.iter().cloned().collect::<Vec<_>>())
            .identity(self.identity.clone())
            .timeout(Some(self.timeout))
            .namespace(self.namespace.clone());
        let settings = b.build().map_err(|e| {
            Error::invalid_input(format!("invalid Vault client settings: {e}"))
                .with_backend(BACKEND)
        })?;
        VaultClient::new(settings).map_err(map)
    }
}

impl Session {
    /// Resolves the credentials and logs in. With a token, looks it up to learn its TTL (a token
    /// the server refuses fails here; an unreachable server does not: the first call retries).
    pub(crate) async fn open(settings: Settings, auth: Auth) -> Result<Self> {
        let login = match auth {
            Auth::Token { token } => Login::Token(token.resolve("Vault token").map_err(open_err)?),
            Auth::AppRole {
                role_id,
                secret_id,
                mount,
            } => Login::AppRole {
                mount,
                role_id,
                secret_id,
            },
            Auth::Kubernetes { role, jwt, mount } => Login::Kubernetes { mount, role, jwt },
        };
        let current = match &login {
            Login::Token(token) => {
                let client = settings.client(token.expose()).map_err(open_err)?;
                let (renew_at, lease) = match vaultrs::token::lookup_self(&client).await {
                    Ok(info) if info.renewable == Some(true) => (renew_time(info.ttl), info.ttl),
                    Ok(info) => (None, info.ttl),
                    Err(e) => {
                        let e = map(e);
                        if e.retryable() {
                            // Not reachable now: look again on the first call.
                            (Some(Instant::now()), 0)
                        } else if matches!(
                            e.kind(),
                            ErrorKind::PermissionDenied | ErrorKind::Unauthenticated
                        ) {
                            return Err(open_err(e.with_context("the token was refused")));
                        } else {
                            return Err(open_err(e));
                        }
                    }
                };
                Current {
                    client,
                    token: Zeroizing::new(token.expose().to_owned()),
                    renew_at,
                    lease,
                    expires_at: expiry(lease),
                }
            }
            _ => Self::log_in(&settings, &login).await.map_err(open_err)?,
        };
        Ok(Self {
            settings,
            login,
            current: RwLock::new(Arc::new(current)),
            refresh: AsyncMutex::new(()),
        })
    }

    pub(crate) fn method(&self) -> &'static str {
        match self.login {
            Login::Token(_) => "token",
            Login::AppRole { .. } => "approle",
            Login::Kubernetes { .. } => "kubernetes",
        }
    }

    /// Whether the token is this backend's own (from a login), so it may revoke it on close.
    pub(crate) fn owns_token(&self) -> bool {
        !matches!(self.login, Login::Token(_))
    }

    /// Logs in with AppRole or Kubernetes credentials, resolving them now.
    async fn log_in(settings: &Settings, login: &Login) -> Result<Current> {
        let anonymous = settings.client("")?;
        let auth = match login {
            Login::Token(_) => {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    "token auth does not log in",
                ));
            }
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let role_id = role_id.resolve("AppRole role id")?;
                let secret_id = secret_id.resolve("AppRole secret id")?;
                vaultrs::auth::approle::login(
                    &anonymous,
                    mount,
                    role_id.expose(),
                    secret_id.expose(),
                )
                .await
                .map_err(|e| login_failed(map(e), "AppRole"))?
            }
            Login::Kubernetes { mount, role, jwt } => {
                let jwt = jwt.resolve("Kubernetes service-account token")?;
                vaultrs::auth::kubernetes::login(&anonymous, mount, role, jwt.expose())
                    .await
                    .map_err(|e| login_failed(map(e), "Kubernetes"))?
            }
        };
        let token = Zeroizing::new(auth.client_token);
        let client = settings.client(&token)?;
        Ok(Current {
            client,
            token,
            renew_at: renew_time(auth.lease_duration),
            lease: auth.lease_duration,
            expires_at: expiry(auth.lease_duration),
        })
    }

    fn snapshot(&self) -> Arc<Current> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The client to send a request with, renewing the token first when it is due.
    pub(crate) async fn client(&self) -> Result<Arc<Current>> {
        let current = self.snapshot();
        match current.renew_at {
            Some(at) if Instant::now() >= at => {}
            _ => return Ok(current),
        }
        let _guard = self.refresh.lock().await;
        let current = self.snapshot();
        match current.renew_at {
            Some(at) if Instant::now() >= at => {}
            _ => return Ok(current),
        }
        let next = self.renew(&current).await?;
        let next = Arc::new(next);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&next);
        Ok(next)
    }

    /// Renews the token. With a login method, logs in again when the server refuses the
    /// renewal, grants less than half the TTL of the last login (the token nears its max TTL),
    /// or cannot be reached while the token would expire before the next try; the replaced
    /// token is revoked. Otherwise an unreachable server, or a login that fails, keeps the
    /// token and tries again 5 s later. A static token that cannot be renewed is used until the
    /// server refuses it.
    async fn renew(&self, current: &Current) -> Result<Current> {
        let keep = |renew_at: Option<Instant>, expires_at: Option<Instant>| -> Result<Current> {
            Ok(Current {
                client: self.settings.client(&current.token)?,
                token: current.token.clone(),
                renew_at,
                lease: current.lease,
                expires_at,
            })
        };
        let retry_at = Instant::now() + RETRY_RENEWAL;
        let renewed = vaultrs::token::renew_self(&current.client, None).await;
        match renewed {
            Ok(auth) if matches!(self.login, Login::Token(_)) => {
                return keep(renew_time(auth.lease_duration), expiry(auth.lease_duration));
            }
            Ok(auth) if auth.lease_duration.saturating_mul(2) >= current.lease => {
                return keep(renew_time(auth.lease_duration), expiry(auth.lease_duration));
            }
            // Less than half the login's TTL: the token nears its max TTL.
            Ok(_) => {}
            Err(e) => {
                let e = map(e);
                let lasts = current.expires_at.is_none_or(|at| at > retry_at);
                if matches!(self.login, Login::Token(_)) {
                    if e.retryable() {
                        return keep(Some(retry_at), current.expires_at);
                    }
                    tracing::warn!(
                        target: "keychain::vault",
                        error = %e,
                        "the Vault token could not be renewed; using it until it expires"
                    );
                    return keep(None, current.expires_at);
                }
                // A login method: keep the token only if it outlives the next try (OpenBao
                // answers 500 to renewing a token in its last moment).
                if e.retryable() && lasts {
                    return keep(Some(retry_at), current.expires_at);
                }
            }
        }
        match Self::log_in(&self.settings, &self.login).await {
            Ok(next) => {
                // The replaced token was this backend's own: nobody else will use it.
                let _ = vaultrs::token::revoke_self(&current.client).await;
                Ok(next)
            }
            // The old token may still work for a while: keep it and try again later (a refused
            // login is logged; calls fail on their own once the token is gone).
            Err(e) => {
                if !e.retryable() {
                    tracing::warn!(
                        target: "keychain::vault",
                        error = %e,
                        "logging in again failed; using the current token while it lasts"
                    );
                }
                keep(Some(retry_at), current.expires_at)
            }
        }
    }
}
