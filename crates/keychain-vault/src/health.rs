//! `health`: whether the server is sealed, and whether the mount answers.

use keychain_core::{Health, HealthStatus, Result};

use crate::api::{self, Call};
use crate::backend::VaultBackend;
use crate::error::map;

impl VaultBackend {
    pub(crate) async fn health_inner(&self) -> Result<Health> {
        let current = self.session.client().await?;
        let status: api::SealStatus =
            api::raw(&current.client, Call::get("sys/seal-status".into()))
                .await
                .map_err(map)?;
        let mut health = Health::ok().with_detail("auth", self.session.method());
        if let Some(v) = status.version {
            health = health.with_detail("version", v);
        }
        if let Some(c) = status.cluster_name {
            health = health.with_detail("cluster", c);
        }
        if status.sealed {
            health.status = HealthStatus::Unavailable;
            return Ok(health.with_detail("sealed", "true"));
        }
        // The mount answers (and the token may read it), and whether Transit's encrypt creates
        // missing keys ("upsert") — which it should not for applications (see the crate docs).
        match api::data::<api::KeysConfig>(
            &current.client,
            Call::get(format!("{}/config/keys", self.mount)),
        )
        .await
        .map_err(map)
        {
            Ok(config) => {
                Ok(health.with_detail("disable-upsert", config.disable_upsert.to_string()))
            }
            Err(e) => {
                health.status = HealthStatus::Degraded;
                Ok(health.with_detail("transit", e.to_string()))
            }
        }
    }
}
