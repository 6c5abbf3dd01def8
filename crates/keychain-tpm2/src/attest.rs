//! Verifying a TPM 2.0 key attestation (`TPM2_Certify`).

use keychain_core::{
    AttestationFormat, Error, ErrorKind, KeyAttestation, PublicKey, Result, SignInput,
};
use tss_esapi::interface_types::structure_tags::AttestationType;
use tss_esapi::structures::{Attest, AttestInfo, Public};
use tss_esapi::traits::UnMarshall as _;

use crate::convert;

fn integrity(what: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Integrity, what).with_operation(keychain_core::Operation::Verify)
}

/// Checks a [`KeyAttestation`] made by [`crate::TpmBackend`]'s `attest_key`:
///
/// 1. the format is [`AttestationFormat::Tpm2Certify`];
/// 2. `signature` verifies over `statement` with `attestation_key`;
/// 3. `statement` is a TPM-generated `TPMS_ATTEST` (magic `TPM_GENERATED_VALUE`) of type
///    `TPM_ST_ATTEST_CERTIFY` whose `extraData` is `nonce`;
/// 4. the name it certifies is the name of `key_description` (nameAlg ‖ SHA-256 of the
///    `TPMT_PUBLIC`);
/// 5. that public area is `expected`'s key, and it is bound to the TPM (fixedTPM, fixedParent)
///    and was generated inside it (sensitiveDataOrigin).
///
/// What it does not check: that `attestation_key` belongs to a genuine TPM. Compare it with an
/// attestation key you trust (recorded at enrolment, or certified through the TPM's
/// endorsement key); the TPM derives the same one every time from its endorsement seed.
///
/// ```no_run
/// # async fn demo(tpm: &keychain_tpm2::TpmBackend, trusted_ak: &keychain_core::PublicKey)
/// # -> keychain_core::Result<()> {
/// use keychain_core::{Backend, KeyName, KeyRef};
/// let name = KeyName::new("device-identity")?;
/// let nonce = tpm.random(32).await?;
/// let attestation = tpm.attest_key(&KeyRef::from(&name), &nonce).await?;
/// let info = tpm.key_info(&KeyRef::from(&name)).await?;
/// keychain_tpm2::verify_attestation(&attestation, &nonce, info.public_key().unwrap())?;
/// assert_eq!(&attestation.attestation_key, trusted_ak);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidSignature`] when the signature does not verify; [`ErrorKind::Integrity`]
/// when the statement is malformed, not a certification, for another nonce or another key, or
/// the key is not bound to the TPM; [`ErrorKind::Unsupported`] for another format.
pub fn verify_attestation(
    attestation: &KeyAttestation,
    nonce: &[u8],
    expected: &PublicKey,
) -> Result<()> {
    if attestation.format != AttestationFormat::Tpm2Certify {
        return Err(Error::unsupported(format!(
            "attestation format {:?}",
            attestation.format
        )));
    }
    keychain_core::verify(
        &attestation.attestation_key,
        SignInput::message(&attestation.statement),
        attestation.signature_scheme,
        &attestation.signature,
    )?;
    let attest = Attest::unmarshall(&attestation.statement)
        .map_err(|_| integrity("the statement is not a TPM-generated TPMS_ATTEST"))?;
    if attest.attestation_type() != AttestationType::Certify {
        return Err(integrity("the statement is not a TPM2_Certify attestation"));
    }
    if attest.extra_data().value() != nonce {
        return Err(integrity("the attestation is for another nonce"));
    }
    let AttestInfo::Certify { info } = attest.attested() else {
        return Err(integrity("the statement is not a TPM2_Certify attestation"));
    };
    let public = Public::unmarshall(&attestation.key_description)
        .map_err(|_| integrity("the key description is not a TPMT_PUBLIC"))?;
    if convert::name_of(&public)? != info.name().value() {
        return Err(integrity(
            "the attestation certifies another key than the one described",
        ));
    }
    let algorithm = convert::algorithm_of(&public)
        .ok_or_else(|| integrity("the attested key is not an RSA or EC key"))?;
    if &convert::public_key(algorithm, &public)? != expected {
        return Err(integrity("the attested key is not the expected key"));
    }
    let a = public.object_attributes();
    if !(a.fixed_tpm() && a.fixed_parent() && a.sensitive_data_origin()) {
        return Err(integrity(
            "the attested key is not bound to the TPM (fixedTPM, fixedParent, sensitiveDataOrigin)",
        ));
    }
    Ok(())
}
