//! The token itself: which one a configuration means, what it offers (as [`Capabilities`]),
//! its random generator and its health.

use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use keychain_core::{
    Capabilities, Error, ErrorKind, HashAlg, Health, HealthStatus, KeyAlgorithm, Operation,
    Protection, Result, SignatureScheme,
};

use crate::aead::oaep_params;
use crate::backend::Pkcs11Backend;
use crate::config::Config;
use crate::error::{BACKEND, map};
use crate::pool::Call;

/// The most bytes one `random` call returns ([`Capabilities::max_random`]).
const MAX_RANDOM: usize = 64 * 1024;

/// Which token a configuration means, and its slot.
pub(crate) fn find_slot(ctx: &Pkcs11, config: &Config) -> Result<(Slot, String)> {
    let slots = ctx.get_slots_with_token().map_err(map)?;
    if let Some(label) = &config.token {
        let mut found = Vec::new();
        let mut labels = Vec::new();
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(map)?;
            if info.label() == label {
                found.push(slot);
            }
            labels.push(format!("{:?}", info.label()));
        }
        return match found.as_slice() {
            [slot] => Ok((*slot, label.clone())),
            [] => Err(Error::not_found(format!(
                "no token labelled {label:?} in this module; tokens present: [{}]",
                labels.join(", ")
            ))),
            many => Err(Error::invalid_input(format!(
                "{} tokens are labelled {label:?}; select one with slot-id",
                many.len()
            ))),
        };
    }
    let id = config.slot_id.unwrap_or_default();
    let slot = slots
        .into_iter()
        .find(|s| s.id() == id)
        .ok_or_else(|| Error::not_found(format!("no token in slot {id} of this module")))?;
    let label = ctx.get_token_info(slot).map_err(map)?.label().to_owned();
    Ok((slot, label))
}

/// What the token offers, from its mechanism list (and, for OAEP hashes, a probe).
pub(crate) fn capabilities(ctx: &Pkcs11, slot: Slot, rng: bool) -> Result<Capabilities> {
    let mechs = ctx.get_mechanism_list(slot).map_err(map)?;
    let has = |m: MechanismType| mechs.contains(&m);
    let sizes = |m: MechanismType| {
        ctx.get_mechanism_info(slot, m)
            .map(|i| (i.min_key_size(), i.max_key_size()))
            .ok()
    };
    let mut caps = Capabilities::new(BACKEND, Protection::Hardware);
    let rsa_sign = has(MechanismType::RSA_PKCS) || has(MechanismType::RSA_PKCS_PSS);
    if has(MechanismType::RSA_PKCS_KEY_PAIR_GEN) && rsa_sign {
        let (min, max) = sizes(MechanismType::RSA_PKCS_KEY_PAIR_GEN).unwrap_or((0, usize::MAX));
        for a in [
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Rsa4096,
        ] {
            let bits = a.bits() as usize;
            if (min..=max).contains(&bits) {
                caps.algorithms.push(a);
            }
        }
    }
    if has(MechanismType::ECC_KEY_PAIR_GEN) && has(MechanismType::ECDSA) {
        let (_, max) = sizes(MechanismType::ECC_KEY_PAIR_GEN).unwrap_or((0, usize::MAX));
        for a in [
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::EcP521,
        ] {
            if a.bits() as usize <= max {
                caps.algorithms.push(a);
            }
        }
    }
    if has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN) && has(MechanismType::EDDSA) {
        caps.algorithms.push(KeyAlgorithm::Ed25519);
    }
    if has(MechanismType::AES_KEY_GEN) && has(MechanismType::AES_GCM) {
        let (min, max) = sizes(MechanismType::AES_GCM).unwrap_or((0, usize::MAX));
        for a in [
            KeyAlgorithm::Aes128Gcm,
            KeyAlgorithm::Aes192Gcm,
            KeyAlgorithm::Aes256Gcm,
        ] {
            let len = a.symmetric_key_len().unwrap_or(32);
            // PKCS#11 gives AES sizes in bytes; some modules report bits.
            if (min..=max).contains(&len) || (min..=max).contains(&(len * 8)) {
                caps.algorithms.push(a);
            }
        }
        caps.aead = caps.algorithms.iter().any(|a| a.is_symmetric());
    }
    let any = |f: fn(KeyAlgorithm) -> bool| caps.algorithms.iter().any(|a| f(*a));
    let (rsa, ec, ed) = (
        any(KeyAlgorithm::is_rsa),
        any(KeyAlgorithm::is_ecdsa),
        any(|a| a == KeyAlgorithm::Ed25519),
    );
    for h in HashAlg::ALL {
        if rsa && has(MechanismType::RSA_PKCS) {
            caps.signature_schemes.push(SignatureScheme::RsaPkcs1v15(h));
        }
        if rsa && has(MechanismType::RSA_PKCS_PSS) {
            caps.signature_schemes.push(SignatureScheme::RsaPss(h));
        }
        if ec {
            caps.signature_schemes.push(SignatureScheme::Ecdsa(h));
        }
    }
    if ed {
        caps.signature_schemes.push(SignatureScheme::Ed25519);
    }
    caps.sign_message = true;
    caps.rotate = true;
    caps.random = rng;
    caps.max_random = Some(MAX_RANDOM);
    // Keys are created from material with C_CreateObject; exports leave wrapped (C_WrapKey with
    // AES key wrap with padding under a session key) and are re-encrypted under the password.
    caps.import = true;
    caps.export_wrapped = has(MechanismType::AES_KEY_WRAP_PAD) && has(MechanismType::AES_KEY_GEN);
    caps.import_wrapped = true;
    caps.health = true;
    Ok(caps)
}

/// A public RSA-2048 modulus for the OAEP probe (any well-formed modulus will do: only
/// `C_EncryptInit`'s parameter check matters).
fn probe_modulus() -> Vec<u8> {
    let mut n = vec![0xc5u8; 256];
    n[255] = 0x01;
    n
}

/// The OAEP hashes the token accepts, found by encrypting to a session public key: the
/// mechanism list cannot say (SoftHSM 2.6 lists CKM_RSA_PKCS_OAEP but takes SHA-1 only).
pub(crate) fn probe_oaep(session: &Session) -> Result<Vec<HashAlg>> {
    let template = [
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Encrypt(true),
        Attribute::Modulus(probe_modulus()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
    ];
    let key = session.create_object(&template).map_err(map)?;
    let mut ok = Vec::new();
    for h in HashAlg::ALL {
        let params = oaep_params(h)?;
        if session
            .encrypt(&Mechanism::RsaPkcsOaep(params), key, b"keychain probe")
            .is_ok()
        {
            ok.push(h);
        }
    }
    let _ = session.destroy_object(key);
    Ok(ok)
}

impl Pkcs11Backend {
    /// `random`: `C_GenerateRandom`, at most [`Capabilities::max_random`] bytes.
    pub(crate) async fn random_bytes(&self, len: usize) -> Result<Vec<u8>> {
        let caps = &self.inner.capabilities;
        if !caps.random {
            return Err(Error::unsupported("this token has no random generator"));
        }
        caps.check_random(len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        self.inner
            .pool
            .run(Operation::Random, Call::Random, move |s| {
                s.generate_random_vec(n).map_err(map)
            })
            .await
    }

    /// `health`: the login state the pool remembers, then the token's PIN flags, sessions,
    /// dispatch and free memory.
    pub(crate) async fn token_health(&self) -> Result<Health> {
        let pool = Arc::clone(&self.inner.pool);
        // The one call that does not go through the pool's `run`: check the guard here.
        pool.check_open(Operation::Health)?;
        let (label, slot_id) = (self.inner.token_label.clone(), self.inner.slot_id);
        let (idle, max) = (pool.idle_count(), pool.max());
        if let Some(e) = pool.login_rejected() {
            let mut h = Health::ok()
                .with_detail("token", label)
                .with_detail("login", e.message().to_owned());
            h.status = HealthStatus::Unavailable;
            return Ok(h);
        }
        let info = tokio::task::spawn_blocking(move || {
            pool.ctx().get_token_info(pool.slot()).map_err(map)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("health failed: {e}")))??;
        let mut h = Health::ok()
            .with_detail("token", label)
            .with_detail("slot", slot_id.to_string())
            .with_detail("sessions", format!("{idle} idle, at most {max}"))
            .with_detail("dispatch", self.inner.pool.dispatch_summary());
        let pin = if info.user_pin_locked() {
            h.status = HealthStatus::Unavailable;
            Some("locked")
        } else if info.user_pin_final_try() {
            h.status = HealthStatus::Degraded;
            Some("final try")
        } else if info.user_pin_count_low() {
            h.status = HealthStatus::Degraded;
            Some("count low")
        } else if info.user_pin_to_be_changed() {
            h.status = HealthStatus::Degraded;
            Some("to be changed")
        } else {
            None
        };
        if let Some(p) = pin {
            h = h.with_detail("pin", p);
        }
        if let Some(free) = info.free_private_memory() {
            h = h.with_detail("free-private-memory", free.to_string());
        }
        Ok(h)
    }
}
