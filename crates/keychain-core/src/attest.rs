//! Key attestation: a device's signed statement that a key lives in it.

use crate::algorithm::SignatureScheme;
use crate::name::KeyVersion;
use crate::public_key::PublicKey;

/// How a [`KeyAttestation`]'s statement is laid out and signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttestationFormat {
    /// TPM 2.0 `TPM2_Certify`: `statement` is the marshalled `TPMS_ATTEST` (type
    /// `TPM_ST_ATTEST_CERTIFY`, the caller's nonce as `extraData`, the certified key's name), and
    /// `key_description` the certified key's marshalled `TPMT_PUBLIC`.
    Tpm2Certify,
}

/// A device's signed statement that a key was created in it and is bound to it, made by
/// [`crate::Backend::attest_key`] over a caller's nonce (freshness).
///
/// What it proves depends on whether the verifier trusts `attestation_key`: this type carries
/// the key but not the chain that makes it trustworthy (for a TPM: its endorsement key's
/// certificate and a credential activation). Each backend that attests offers a verifier for
/// its format that checks signature, nonce and that the statement is about the expected key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyAttestation {
    /// The format of `statement` and `key_description`.
    pub format: AttestationFormat,
    /// The signed statement.
    pub statement: Vec<u8>,
    /// The attestation key's signature over `statement` (ECDSA: DER).
    pub signature: Vec<u8>,
    /// The scheme of `signature`.
    pub signature_scheme: SignatureScheme,
    /// The public key that verifies `signature`.
    pub attestation_key: PublicKey,
    /// The attested key as the device describes it, from which a verifier recomputes what the
    /// statement names.
    pub key_description: Vec<u8>,
    /// The version of the key that was attested.
    pub key_version: KeyVersion,
}

impl KeyAttestation {
    /// Assembles an attestation (for backends).
    pub fn new(
        format: AttestationFormat,
        statement: Vec<u8>,
        signature: Vec<u8>,
        signature_scheme: SignatureScheme,
        attestation_key: PublicKey,
        key_description: Vec<u8>,
        key_version: KeyVersion,
    ) -> Self {
        Self {
            format,
            statement,
            signature,
            signature_scheme,
            attestation_key,
            key_description,
            key_version,
        }
    }
}
