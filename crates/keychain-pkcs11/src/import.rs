//! Keys entering the token: `import_key` (`C_CreateObject` from material), and
//! `import_wrapped` from a password export or unwrapped by an AES key of the token
//! (`C_UnwrapKey`).

use std::sync::Arc;

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use keychain_core::{
    Error, ErrorKind, ImportSpec, KeyInfo, KeyMaterial, KeyName, KeyRef, KeyUsages, Operation,
    Result, SignInput, WrapFormat, WrappedKey, WrappingSpec,
};
use keychain_crypto::pkcs8::Plain;

use crate::backend::{Inner, Pkcs11Backend};
use crate::error::{map, rv_in};
use crate::naming;
use crate::objects::{self, KeyEntry};

impl Inner {
    /// Creates version 1 of `name` from imported material (`plain`: PKCS#8 DER or the raw AES
    /// key) and returns the key as now stored. Private and secret key first: on failure, nothing
    /// that makes a key is left.
    fn import(
        &self,
        session: &Session,
        name: &KeyName,
        plain: &Plain,
        usages: KeyUsages,
        exportable: bool,
    ) -> Result<Arc<KeyEntry>> {
        let random = session.generate_random_vec(12).map_err(map)?;
        let id = naming::make_id(1, &random);
        let (public, mut key) = objects::import_templates(
            name,
            &id,
            plain.algorithm,
            plain.material.expose(),
            usages,
            exportable,
        )?;
        let created = session.create_object(&key).map_err(map);
        objects::scrub(&mut key);
        let private = created?;
        if let Some(public) = public
            && let Err(e) = session.create_object(&public).map_err(map)
        {
            let _ = session.destroy_object(private);
            return Err(e);
        }
        self.reload(session, name)
    }

    /// `import_wrapped` under a key of the token: `C_UnwrapKey`, then the public key object from
    /// the `WrappedKey`'s public key once it is shown to belong to the unwrapped private key.
    fn unwrap_under(
        &self,
        s: &Session,
        name: &KeyName,
        wrapped: &WrappedKey,
        kek: &KeyRef,
        usages: KeyUsages,
        exportable: bool,
    ) -> Result<Arc<KeyEntry>> {
        let wrapping = self.kek(s, kek)?;
        let random = s.generate_random_vec(12).map_err(map)?;
        let id = naming::make_id(1, &random);
        let (public, template) = objects::unwrap_templates(
            name,
            &id,
            wrapped.algorithm,
            usages,
            exportable,
            wrapped.public_key.as_deref(),
        )?;
        let private = s
            .unwrap_key(
                &Mechanism::AesKeyWrapPad,
                wrapping,
                &wrapped.bytes,
                &template,
            )
            .map_err(map)
            .map_err(|e| match rv_in(&e) {
                // SoftHSM 2.6 reports a failed RFC 5649 integrity check as CKR_GENERAL_ERROR.
                Some(
                    RvError::WrappedKeyInvalid
                    | RvError::WrappedKeyLenRange
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                ) => Error::new(
                    ErrorKind::Integrity,
                    format!("the wrapped key does not unwrap under {}", kek.name()),
                )
                .with_source(e),
                _ => e,
            })?;
        let mut made = vec![private];
        let result = (|| {
            if wrapped.algorithm.is_symmetric() {
                let attrs = s
                    .get_attributes(private, &[AttributeType::ValueLen])
                    .map_err(map)?;
                let len = attrs.iter().find_map(|a| match a {
                    Attribute::ValueLen(l) => Some(u64::from(*l)),
                    _ => None,
                });
                if len.is_none_or(|l| l == 0) {
                    // SoftHSM 2.6: CKA_VALUE_LEN stays unset after C_UnwrapKey (and may not be
                    // given in the template), so the key's size could never be read back.
                    return Err(Error::unsupported(
                        "this token does not record the length of an unwrapped AES key \
                         (CKA_VALUE_LEN); use WrappingSpec::Password for AES keys",
                    ));
                }
            }
            if let Some(public) = &public {
                self.check_pair(s, private, wrapped)?;
                made.push(s.create_object(public).map_err(map)?);
            }
            let entry = self.reload(s, name)?;
            if entry.algorithm != wrapped.algorithm {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "the token unwrapped a {} key for a {} key",
                        entry.algorithm, wrapped.algorithm
                    ),
                ));
            }
            Ok(entry)
        })();
        if result.is_err() {
            for h in made {
                let _ = s.destroy_object(h);
            }
            self.forget(name);
        }
        result
    }

    /// That the public key a `WrappedKey` carries belongs to the unwrapped private key: the RSA
    /// modulus compared, an EC/Ed25519 key's signature verified.
    fn check_pair(&self, s: &Session, private: ObjectHandle, wrapped: &WrappedKey) -> Result<()> {
        let spki = wrapped.public_key.as_deref().unwrap_or_default();
        let public = keychain_core::PublicKey::from_der(spki)?;
        let mismatch = || {
            Error::new(
                ErrorKind::Integrity,
                "the wrapped key's public key does not belong to the wrapped private key",
            )
        };
        let algorithm = wrapped.algorithm;
        let Some(scheme) = algorithm.default_scheme() else {
            return Ok(());
        };
        if algorithm.is_rsa() {
            let attrs = s
                .get_attributes(private, &[AttributeType::Modulus])
                .map_err(map)?;
            let modulus = objects::attr_bytes(&attrs, AttributeType::Modulus).unwrap_or_default();
            let spki_ref = spki::SubjectPublicKeyInfoRef::try_from(spki)
                .map_err(|e| Error::invalid_input(format!("malformed public key: {e}")))?;
            let rsa = <pkcs1::RsaPublicKey<der::asn1::UintRef<'_>> as der::Decode<'_>>::from_der(
                spki_ref.subject_public_key.raw_bytes(),
            )
            .map_err(|e| Error::invalid_input(format!("malformed RSA public key: {e}")))?;
            let strip = |b: &[u8]| {
                let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                b[first..].to_vec()
            };
            return if strip(modulus) == strip(rsa.modulus.as_bytes()) {
                Ok(())
            } else {
                Err(mismatch())
            };
        }
        let probe = b"keychain: does this public key belong to the unwrapped key?";
        let data = match scheme.hash() {
            Some(h) => h.digest(probe),
            None => probe.to_vec(),
        };
        let signature = self.sign_raw(s, private, algorithm, scheme, &data)?;
        keychain_core::verify(&public, SignInput::message(probe), scheme, &signature)
            .map_err(|_| mismatch())
    }
}

impl Pkcs11Backend {
    /// `import_key`.
    pub(crate) async fn import(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let plain = keychain_crypto::pkcs8::from_material(&material, spec.algorithm)?;
        drop(material);
        self.import_plain(Operation::ImportKey, name, plain, spec)
            .await
    }

    /// `import_wrapped`: a password export opened here, or a key unwrapped by the token.
    pub(crate) async fn import_exported(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let password = match unwrap_with {
            WrappingSpec::Password(password) => password,
            WrappingSpec::Key(kek) => return self.import_under(name, wrapped, kek, spec).await,
            _ => return Err(Error::unsupported("this wrapping spec")),
        };
        let (wrapped2, pw, want) = (wrapped.clone(), password.duplicate(), spec.algorithm);
        let plain = tokio::task::spawn_blocking(move || {
            keychain_crypto::pkcs8::open_password_export(&wrapped2, pw.expose().as_bytes(), want)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("import task failed: {e}")))??;
        self.import_plain(Operation::ImportWrapped, name, plain, spec)
            .await
    }

    /// `import_wrapped` with `WrappingSpec::Key`.
    async fn import_under(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        kek: &KeyRef,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        if wrapped.format != WrapFormat::AesKeyWrapPad {
            return Err(Error::invalid_input(format!(
                "a key wrapped as {:?} does not unwrap under a token key (AES key wrap with \
                 padding)",
                wrapped.format
            )));
        }
        let algorithm = spec.algorithm.unwrap_or(wrapped.algorithm);
        if algorithm != wrapped.algorithm {
            return Err(Error::invalid_input(format!(
                "the wrapped key is a {} key, expected {algorithm}",
                wrapped.algorithm
            )));
        }
        let (wrapped, kek) = (wrapped.clone(), kek.clone());
        self.create_fresh(
            Operation::ImportWrapped,
            name,
            algorithm,
            spec,
            move |inner, s, name, usages, exportable| {
                inner.unwrap_under(s, name, &wrapped, &kek, usages, exportable)
            },
        )
        .await
    }

    /// Imports `plain` as the new key `name` (shared by `import_key` and `import_wrapped`).
    async fn import_plain(
        &self,
        op: Operation,
        name: &KeyName,
        plain: Plain,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let algorithm = plain.algorithm;
        self.create_fresh(
            op,
            name,
            algorithm,
            spec,
            move |inner, s, name, usages, exportable| {
                inner.import(s, name, &plain, usages, exportable)
            },
        )
        .await
    }
}
