//! Random bytes from KMS `GenerateRandom`.

use aws_sdk_kms::primitives::Blob;
use keychain_core::{Error, Result};

use crate::backend::AwsBackend;
use crate::error::{map, unexpected};

impl AwsBackend {
    /// Up to [`keychain_core::Capabilities::max_random`] bytes.
    pub(crate) async fn random_inner(&self, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.caps.check_random(len)?;
        let n = i32::try_from(len).map_err(|_| Error::invalid_input("length"))?;
        let out = self
            .client
            .generate_random()
            .number_of_bytes(n)
            .send()
            .await
            .map_err(map)?;
        let bytes = out
            .plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| unexpected("GenerateRandom returned no bytes"))?;
        if bytes.len() != len {
            return Err(unexpected(format!(
                "GenerateRandom returned {} bytes, not {len}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}
