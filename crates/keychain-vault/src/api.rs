//! The Transit requests this backend sends, as rustify endpoints executed by vaultrs's client
//! (its token, namespace, TLS and error handling). vaultrs's own request types lack fields
//! keychain needs (the PSS salt length, a key's latest and minimum versions), so the bodies and
//! responses are written here, each with only the fields used.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use base64ct::{Base64, Encoding as _};
use keychain_core::KeyVersion;
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use rustify::errors::ClientError as RestError;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vaultrs::client::VaultClient;
use zeroize::Zeroizing;

/// One request: method, path under `/v1/`, optional JSON body; `R` is the `data` of the answer.
pub(crate) struct Call<R> {
    method: RequestMethod,
    path: String,
    /// Serialized JSON, zeroized when the call is dropped. It may carry a plaintext; the copy
    /// the HTTP client sends is not zeroized (reqwest owns it).
    body: Option<Zeroizing<Vec<u8>>>,
    _response: PhantomData<fn() -> R>,
}

impl<R> Call<R> {
    pub(crate) fn get(path: String) -> Self {
        Self {
            method: RequestMethod::GET,
            path,
            body: None,
            _response: PhantomData,
        }
    }

    pub(crate) fn list(path: String) -> Self {
        Self {
            method: RequestMethod::LIST,
            ..Self::get(path)
        }
    }

    pub(crate) fn delete(path: String) -> Self {
        Self {
            method: RequestMethod::DELETE,
            ..Self::get(path)
        }
    }

    pub(crate) fn post(path: String, body: &Value) -> Self {
        Self {
            method: RequestMethod::POST,
            path,
            body: Some(Zeroizing::new(body.to_string().into_bytes())),
            _response: PhantomData,
        }
    }
}

impl<R: DeserializeOwned + Send + Sync> Endpoint for Call<R> {
    type Response = R;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, RestError> {
        Ok(self.body.as_ref().map(|b| b.to_vec()))
    }
}

/// Runs a call whose answer has `data`.
pub(crate) async fn data<R: DeserializeOwned + Send + Sync>(
    client: &VaultClient,
    call: Call<R>,
) -> Result<R, vaultrs::error::ClientError> {
    vaultrs::api::exec_with_result(client, call).await
}

/// Runs a call whose answer is not wrapped in `data` (`sys/seal-status`).
pub(crate) async fn raw<R: DeserializeOwned + Send + Sync>(
    client: &VaultClient,
    call: Call<R>,
) -> Result<R, vaultrs::error::ClientError> {
    vaultrs::api::exec_with_no_result(client, call).await
}

/// Runs a call whose answer may be empty (204) or carry data that is not needed.
pub(crate) async fn empty(
    client: &VaultClient,
    call: Call<Value>,
) -> Result<(), vaultrs::error::ClientError> {
    vaultrs::api::exec_with_empty(client, call).await
}

/// `GET <mount>/keys/<name>`: the fields of a Transit key this backend reads.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyData {
    #[serde(rename = "type")]
    pub(crate) key_type: String,
    #[serde(default)]
    pub(crate) exportable: bool,
    #[serde(default)]
    pub(crate) deletion_allowed: bool,
    #[serde(default)]
    pub(crate) latest_version: u32,
    #[serde(default)]
    pub(crate) min_decryption_version: u32,
    #[serde(default)]
    pub(crate) min_available_version: u32,
    /// Version → creation time (Unix seconds) for symmetric keys, or → public key entry.
    pub(crate) keys: BTreeMap<String, KeyVersionData>,
}

/// One version in [`KeyData::keys`].
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum KeyVersionData {
    /// Symmetric keys: the creation time in Unix seconds.
    Created(u64),
    /// Asymmetric keys.
    Public {
        #[serde(default)]
        creation_time: Option<String>,
        /// PEM (`-----BEGIN PUBLIC KEY-----`) for RSA/ECDSA, base64 raw key for Ed25519.
        #[serde(default)]
        public_key: Option<String>,
    },
}

/// `LIST <mount>/keys`.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyList {
    #[serde(default)]
    pub(crate) keys: Vec<String>,
}

/// `POST <mount>/sign/<name>`.
#[derive(Debug, Deserialize)]
pub(crate) struct Signed {
    pub(crate) signature: String,
}

/// `POST <mount>/encrypt/<name>`.
#[derive(Debug, Deserialize)]
pub(crate) struct Encrypted {
    pub(crate) ciphertext: String,
}

/// `POST <mount>/decrypt/<name>`; zeroized on drop.
#[derive(Deserialize)]
pub(crate) struct Decrypted {
    #[serde(deserialize_with = "zeroizing")]
    pub(crate) plaintext: Zeroizing<String>,
}

fn zeroizing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// `GET <mount>/export/<type>/<name>/<version>`: version → key text; zeroized on drop.
#[derive(Deserialize)]
pub(crate) struct Exported {
    pub(crate) keys: BTreeMap<String, SecretText>,
}

/// A secret string of an answer, zeroized on drop.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct SecretText(#[serde(deserialize_with = "zeroizing")] pub(crate) Zeroizing<String>);

/// `GET <mount>/wrapping_key`: the mount's RSA-4096 import key.
#[derive(Debug, Deserialize)]
pub(crate) struct WrappingKey {
    pub(crate) public_key: String,
}

/// `POST sys/tools/random/<n>`.
#[derive(Debug, Deserialize)]
pub(crate) struct RandomBytes {
    pub(crate) random_bytes: String,
}

/// `GET <mount>/config/keys`.
#[derive(Debug, Deserialize)]
pub(crate) struct KeysConfig {
    #[serde(default)]
    pub(crate) disable_upsert: bool,
}

/// `GET sys/seal-status` (answers while sealed).
#[derive(Debug, Deserialize)]
pub(crate) struct SealStatus {
    pub(crate) sealed: bool,
    #[serde(default)]
    pub(crate) version: Option<String>,
    #[serde(default)]
    pub(crate) cluster_name: Option<String>,
}

/// Splits Transit's `vault:v<N>:<base64>` (a ciphertext or signature) into the version and the
/// bytes.
pub(crate) fn parse_transit(text: &str) -> Option<(KeyVersion, Vec<u8>)> {
    let rest = text.strip_prefix("vault:v")?;
    let (version, b64) = rest.split_once(':')?;
    if version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version: KeyVersion = version.parse().ok()?;
    let bytes = Base64::decode_vec(b64).ok()?;
    Some((version, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transit_text() {
        assert_eq!(
            parse_transit("vault:v12:3q0="),
            Some((12, vec![0xde, 0xad]))
        );
        for bad in [
            "vault:v0:AA==",
            "vault:v01:AA==",
            "vault:v:AA==",
            "vault:vx:AA==",
            "v1:AA==",
            "vault:v1:*",
        ] {
            assert_eq!(parse_transit(bad), None, "{bad}");
        }
    }
}
