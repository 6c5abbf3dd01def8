//! The DER file `sc-hsm-tool --wrap-key` writes and `--unwrap-key` reads.

use der::asn1::OctetString;
use der::{Any, Decode, Encode, Sequence};
use keychain_core::{Error, Result};

/// `SEQUENCE { OCTET STRING blob, [PKCS#15 private-key description], [certificate] }`.
///
/// The optional parts are kept as opaque DER (each one complete TLV) and written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WrapFile {
    /// The wrapped-key blob (see [`crate::dkek::unwrap_key`]).
    pub blob: Vec<u8>,
    /// The PKCS#15 private-key description the card stored with the key, as DER.
    pub key_description: Option<Vec<u8>>,
    /// The certificate stored with the key, as DER.
    pub certificate: Option<Vec<u8>>,
}

#[derive(Sequence)]
struct WrapFileDer {
    blob: OctetString,
    key_description: Option<Any>,
    certificate: Option<Any>,
}

impl WrapFile {
    /// A file holding just a blob.
    pub fn new(blob: Vec<u8>) -> Self {
        Self {
            blob,
            key_description: None,
            certificate: None,
        }
    }

    /// Reads the DER file.
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] if it is not that structure.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let file = WrapFileDer::from_der(der).map_err(|e| {
            Error::invalid_input(format!("not an sc-hsm-tool wrapped-key file: {e}"))
        })?;
        if file.key_description.is_none() && file.certificate.is_some() {
            return Err(Error::invalid_input(
                "not an sc-hsm-tool wrapped-key file: a certificate without a key description",
            ));
        }
        let tlv = |a: Option<Any>| -> Result<Option<Vec<u8>>> {
            a.map(|a| {
                a.to_der()
                    .map_err(|e| Error::invalid_input(format!("wrapped-key file: {e}")))
            })
            .transpose()
        };
        Ok(Self {
            blob: file.blob.into_bytes().into_vec(),
            key_description: tlv(file.key_description)?,
            certificate: tlv(file.certificate)?,
        })
    }

    /// Writes the DER file.
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] if a description or certificate is not one
    /// complete DER element, or a certificate is given without a description.
    pub fn to_der(&self) -> Result<Vec<u8>> {
        if self.key_description.is_none() && self.certificate.is_some() {
            return Err(Error::invalid_input(
                "a wrapped-key file needs the key description to carry a certificate",
            ));
        }
        let any = |v: &Option<Vec<u8>>| -> Result<Option<Any>> {
            v.as_deref()
                .map(|b| {
                    Any::from_der(b).map_err(|e| {
                        Error::invalid_input(format!("not one complete DER element: {e}"))
                    })
                })
                .transpose()
        };
        let file = WrapFileDer {
            blob: OctetString::new(self.blob.clone())
                .map_err(|e| Error::invalid_input(format!("blob: {e}")))?,
            key_description: any(&self.key_description)?,
            certificate: any(&self.certificate)?,
        };
        file.to_der()
            .map_err(|e| Error::invalid_input(format!("wrapped-key file: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn round_trips() {
        let f = WrapFile::new(vec![1, 2, 3]);
        let der = f.to_der().unwrap();
        assert_eq!(der, [0x30, 0x05, 0x04, 0x03, 1, 2, 3]);
        assert_eq!(WrapFile::from_der(&der).unwrap(), f);

        let full = WrapFile {
            blob: vec![9; 200],
            key_description: Some(vec![0xa0, 0x03, 0x02, 0x01, 0x05]),
            certificate: Some(vec![0x30, 0x02, 0x05, 0x00]),
        };
        let der = full.to_der().unwrap();
        assert_eq!(WrapFile::from_der(&der).unwrap(), full);
    }

    #[test]
    fn rejects_garbage() {
        assert!(WrapFile::from_der(&[]).is_err());
        assert!(WrapFile::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        assert!(WrapFile::from_der(&[0x30, 0x05, 0x04, 0x03, 1, 2]).is_err());
        let bad = WrapFile {
            blob: vec![],
            key_description: Some(vec![0x30]),
            certificate: None,
        };
        assert!(bad.to_der().is_err());
    }
}
