//! The TPM itself: one `tss_esapi::Context`, owned by the worker thread (a `Context` is not
//! `Send`), with the storage root key, the parameter-encryption session and the cache of loaded
//! keys. Every method runs on the worker; nothing here is async.

use std::str::FromStr as _;

use keychain_core::{Error, ErrorKind, HashAlg, KeyAlgorithm, Result, SignatureScheme};
use tss_esapi::Context;
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind as K;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::constants::{AlgorithmIdentifier, CapabilityType, PropertyTag, SessionType};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, CapabilityData, Data, Digest, HashScheme, HashcheckTicket, Private, Public, PublicKeyRsa,
    RsaDecryptionScheme, SensitiveData, Signature, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use zeroize::Zeroizing;

use crate::convert;
use crate::error::{map, tpm_kind};

/// What the device settings say, resolved (auth values read from their sources).
pub(crate) struct Settings {
    pub(crate) tcti: String,
    pub(crate) srk_handle: u32,
    pub(crate) create_srk: bool,
    pub(crate) transient_srk: bool,
    pub(crate) owner_auth: Option<Auth>,
    pub(crate) endorsement_auth: Option<Auth>,
    pub(crate) parameter_encryption: bool,
    pub(crate) loaded_keys: Option<usize>,
    pub(crate) flush_stale_objects: bool,
}

/// What the TPM reported at open.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) algorithms: Vec<KeyAlgorithm>,
    pub(crate) hashes: Vec<HashAlg>,
    pub(crate) rsassa: bool,
    pub(crate) rsapss: bool,
    pub(crate) oaep: bool,
    pub(crate) ecdsa: bool,
    pub(crate) manufacturer: String,
    pub(crate) transient_slots: u32,
    pub(crate) loaded_keys: usize,
    pub(crate) parameter_encryption: bool,
    pub(crate) stale_flushed: usize,
}

/// A key the worker keeps loaded, recognised by its private blob (unique per created key, so a
/// key deleted and created again under the same name is never confused with the old one).
struct LoadedKey {
    private: Vec<u8>,
    handle: KeyHandle,
}

/// Which parameters the session encrypts for a command: only sized (TPM2B) first parameters can
/// be, and the TPM refuses the attribute for commands without one.
#[derive(Clone, Copy)]
pub(crate) enum Enc {
    /// The first command parameter (host → TPM).
    Command,
    /// The first response parameter (TPM → host).
    Response,
    Both,
}

pub(crate) struct Device {
    ctx: Context,
    srk: KeyHandle,
    srk_transient: bool,
    session: Option<AuthSession>,
    loaded: Vec<LoadedKey>,
    /// Keys kept loaded at most.
    capacity: usize,
    /// Transient object slots the TPM guarantees (TPM2_PT_HR_TRANSIENT_MIN).
    slots: usize,
    flush_stale: bool,
    endorsement_auth: Option<Auth>,
    pub(crate) probe: Probe,
}

fn ctx_err(what: &'static str) -> impl Fn(tss_esapi::Error) -> Error {
    move |e| map(e, what)
}

fn is_out_of_memory(e: &tss_esapi::Error) -> bool {
    matches!(
        tpm_kind(e),
        Some(K::ObjectMemory | K::Memory | K::ObjectHandles)
    )
}

fn is_session_trouble(e: &tss_esapi::Error) -> bool {
    matches!(
        tpm_kind(e),
        Some(K::SessionMemory | K::SessionHandles | K::ReferenceS0 | K::Handle)
    )
}

/// A ticket saying "the TPM did not hash this digest itself", which unrestricted keys accept.
fn null_ticket() -> Result<HashcheckTicket> {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(ctx_err("building a hash-check ticket"))
}

impl Device {
    /// Connects, flushes stale objects, finds or makes the SRK, probes the TPM and starts the
    /// parameter-encryption session.
    pub(crate) fn open(settings: Settings) -> Result<Self> {
        let tcti = TctiNameConf::from_str(&settings.tcti).map_err(|e| {
            Error::invalid_input(format!("tcti {:?} is not a TCTI: {e}", settings.tcti))
        })?;
        let mut ctx = Context::new(tcti).map_err(|e| {
            map(e, "connecting to the TPM").with_context(format_args!("tcti {}", settings.tcti))
        })?;
        if let Some(auth) = &settings.owner_auth {
            ctx.tr_set_auth(ObjectHandle::Owner, auth.clone())
                .map_err(ctx_err("setting the owner auth"))?;
        }
        let stale_flushed = if settings.flush_stale_objects {
            flush_transients(&mut ctx)?
        } else {
            0
        };
        let (srk, srk_transient) = open_srk(&mut ctx, &settings)?;
        let transient_slots = ctx
            .get_tpm_property(PropertyTag::HrTransientMin)
            .map_err(ctx_err("reading TPM properties"))?
            .unwrap_or(3);
        let manufacturer = tss_esapi::utils::get_tpm_vendor(&mut ctx).unwrap_or_default();
        // TPM2_Create and TPM2_Load need a free slot for the new object and, with a persistent
        // SRK, one for the SRK while the command runs; a transient SRK occupies one for good.
        let slots = usize::try_from(transient_slots).unwrap_or(3).max(2);
        let default_capacity = slots.saturating_sub(1 + usize::from(srk_transient)).max(1);
        let capacity = settings.loaded_keys.unwrap_or(default_capacity);
        let mut probe = probe(&mut ctx)?;
        probe.manufacturer = manufacturer;
        probe.transient_slots = transient_slots;
        probe.loaded_keys = capacity;
        probe.parameter_encryption = settings.parameter_encryption;
        probe.stale_flushed = stale_flushed;
        let mut device = Self {
            ctx,
            srk,
            srk_transient,
            session: None,
            loaded: Vec::new(),
            capacity,
            slots,
            flush_stale: settings.flush_stale_objects,
            endorsement_auth: settings.endorsement_auth,
            probe,
        };
        if settings.parameter_encryption {
            device.start_session()?;
        }
        Ok(device)
    }

    /// An HMAC session salted with the SRK (so its key is unknown to anyone who sees the
    /// traffic) that encrypts parameters with AES-128-CFB.
    fn start_session(&mut self) -> Result<()> {
        self.start_session_tss()
            .map_err(ctx_err("starting the parameter-encryption session"))
    }

    fn start_session_tss(&mut self) -> tss_esapi::Result<()> {
        let session = self.ctx.start_auth_session(
            Some(self.srk),
            None,
            None,
            SessionType::Hmac,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )?;
        self.session = session;
        Ok(())
    }

    /// Runs `f` with one authorization session: the salted session with `enc`'s parameters
    /// encrypted, or a password session when parameter encryption is off. A session the TPM
    /// lost is replaced and `f` run once more; with parameter encryption on, nothing ever runs
    /// without it (a session that cannot be started fails the call).
    fn authorized<T>(
        &mut self,
        enc: Enc,
        mut f: impl FnMut(&mut Context) -> tss_esapi::Result<T>,
    ) -> tss_esapi::Result<T> {
        match self.authorized_once(enc, &mut f) {
            Err(e) if self.session.is_some() && is_session_trouble(&e) => {
                tracing::warn!(error = %e, "TPM session lost; starting a new one");
                if let Some(session) = self.session.take() {
                    let _ = self.ctx.flush_context(SessionHandleOf(session).into());
                }
                self.authorized_once(enc, &mut f)
            }
            other => other,
        }
    }

    fn authorized_once<T>(
        &mut self,
        enc: Enc,
        f: &mut impl FnMut(&mut Context) -> tss_esapi::Result<T>,
    ) -> tss_esapi::Result<T> {
        if self.session.is_none() && self.probe.parameter_encryption {
            self.start_session_tss()?;
        }
        let Some(session) = self.session else {
            return self
                .ctx
                .execute_with_session(Some(AuthSession::Password), f);
        };
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_decrypt(matches!(enc, Enc::Command | Enc::Both))
            .with_encrypt(matches!(enc, Enc::Response | Enc::Both))
            .build();
        self.ctx.tr_sess_set_attributes(session, attributes, mask)?;
        self.ctx.execute_with_session(Some(session), f)
    }

    /// The handle of a loaded key, loading it (and evicting the least recently used key when
    /// the cache is full) if needed.
    pub(crate) fn key(
        &mut self,
        public: &Public,
        private: &[u8],
        auth: &Auth,
    ) -> Result<KeyHandle> {
        if let Some(i) = self.loaded.iter().position(|k| k.private == private) {
            let k = self.loaded.remove(i);
            let handle = k.handle;
            self.loaded.push(k);
            return Ok(handle);
        }
        self.make_room(self.command_slots(), None);
        while self.loaded.len() >= self.capacity {
            self.evict_oldest(None);
        }
        let blob = Private::try_from(private.to_vec())
            .map_err(|_| Error::new(ErrorKind::Integrity, "key blob: private part too long"))?;
        let srk = self.srk;
        let load = |d: &mut Self| {
            d.authorized(Enc::Both, |ctx| ctx.load(srk, blob.clone(), public.clone()))
        };
        let handle = match load(self) {
            Err(e) if is_out_of_memory(&e) => {
                // Someone else's objects fill the TPM (a crashed process, with no resource
                // manager in between): free everything and try once more.
                tracing::warn!(error = %e, "TPM object memory full; flushing and retrying");
                self.flush_loaded();
                if self.flush_stale {
                    let _ = flush_transients(&mut self.ctx);
                }
                load(self)
            }
            other => other,
        }
        .map_err(load_error)?;
        self.ctx
            .tr_set_auth(handle.into(), auth.clone())
            .map_err(ctx_err("setting the key's auth value"))?;
        self.loaded.push(LoadedKey {
            private: private.to_vec(),
            handle,
        });
        Ok(handle)
    }

    /// Slots TPM2_Create and TPM2_Load need free: the new object's, and the SRK's while the
    /// command runs when the SRK is persistent.
    fn command_slots(&self) -> usize {
        1 + usize::from(!self.srk_transient)
    }

    /// Evicts least recently used keys (never `keep`) until `free` object slots are free.
    fn make_room(&mut self, free: usize, keep: Option<KeyHandle>) {
        while self.loaded.len() + usize::from(self.srk_transient) + free > self.slots {
            if !self.evict_oldest(keep) {
                break;
            }
        }
    }

    /// Flushes the least recently used key other than `keep`; false when there is none.
    fn evict_oldest(&mut self, keep: Option<KeyHandle>) -> bool {
        let Some(i) = self.loaded.iter().position(|k| Some(k.handle) != keep) else {
            return false;
        };
        let k = self.loaded.remove(i);
        if let Err(e) = self.ctx.flush_context(k.handle.into()) {
            tracing::warn!(error = %e, "flushing a loaded TPM key failed");
        }
        true
    }

    fn flush_loaded(&mut self) {
        for k in std::mem::take(&mut self.loaded) {
            let _ = self.ctx.flush_context(k.handle.into());
        }
    }

    /// Flushes the loaded copies of these private blobs (their key was deleted).
    pub(crate) fn forget(&mut self, privates: &[Vec<u8>]) {
        let mut kept = Vec::with_capacity(self.loaded.len());
        for k in std::mem::take(&mut self.loaded) {
            if privates.contains(&k.private) {
                let _ = self.ctx.flush_context(k.handle.into());
            } else {
                kept.push(k);
            }
        }
        self.loaded = kept;
    }

    /// How many keys are loaded now.
    pub(crate) fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    /// Creates a child of the SRK from `template`; `sealed` is the data of a sealed object.
    pub(crate) fn create(
        &mut self,
        template: Public,
        auth: &Auth,
        sealed: Option<SensitiveData>,
    ) -> Result<(Public, Vec<u8>)> {
        let srk = self.srk;
        self.make_room(self.command_slots(), None);
        let create = |d: &mut Self| {
            d.authorized(Enc::Both, |ctx| {
                ctx.create(
                    srk,
                    template.clone(),
                    Some(auth.clone()),
                    sealed.clone(),
                    None,
                    None,
                )
            })
        };
        let created = match create(self) {
            Err(e) if is_out_of_memory(&e) => {
                tracing::warn!(error = %e, "TPM object memory full; flushing and retrying");
                self.flush_loaded();
                if self.flush_stale {
                    let _ = flush_transients(&mut self.ctx);
                }
                create(self)
            }
            other => other,
        }
        .map_err(ctx_err("creating a key under the SRK"))?;
        Ok((created.out_public, created.out_private.value().to_vec()))
    }

    /// `len` bytes from TPM2_GetRandom (which hands out at most a digest's worth per call).
    pub(crate) fn random(&mut self, len: usize) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        while out.len() < len {
            let want = (len - out.len()).min(32);
            let chunk = if self.probe.parameter_encryption {
                self.authorized(Enc::Response, |ctx| ctx.get_random(want))
            } else {
                self.ctx.get_random(want)
            }
            .map_err(ctx_err("reading the TPM's random generator"))?;
            if chunk.value().is_empty() {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    "the TPM returned no random bytes",
                ));
            }
            out.extend_from_slice(chunk.value());
        }
        out.truncate(len);
        Ok(out)
    }

    /// Signs a digest with a loaded key.
    pub(crate) fn sign(
        &mut self,
        key: KeyHandle,
        algorithm: KeyAlgorithm,
        digest: &[u8],
        scheme: SignatureScheme,
    ) -> Result<Vec<u8>> {
        let tpm_scheme = convert::signature_scheme(scheme)
            .ok_or_else(|| Error::unsupported(format!("{scheme} signatures in a TPM")))?;
        let digest = Digest::try_from(digest.to_vec())
            .map_err(|_| Error::invalid_input("digest too long"))?;
        let ticket = null_ticket()?;
        let signature: Signature = self
            .authorized(Enc::Command, |ctx| {
                ctx.sign(key, digest.clone(), tpm_scheme, ticket.clone())
            })
            .map_err(ctx_err("signing"))?;
        convert::signature_bytes(algorithm, &signature)
    }

    /// RSA-OAEP decryption with a loaded key (empty label).
    pub(crate) fn decrypt_oaep(
        &mut self,
        key: KeyHandle,
        ciphertext: &[u8],
        hash: HashAlg,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ct = PublicKeyRsa::try_from(ciphertext.to_vec())
            .map_err(|_| Error::new(ErrorKind::Integrity, "ciphertext longer than any RSA key"))?;
        let hashing = convert::hashing(hash)
            .ok_or_else(|| Error::unsupported(format!("RSA-OAEP with {hash} in a TPM")))?;
        let scheme = RsaDecryptionScheme::Oaep(HashScheme::new(hashing));
        let result = self.authorized(Enc::Both, |ctx| {
            ctx.rsa_decrypt(key, ct.clone(), scheme, Data::default())
        });
        let plain = match result {
            Ok(plain) => plain,
            Err(e) => {
                // A ciphertext that does not decrypt is TPM_RC_VALUE (or SIZE) on TPMs that
                // follow the specification; libtpms (swtpm) says TPM_RC_FAILURE instead. A TPM
                // that really failed fails the next command too, so ask it something cheap.
                let failed =
                    matches!(tpm_kind(&e), Some(K::Failure)) && self.ctx.get_random(1).is_err();
                let err = map(e, "RSA-OAEP decryption");
                return Err(match err.kind() {
                    ErrorKind::InvalidInput => undecryptable(err),
                    ErrorKind::Unavailable if !failed => undecryptable(err),
                    _ => err,
                });
            }
        };
        Ok(Zeroizing::new(plain.value().to_vec()))
    }

    /// The data of a loaded sealed object.
    pub(crate) fn unseal(&mut self, key: KeyHandle) -> Result<Zeroizing<Vec<u8>>> {
        let data = self
            .authorized(Enc::Response, |ctx| ctx.unseal(key.into()))
            .map_err(ctx_err("unsealing the AES key"))?;
        Ok(Zeroizing::new(data.value().to_vec()))
    }

    /// TPM2_Certify of a loaded key by the attestation key (derived from the endorsement
    /// hierarchy, loaded for this call only). Returns the marshalled `TPMS_ATTEST`, the AK's
    /// signature over it (TPM form) and the AK's public area.
    pub(crate) fn certify(
        &mut self,
        key: KeyHandle,
        nonce: &[u8],
    ) -> Result<(Vec<u8>, Signature, Public)> {
        use tss_esapi::traits::Marshall as _;
        let template = convert::ak_template()?;
        if let Some(auth) = &self.endorsement_auth {
            self.ctx
                .tr_set_auth(ObjectHandle::Endorsement, auth.clone())
                .map_err(ctx_err("setting the endorsement auth"))?;
        }
        let create = |d: &mut Self| {
            d.ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.create_primary(
                        Hierarchy::Endorsement,
                        template.clone(),
                        None,
                        None,
                        None,
                        None,
                    )
                })
        };
        self.make_room(1, Some(key));
        let primary = match create(self) {
            Err(e) if is_out_of_memory(&e) => {
                while self.evict_oldest(Some(key)) {}
                create(self)
            }
            other => other,
        }
        .map_err(ctx_err("creating the attestation key"))?;
        let ak = primary.key_handle;
        let qualifying = Data::try_from(nonce.to_vec())
            .map_err(|_| Error::invalid_input("the nonce is longer than 64 bytes"));
        let result = qualifying.and_then(|qualifying| {
            if self.session.is_none() && self.probe.parameter_encryption {
                self.start_session()?;
            }
            let session = self.session.unwrap_or(AuthSession::Password);
            if let Some(s) = self.session {
                let (attributes, mask) = SessionAttributesBuilder::new()
                    .with_continue_session(true)
                    .with_decrypt(true)
                    .with_encrypt(true)
                    .build();
                self.ctx
                    .tr_sess_set_attributes(s, attributes, mask)
                    .map_err(ctx_err("setting session attributes"))?;
            }
            self.ctx
                .execute_with_sessions((Some(session), Some(AuthSession::Password), None), |ctx| {
                    ctx.certify(
                        key.into(),
                        ak,
                        qualifying.clone(),
                        tss_esapi::structures::SignatureScheme::Null,
                    )
                })
                .map_err(ctx_err("certifying the key"))
        });
        if let Err(e) = self.ctx.flush_context(ak.into()) {
            tracing::warn!(error = %e, "flushing the attestation key failed");
        }
        let (attest, signature) = result?;
        let attest = attest
            .marshall()
            .map_err(ctx_err("encoding the attestation"))?;
        Ok((attest, signature, primary.out_public))
    }

    /// Flushes what this connection holds: loaded keys, the session, a transient SRK.
    pub(crate) fn shutdown(&mut self) {
        self.flush_loaded();
        if let Some(s) = self.session.take() {
            let _ = self.ctx.flush_context(SessionHandleOf(s).into());
        }
        if self.srk_transient {
            let _ = self.ctx.flush_context(self.srk.into());
            self.srk_transient = false;
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The session handle of an `AuthSession`, for flushing.
struct SessionHandleOf(AuthSession);

impl From<SessionHandleOf> for ObjectHandle {
    fn from(s: SessionHandleOf) -> Self {
        let handle: tss_esapi::handles::SessionHandle = s.0.into();
        handle.into()
    }
}

fn undecryptable(err: Error) -> Error {
    Error::new(
        ErrorKind::Integrity,
        "the ciphertext does not decrypt with this key",
    )
    .with_source(err)
}

fn load_error(e: tss_esapi::Error) -> Error {
    let err = map(e, "loading the key into the TPM");
    match err.kind() {
        // A blob the TPM cannot decrypt or whose integrity check fails: damaged, or made
        // under another SRK / another TPM.
        ErrorKind::Integrity | ErrorKind::InvalidInput | ErrorKind::NotFound => Error::new(
            ErrorKind::Integrity,
            "the TPM refused the key blob: damaged, or made by another TPM or under another SRK",
        )
        .with_source(err),
        _ => err,
    }
}

/// Flushes every transient object and loaded session the TPM holds for this connection (with
/// no resource manager in between: everything a crashed process left). Returns how many.
fn flush_transients(ctx: &mut Context) -> Result<usize> {
    let mut flushed = 0;
    // Transient objects, then HMAC and policy sessions.
    for first in [0x8000_0000u32, 0x0200_0000, 0x0300_0000] {
        let (data, _) = ctx
            .get_capability(CapabilityType::Handles, first, 64)
            .map_err(ctx_err("listing TPM handles"))?;
        let CapabilityData::Handles(list) = data else {
            continue;
        };
        for handle in list.into_inner() {
            if let Ok(object) = ctx.tr_from_tpm_public(handle)
                && ctx.flush_context(object).is_ok()
            {
                flushed += 1;
            }
        }
    }
    if flushed > 0 {
        tracing::warn!(
            flushed,
            "flushed TPM objects and sessions left by an earlier process"
        );
    }
    Ok(flushed)
}

/// The SRK: the persistent object at `srk_handle` (created and persisted when absent and
/// allowed), or a transient primary. Checked to be a storage key.
fn open_srk(ctx: &mut Context, settings: &Settings) -> Result<(KeyHandle, bool)> {
    let create_primary = |ctx: &mut Context| -> Result<KeyHandle> {
        let template = convert::srk_template()?;
        let created = ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(ctx_err("creating the storage root key"))?;
        Ok(created.key_handle)
    };
    if settings.transient_srk {
        return Ok((create_primary(ctx)?, true));
    }
    let persistent = PersistentTpmHandle::new(settings.srk_handle)
        .map_err(|_| Error::invalid_input("srk-handle is not a persistent handle"))?;
    let handle = match ctx.tr_from_tpm_public(TpmHandle::Persistent(persistent)) {
        Ok(h) => h,
        Err(e) if matches!(tpm_kind(&e), Some(K::Handle)) || !is_tpm_response(&e) => {
            if !settings.create_srk {
                return Err(Error::not_found(format!(
                    "no storage root key at 0x{:08x} and create-srk is off",
                    settings.srk_handle
                )));
            }
            let primary = create_primary(ctx)?;
            let persisted = ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.evict_control(
                        Provision::Owner,
                        primary.into(),
                        Persistent::Persistent(persistent),
                    )
                })
                .map_err(ctx_err("persisting the storage root key"));
            let _ = ctx.flush_context(primary.into());
            let persisted = persisted?;
            tracing::info!(
                handle = format!("0x{:08x}", settings.srk_handle),
                "created the SRK"
            );
            persisted
        }
        Err(e) => return Err(map(e, "reading the storage root key")),
    };
    let srk = KeyHandle::from(handle);
    let (public, _, _) = ctx
        .read_public(srk)
        .map_err(ctx_err("reading the storage root key"))?;
    let a = public.object_attributes();
    if !(a.restricted() && a.decrypt() && !a.sign_encrypt()) {
        return Err(Error::invalid_input(format!(
            "the object at 0x{:08x} is not a storage key (restricted, decrypt)",
            settings.srk_handle
        )));
    }
    Ok((srk, false))
}

fn is_tpm_response(e: &tss_esapi::Error) -> bool {
    tpm_kind(e).is_some()
}

/// Algorithms, hashes and schemes the TPM reports (TPM2_GetCapability), and RSA sizes it accepts
/// (TPM2_TestParms).
fn probe(ctx: &mut Context) -> Result<Probe> {
    let (data, _) = ctx
        .get_capability(CapabilityType::Algorithms, 0, 128)
        .map_err(ctx_err("listing TPM algorithms"))?;
    let algs: Vec<AlgorithmIdentifier> = match data {
        CapabilityData::Algorithms(list) => {
            list.into_iter().map(|p| p.algorithm_identifier()).collect()
        }
        _ => Vec::new(),
    };
    let has = |a: AlgorithmIdentifier| algs.contains(&a);
    let (data, _) = ctx
        .get_capability(CapabilityType::EccCurves, 0, 64)
        .map_err(ctx_err("listing TPM curves"))?;
    let curves: Vec<EccCurve> = match data {
        CapabilityData::EccCurves(list) => {
            list.into_inner().into_iter().map(EccCurve::from).collect()
        }
        _ => Vec::new(),
    };
    let mut algorithms = Vec::new();
    if has(AlgorithmIdentifier::Rsa) {
        for algorithm in [
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Rsa4096,
        ] {
            if rsa_size_supported(ctx, algorithm) {
                algorithms.push(algorithm);
            }
        }
    }
    if has(AlgorithmIdentifier::Ecc) && has(AlgorithmIdentifier::EcDsa) {
        for algorithm in [
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::EcP521,
        ] {
            if convert::curve(algorithm).is_some_and(|c| curves.contains(&c)) {
                algorithms.push(algorithm);
            }
        }
    }
    if has(AlgorithmIdentifier::KeyedHash) {
        algorithms.extend([
            KeyAlgorithm::Aes128Gcm,
            KeyAlgorithm::Aes192Gcm,
            KeyAlgorithm::Aes256Gcm,
        ]);
    }
    let hashes = [
        (AlgorithmIdentifier::Sha256, HashAlg::Sha256),
        (AlgorithmIdentifier::Sha384, HashAlg::Sha384),
        (AlgorithmIdentifier::Sha512, HashAlg::Sha512),
    ]
    .into_iter()
    .filter(|(a, _)| has(*a))
    .map(|(_, h)| h)
    .collect();
    Ok(Probe {
        algorithms,
        hashes,
        rsassa: has(AlgorithmIdentifier::RsaSsa),
        rsapss: has(AlgorithmIdentifier::RsaPss),
        oaep: has(AlgorithmIdentifier::Oaep),
        ecdsa: has(AlgorithmIdentifier::EcDsa),
        manufacturer: String::new(),
        transient_slots: 0,
        loaded_keys: 0,
        parameter_encryption: false,
        stale_flushed: 0,
    })
}

fn rsa_size_supported(ctx: &mut Context, algorithm: KeyAlgorithm) -> bool {
    let Ok(template) = convert::key_template(algorithm, keychain_core::KeyUsage::Sign.into())
    else {
        return false;
    };
    let Public::Rsa { parameters, .. } = template else {
        return false;
    };
    ctx.test_parms(tss_esapi::structures::PublicParameters::Rsa(parameters))
        .is_ok()
}
