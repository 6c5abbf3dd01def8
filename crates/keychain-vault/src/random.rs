//! Random bytes from `sys/tools/random`.

use base64ct::{Base64, Encoding as _};
use keychain_core::Result;
use serde_json::json;

use crate::api;
use crate::backend::VaultBackend;
use crate::error::unexpected;

impl VaultBackend {
    /// Up to [`keychain_core::Capabilities::max_random`] bytes.
    pub(crate) async fn random_inner(&self, len: usize) -> Result<Vec<u8>> {
        self.caps.check_random(len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let random: api::RandomBytes = self
            .post(
                format!("sys/tools/random/{len}"),
                &json!({ "format": "base64" }),
            )
            .await?;
        let bytes = Base64::decode_vec(&random.random_bytes)
            .map_err(|_| unexpected("sys/tools/random returned bytes that are not base64"))?;
        if bytes.len() != len {
            return Err(unexpected(format!(
                "sys/tools/random returned {} bytes, asked for {len}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}
