//! Certificates on the token: `CKO_CERTIFICATE` objects (`CKC_X_509`) labelled with the key's
//! name, the leaf with the `CKA_ID` of the key's current version (so that other PKCS#11 software
//! pairs certificate and key), chain certificates with that ID followed by their position.
//! [`Pkcs11Backend`]'s [`CertStore`] runs these on the pool.

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::{Decode as _, Encode as _};
use keychain_core::{
    CertCapacity, CertStore, Error, ErrorKind, KeyName, Operation, Result, async_trait,
};

use crate::backend::Pkcs11Backend;
use crate::error::{in_op, map};
use crate::naming::{self, ID_LEN};
use crate::objects;
use crate::pool::Call;

/// A certificate object of keychain's: its handle, the key name it is stored under, its
/// position in the chain (0 = leaf) and its `CKA_ID`.
pub(crate) struct CertObject {
    pub(crate) handle: ObjectHandle,
    pub(crate) name: KeyName,
    pub(crate) position: u8,
}

/// The position a `CKA_ID` says: the bare ID (16 bytes) is the leaf, ID ‖ n is chain member n.
fn position_of(id: &[u8]) -> Option<u8> {
    match id.len() {
        ID_LEN => Some(0),
        n if n == ID_LEN + 1 && id[ID_LEN] > 0 => Some(id[ID_LEN]),
        _ => None,
    }
}

/// Every keychain certificate object (of `name`, when given).
pub(crate) fn find(session: &Session, name: Option<&KeyName>) -> Result<Vec<CertObject>> {
    let mut template = vec![
        Attribute::Token(true),
        Attribute::Class(ObjectClass::CERTIFICATE),
    ];
    if let Some(name) = name {
        template.push(Attribute::Label(name.as_str().as_bytes().to_vec()));
    }
    let mut out = Vec::new();
    for handle in session.find_objects(&template).map_err(map)? {
        let Some(attrs) =
            objects::attributes(session, handle, &[AttributeType::Label, AttributeType::Id])?
        else {
            continue;
        };
        let (Some(label), Some(id)) = (
            objects::attr_bytes(&attrs, AttributeType::Label),
            objects::attr_bytes(&attrs, AttributeType::Id),
        ) else {
            continue;
        };
        let (Some(name), Some(position)) = (
            std::str::from_utf8(label)
                .ok()
                .and_then(|l| KeyName::new(l).ok()),
            position_of(id),
        ) else {
            continue;
        };
        out.push(CertObject {
            handle,
            name,
            position,
        });
    }
    out.sort_by(|a, b| (&a.name, a.position).cmp(&(&b.name, b.position)));
    Ok(out)
}

/// The chain of `name`, leaf first.
pub(crate) fn chain(session: &Session, name: &KeyName) -> Result<Vec<Vec<u8>>> {
    let mut chain = Vec::new();
    for cert in find(session, Some(name))? {
        if let Some(attrs) = objects::attributes(session, cert.handle, &[AttributeType::Value])?
            && let Some(der) = objects::attr_bytes(&attrs, AttributeType::Value)
        {
            chain.push(der.to_vec());
        }
    }
    if chain.is_empty() {
        return Err(Error::not_found(format!(
            "no certificate stored for {name}"
        )));
    }
    Ok(chain)
}

/// The attributes PKCS#11 wants of an X.509 certificate object, from its DER.
fn template(name: &KeyName, id: Vec<u8>, der: &[u8]) -> Result<Vec<Attribute>> {
    let bad = |e: der::Error| Error::invalid_input(format!("not a DER X.509 certificate: {e}"));
    let cert = x509_cert::Certificate::from_der(der).map_err(bad)?;
    let tbs = cert.tbs_certificate();
    Ok(vec![
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Modifiable(true),
        Attribute::Label(name.as_str().as_bytes().to_vec()),
        Attribute::Id(id),
        Attribute::Subject(tbs.subject().to_der().map_err(bad)?),
        Attribute::Issuer(tbs.issuer().to_der().map_err(bad)?),
        Attribute::SerialNumber(tbs.serial_number().to_der().map_err(bad)?),
        Attribute::Value(der.to_vec()),
    ])
}

/// Stores `chain` for `name`: new objects first, then the old ones destroyed, so a failure
/// leaves the previous chain. `max` is the configured certificate limit.
pub(crate) fn save(
    session: &Session,
    name: &KeyName,
    chain: &[Vec<u8>],
    max: Option<usize>,
) -> Result<()> {
    if chain.is_empty() {
        return Err(Error::invalid_input(
            "a certificate chain has at least one certificate",
        ));
    }
    if chain.len() > usize::from(u8::MAX) {
        return Err(Error::invalid_input(
            "a chain of more than 255 certificates",
        ));
    }
    let old = find(session, Some(name))?;
    if let Some(max) = max {
        let stored = find(session, None)?.len();
        if stored - old.len() + chain.len() > max {
            return Err(Error::new(
                ErrorKind::CapacityExceeded,
                format!(
                    "the token holds {stored} of at most {max} certificates; {} more do not fit",
                    chain.len()
                ),
            ));
        }
    }
    // Parse everything before writing anything.
    let leaf_id = leaf_id(session, name)?;
    let mut templates = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let mut id = leaf_id.clone();
        if i > 0 {
            id.push(u8::try_from(i).unwrap_or(u8::MAX));
        }
        templates.push(template(name, id, der)?);
    }
    let mut created = Vec::with_capacity(templates.len());
    for t in &templates {
        match session.create_object(t).map_err(map) {
            Ok(h) => created.push(h),
            Err(e) => {
                for h in created {
                    let _ = session.destroy_object(h);
                }
                return Err(e);
            }
        }
    }
    for cert in old {
        session.destroy_object(cert.handle).map_err(map)?;
    }
    Ok(())
}

/// The `CKA_ID` of the leaf: the current version's ID of the key `name` when it is on this
/// token, else a random one (version 0, so it never passes for a key's).
fn leaf_id(session: &Session, name: &KeyName) -> Result<Vec<u8>> {
    if let Some(entry) = objects::load(session, name)?
        && let Some(attrs) =
            objects::attributes(session, entry.current().key, &[AttributeType::Id])?
        && let Some(id) = objects::attr_bytes(&attrs, AttributeType::Id)
        && id.len() == ID_LEN
    {
        return Ok(id.to_vec());
    }
    let random = session.generate_random_vec(12).map_err(map)?;
    Ok(naming::make_id(0, &random))
}

/// Destroys the chain of `name`.
pub(crate) fn delete(session: &Session, name: &KeyName) -> Result<()> {
    let found = find(session, Some(name))?;
    if found.is_empty() {
        return Err(Error::not_found(format!(
            "no certificate stored for {name}"
        )));
    }
    for cert in found {
        session.destroy_object(cert.handle).map_err(map)?;
    }
    Ok(())
}

/// Certificates as `CKO_CERTIFICATE` objects (see the crate docs): the store
/// `keychain-certstore`'s hybrid store puts first.
#[async_trait]
impl CertStore for Pkcs11Backend {
    async fn save_chain(&self, name: &KeyName, chain: &[Vec<u8>]) -> Result<()> {
        let op = Operation::SaveChain;
        let (name2, chain, max) = (name.clone(), chain.to_vec(), self.inner.max_certificates);
        self.inner
            .pool
            .run_exclusive(op, move |s| save(s, &name2, &chain, max))
            .await
            .map_err(in_op(op, Some(name)))
    }

    async fn chain(&self, name: &KeyName) -> Result<Vec<Vec<u8>>> {
        let op = Operation::GetChain;
        let name2 = name.clone();
        self.inner
            .pool
            .run(op, Call::Read, move |s| chain(s, &name2))
            .await
            .map_err(in_op(op, Some(name)))
    }

    async fn delete_chain(&self, name: &KeyName) -> Result<()> {
        let op = Operation::DeleteChain;
        let name2 = name.clone();
        self.inner
            .pool
            .run_exclusive(op, move |s| delete(s, &name2))
            .await
            .map_err(in_op(op, Some(name)))
    }

    async fn list_chains(&self) -> Result<Vec<KeyName>> {
        let op = Operation::ListChains;
        self.inner
            .pool
            .run(op, Call::OffThread, |s| {
                let mut names: Vec<KeyName> = find(s, None)?.into_iter().map(|c| c.name).collect();
                names.dedup();
                Ok(names)
            })
            .await
            .map_err(in_op(op, None))
    }

    async fn capacity(&self) -> Result<CertCapacity> {
        let op = Operation::CertCapacity;
        let inner = Arc::clone(&self.inner);
        self.inner
            .pool
            .run(op, Call::OffThread, move |s| {
                let stored = find(s, None)?.len();
                let free = inner
                    .pool
                    .ctx()
                    .get_token_info(inner.pool.slot())
                    .map_err(map)?
                    .free_public_memory()
                    .and_then(|b| u64::try_from(b).ok());
                Ok(CertCapacity::new(stored, inner.max_certificates, free))
            })
            .await
            .map_err(in_op(op, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_from_ids() {
        let id = naming::make_id(2, &[7; 12]);
        assert_eq!(position_of(&id), Some(0));
        let mut second = id.clone();
        second.push(1);
        assert_eq!(position_of(&second), Some(1));
        let mut zero = id.clone();
        zero.push(0);
        assert_eq!(position_of(&zero), None);
        assert_eq!(position_of(b"short"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let name = KeyName::new("x").unwrap_or_else(|e| panic!("{e}"));
        let err = template(&name, vec![0; 16], b"\x30\x03abc").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
