//! The checks. Each public function runs one [`Check`](crate::Check) on a backend.

use std::sync::Arc;

use keychain_core::{
    Backend, Capabilities, ErrorKind, HashAlg, ImportSpec, KeyAlgorithm, KeyInfo, KeyName, KeyRef,
    KeySpec, KeyUsages, PublicKey, RsaPadding, SecretString, SignInput, SignatureScheme,
    WrappedKey, WrappingSpec,
};

use crate::ctx::{
    Ctx, During as _, Fail, R, cheapest_signable, declared, expect_kind, passed, random_hex,
    schemes_for, sign_checked, sign_input, signable, signable_all_but_big_rsa, signable_families,
    skipped, symmetric,
};
use crate::verify::Verifier;
use crate::{Check, CheckFailure, Outcome};

const NOT_FOUND: &[ErrorKind] = &[ErrorKind::NotFound];
const INVALID: &[ErrorKind] = &[ErrorKind::InvalidInput];
const INTEGRITY: &[ErrorKind] = &[ErrorKind::Integrity];

// ---------------------------------------------------------------------------------------------
// helpers

/// Checks what every fresh (version 1) `KeyInfo` must say.
fn check_fresh_info(
    info: &KeyInfo,
    name: &KeyName,
    spec: &KeySpec,
    caps: &Capabilities,
    what: &str,
) -> R<()> {
    let alg = spec.algorithm;
    ensure!(
        info.name == *name,
        "{what}: KeyInfo names the key {}, expected {name}",
        info.name
    );
    ensure!(
        info.algorithm == alg,
        "{what}: KeyInfo says algorithm {}, expected {alg}",
        info.algorithm
    );
    ensure!(
        info.version == 1,
        "{what}: a new key must be version 1, KeyInfo says {}",
        info.version
    );
    let versions: Vec<_> = info.versions.iter().map(|v| v.version).collect();
    ensure!(
        versions == [1],
        "{what}: a new key must have versions [1], KeyInfo lists {versions:?}"
    );
    ensure!(
        info.protection == caps.protection,
        "{what}: KeyInfo says protection {:?}, the capabilities say {:?}",
        info.protection,
        caps.protection
    );
    ensure!(
        info.usages.contains_all(spec.effective_usages()),
        "{what}: asked for usages {:?}, KeyInfo says {:?}",
        spec.effective_usages(),
        info.usages
    );
    ensure!(
        info.exportable == spec.exportable,
        "{what}: asked for exportable = {}, KeyInfo says {}",
        spec.exportable,
        info.exportable
    );
    if alg.is_asymmetric() {
        let pk = info.public_key().ok_or_else(|| {
            Fail(format!(
                "{what}: an asymmetric key must report its public key"
            ))
        })?;
        ensure!(
            pk.algorithm() == alg,
            "{what}: the public key is a {} key, expected {alg}",
            pk.algorithm()
        );
    } else {
        ensure!(
            info.versions.iter().all(|v| v.public_key.is_none()),
            "{what}: a symmetric key must not report a public key"
        );
    }
    Ok(())
}

/// The independent verifier for `info`'s newest public key; `None` (with a note) when the testkit
/// has none for the algorithm.
fn verifier_of(ctx: &Ctx<'_>, info: &KeyInfo) -> R<Option<Verifier>> {
    verifier_of_version(ctx, info, info.version)
}

fn verifier_of_version(ctx: &Ctx<'_>, info: &KeyInfo, version: u32) -> R<Option<Verifier>> {
    let pk = info
        .version_info(version)
        .and_then(|v| v.public_key.as_ref())
        .ok_or_else(|| {
            Fail(format!(
                "key {} version {version} has no public key",
                info.name
            ))
        })?;
    let v = Verifier::new(info.algorithm, pk.der()).map_err(|e| {
        Fail(format!(
            "key {} version {version}: public key: {e}",
            info.name
        ))
    })?;
    if v.is_none() {
        ctx.note(format!(
            "{} signatures against an independent verifier (none compiled in)",
            info.algorithm
        ));
    }
    Ok(v)
}

/// `bytes` with the lowest bit of byte `at` flipped.
fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(b) = out.get_mut(at) {
        *b ^= 0x01;
    }
    out
}

/// First, middle and last index of a buffer of `len` bytes.
fn positions(len: usize) -> [usize; 3] {
    [0, len / 2, len.saturating_sub(1)]
}

/// The correct input kind for a scheme: digest for hash-based schemes, message for Ed25519.
fn proper_input<'a>(scheme: SignatureScheme, message: &'a [u8], digest: &'a [u8]) -> SignInput<'a> {
    match scheme.hash() {
        Some(h) => SignInput::digest(h, digest),
        None => SignInput::message(message),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. generate-keys

/// Generates a key of every algorithm in [`Capabilities::algorithms`] (RSA in every declared size)
/// and checks the `KeyInfo` from `generate_key` and from `key_info`: the name, the algorithm,
/// version 1 and versions `[1]`, the protection, the usages, and a public key of the same algorithm
/// (parsed by RustCrypto) for asymmetric keys, none for symmetric ones.
///
/// # Errors
/// [`CheckFailure`] naming the first inconsistency or failed operation.
pub async fn check_generate_keys(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::GenerateKeys);
    let result = generate_keys(&ctx).await;
    ctx.finish(result).await
}

async fn generate_keys(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    let algs = declared(caps);
    if algs.is_empty() {
        return skipped("Capabilities::algorithms is empty");
    }
    for alg in algs {
        let spec = KeySpec::new(alg);
        let (name, info) = ctx.generate(alg.as_str(), &spec).await?;
        check_fresh_info(&info, &name, &spec, caps, &format!("generate_key {name}"))?;
        for key in [
            KeyRef::latest(name.clone()),
            KeyRef::versioned(name.clone(), 1),
        ] {
            let fetched = ctx
                .backend
                .key_info(&key)
                .await
                .during(format_args!("key_info {key}"))?;
            check_fresh_info(&fetched, &name, &spec, caps, &format!("key_info {key}"))?;
            ensure!(
                fetched.public_key() == info.public_key(),
                "key_info {key}: the public key differs from the one generate_key returned"
            );
        }
        if alg.is_asymmetric() {
            verifier_of(ctx, &info)?;
        }
        ctx.delete(&name).await?;
    }
    passed()
}

// ---------------------------------------------------------------------------------------------
// 2. sign-verify

/// For every declared asymmetric algorithm (RSA only in its smallest declared size) and every
/// declared signature scheme that fits it: signs a digest (and the message itself when
/// [`Capabilities::sign_message`] is set, or for Ed25519), checks the returned scheme and key
/// version, and verifies the signature with RustCrypto against the reported public key
/// (`p256`/`p384`/`p521` prehash ECDSA over DER, `ed25519-dalek` strict, `rsa` PKCS#1 v1.5 / PSS
/// with salt = hash length) — not with `keychain_core::verify`.
///
/// # Errors
/// [`CheckFailure`] naming the algorithm, scheme and input that failed.
pub async fn check_sign_verify(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::SignVerify);
    let result = sign_verify(&ctx).await;
    ctx.finish(result).await
}

async fn sign_verify(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    let algs = signable_all_but_big_rsa(caps);
    if algs.is_empty() {
        return skipped(
            "no algorithm in Capabilities::algorithms has a fitting scheme in Capabilities::signature_schemes",
        );
    }
    for alg in algs {
        let (name, info) = ctx.generate(alg.as_str(), &KeySpec::new(alg)).await?;
        let verifier = verifier_of(ctx, &info)?;
        let key = KeyRef::latest(name.clone());
        for scheme in schemes_for(caps, alg) {
            let message = format!("keychain-testkit sign-verify {alg} {scheme}");
            if scheme.hash().is_some() {
                sign_checked(
                    ctx.backend,
                    &key,
                    scheme,
                    message.as_bytes(),
                    false,
                    1,
                    verifier.as_ref(),
                )
                .await?;
            }
            if caps.sign_message || scheme.hash().is_none() {
                sign_checked(
                    ctx.backend,
                    &key,
                    scheme,
                    message.as_bytes(),
                    true,
                    1,
                    verifier.as_ref(),
                )
                .await?;
            }
        }
        ctx.delete(&name).await?;
    }
    passed()
}

// ---------------------------------------------------------------------------------------------
// 3. rejection

/// For one algorithm of each declared family (the cheapest curve, Ed25519, the smallest RSA):
/// two keys A and B have different public keys, and a signature by A over X verifies under A
/// but not under B, not for another input Y, and not with any one bit flipped (first, middle and
/// last byte).
///
/// # Errors
/// [`CheckFailure`] when a signature verifies where it must not (the keys are the same, or the
/// signature does not depend on the input).
pub async fn check_rejection(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::Rejection);
    let result = rejection(&ctx).await;
    ctx.finish(result).await
}

async fn rejection(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    let algs = signable_families(caps);
    if algs.is_empty() {
        return skipped(
            "no algorithm in Capabilities::algorithms has a fitting scheme in Capabilities::signature_schemes",
        );
    }
    for alg in algs {
        let Some(scheme) = schemes_for(caps, alg).first().copied() else {
            continue;
        };
        let (a, info_a) = ctx
            .generate(&format!("{alg}-a"), &KeySpec::new(alg))
            .await?;
        let (b, info_b) = ctx
            .generate(&format!("{alg}-b"), &KeySpec::new(alg))
            .await?;
        ensure!(
            info_a.public_key() != info_b.public_key(),
            "two {alg} keys ({a}, {b}) have the same public key"
        );
        let (Some(va), Some(vb)) = (verifier_of(ctx, &info_a)?, verifier_of(ctx, &info_b)?) else {
            continue;
        };
        let x = format!("keychain-testkit rejection {alg} message X");
        let y = format!("keychain-testkit rejection {alg} message Y");
        let key_a = KeyRef::latest(a.clone());
        let key_b = KeyRef::latest(b.clone());
        let sig_a = sign_checked(
            ctx.backend,
            &key_a,
            scheme,
            x.as_bytes(),
            false,
            1,
            Some(&va),
        )
        .await?;
        let sig_b = sign_checked(
            ctx.backend,
            &key_b,
            scheme,
            x.as_bytes(),
            false,
            1,
            Some(&vb),
        )
        .await?;
        ensure!(
            vb.verify(scheme, x.as_bytes(), sig_a.as_bytes()).is_err(),
            "{scheme}: a signature by key {a} verifies under key {b}"
        );
        ensure!(
            va.verify(scheme, x.as_bytes(), sig_b.as_bytes()).is_err(),
            "{scheme}: a signature by key {b} verifies under key {a}"
        );
        ensure!(
            va.verify(scheme, y.as_bytes(), sig_a.as_bytes()).is_err(),
            "{scheme}: a signature over input X by {a} also verifies for input Y"
        );
        for at in positions(sig_a.as_bytes().len()) {
            let tampered = flip(sig_a.as_bytes(), at);
            ensure!(
                va.verify(scheme, x.as_bytes(), &tampered).is_err(),
                "{scheme}: a signature by {a} with byte {at} flipped still verifies"
            );
        }
        ctx.delete(&a).await?;
        ctx.delete(&b).await?;
    }
    passed()
}

// ---------------------------------------------------------------------------------------------
// 4. bad-input

/// Malformed requests fail with the kinds the [`Backend`] docs promise:
/// - an empty key name is `InvalidInput` (`KeyName::new("")`);
/// - generating an algorithm not in the capabilities is `Unsupported` (and creates nothing);
/// - generating a key with usages its algorithm cannot have is `InvalidInput`;
/// - signing with a key that does not exist is `NotFound`;
/// - per family (cheapest curve, Ed25519, smallest RSA): a digest one byte short or long, a digest
///   made with another hash than the scheme's, a digest for Ed25519, and a declared scheme that
///   does not fit the key (ECDSA on RSA, RSA on EC, ...) are all `InvalidInput`; an undeclared,
///   non-fitting scheme is `InvalidInput` or `Unsupported`;
/// - signing with a symmetric key is `InvalidInput`, and with AEAD declared, encrypting with an
///   asymmetric key is `InvalidInput`.
///
/// # Errors
/// [`CheckFailure`] naming the request and the kind it got.
pub async fn check_bad_input(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::BadInput);
    let result = bad_input(&ctx).await;
    ctx.finish(result).await
}

/// Every signature scheme with every hash, for picking ones that do not fit a key.
fn all_schemes() -> Vec<SignatureScheme> {
    let mut all = vec![SignatureScheme::Ed25519];
    for h in HashAlg::ALL {
        all.extend([
            SignatureScheme::Ecdsa(h),
            SignatureScheme::RsaPkcs1v15(h),
            SignatureScheme::RsaPss(h),
        ]);
    }
    all
}

async fn bad_input(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    let message = b"keychain-testkit bad-input";

    expect_kind(KeyName::new(""), INVALID, "KeyName::new(\"\")")?;
    undeclared_algorithm(ctx).await?;
    impossible_usages(ctx).await?;
    sign_with_missing_key(ctx, message).await?;

    let mut asymmetric_key: Option<KeyName> = None;
    for alg in signable_families(caps) {
        let name = bad_sign_requests(ctx, alg, message).await?;
        asymmetric_key.get_or_insert(name);
    }

    symmetric_key_does_not_sign(ctx, message).await?;
    if caps.aead
        && let Some(name) = &asymmetric_key
    {
        expect_kind(
            ctx.backend
                .encrypt(&KeyRef::latest(name.clone()), message, b"")
                .await,
            INVALID,
            format_args!("encrypt (AEAD) with asymmetric key {name}"),
        )?;
    }
    passed()
}

/// Generating an algorithm the backend does not declare is `Unsupported` and creates nothing.
async fn undeclared_algorithm(ctx: &Ctx<'_>) -> R<()> {
    let b = ctx.backend;
    match KeyAlgorithm::ALL
        .into_iter()
        .find(|a| !ctx.caps().supports_algorithm(*a))
    {
        Some(alg) => {
            let name = ctx.name("undeclared")?;
            expect_kind(
                b.generate_key(&name, &KeySpec::new(alg)).await,
                &[ErrorKind::Unsupported],
                format_args!("generate_key {name} with undeclared algorithm {alg}"),
            )?;
            expect_kind(
                b.key_info(&KeyRef::latest(name.clone())).await,
                NOT_FOUND,
                format_args!("key_info {name} after a refused generate_key"),
            )?;
        }
        None => ctx.note("an undeclared algorithm (every algorithm is declared)"),
    }
    Ok(())
}

/// Usages the algorithm cannot have (nothing asymmetric encrypts with AEAD, nothing symmetric
/// signs) are `InvalidInput` and create nothing.
async fn impossible_usages(ctx: &Ctx<'_>) -> R<()> {
    let b = ctx.backend;
    if let Some(alg) = declared(ctx.caps()).first().copied() {
        let usages = if alg.is_symmetric() {
            KeyUsages::SIGN
        } else {
            KeyUsages::ENCRYPT
        };
        let name = ctx.name("bad-usages")?;
        expect_kind(
            b.generate_key(&name, &KeySpec::new(alg).with_usages(usages))
                .await,
            INVALID,
            format_args!("generate_key {name} ({alg}) with impossible usages {usages:?}"),
        )?;
        expect_kind(
            b.key_info(&KeyRef::latest(name.clone())).await,
            NOT_FOUND,
            format_args!("key_info {name} after a refused generate_key"),
        )?;
    }
    Ok(())
}

/// Signing with a key that does not exist is `NotFound`.
async fn sign_with_missing_key(ctx: &Ctx<'_>, message: &[u8]) -> R<()> {
    if let Some(scheme) = ctx.caps().signature_schemes.first().copied() {
        let name = ctx.name("missing")?;
        let d = scheme
            .hash()
            .map(|h| vec![0u8; h.output_len()])
            .unwrap_or_default();
        expect_kind(
            ctx.backend
                .sign(
                    &KeyRef::latest(name.clone()),
                    proper_input(scheme, message, &d),
                    scheme,
                )
                .await,
            NOT_FOUND,
            format_args!("sign with missing key {name}"),
        )?;
    }
    Ok(())
}

/// A key of `alg`, then the requests it must refuse: digests of the wrong length or hash (or a
/// digest where Ed25519 wants the message) with its first declared scheme, and schemes that do
/// not fit it. Returns the key's name (the key stays for later steps).
async fn bad_sign_requests(ctx: &Ctx<'_>, alg: KeyAlgorithm, message: &[u8]) -> R<KeyName> {
    let (name, _) = ctx.generate(alg.as_str(), &KeySpec::new(alg)).await?;
    let key = KeyRef::latest(name.clone());
    if let Some(scheme) = schemes_for(ctx.caps(), alg).first().copied() {
        bad_digests(ctx, &key, scheme).await?;
    }
    non_fitting_schemes(ctx, alg, &key, message).await?;
    Ok(name)
}

/// `scheme` with a digest one byte short or long, a digest of another hash, or (Ed25519) a
/// digest instead of the message: all `InvalidInput`.
async fn bad_digests(ctx: &Ctx<'_>, key: &KeyRef, scheme: SignatureScheme) -> R<()> {
    let b = ctx.backend;
    let name = key.name();
    match scheme.hash() {
        Some(h) => {
            for len in [h.output_len() - 1, h.output_len() + 1] {
                let d = vec![0x5a; len];
                expect_kind(
                    b.sign(key, SignInput::digest(h, &d), scheme).await,
                    INVALID,
                    format_args!("sign {name} with {scheme} and a {len}-byte {h} digest"),
                )?;
            }
            for other in HashAlg::ALL.into_iter().filter(|o| *o != h) {
                let d = vec![0x5a; other.output_len()];
                expect_kind(
                    b.sign(key, SignInput::digest(other, &d), scheme).await,
                    INVALID,
                    format_args!("sign {name} with {scheme} and a {other} digest"),
                )?;
            }
        }
        None => {
            let d = vec![0x5a; HashAlg::Sha512.output_len()];
            expect_kind(
                b.sign(key, SignInput::digest(HashAlg::Sha512, &d), scheme)
                    .await,
                INVALID,
                format_args!("sign {name} with {scheme} and a digest instead of the message"),
            )?;
        }
    }
    Ok(())
}

/// Schemes that do not fit a key of `alg`: declared ones must be `InvalidInput`; for undeclared
/// ones (one is tried) the contract allows `Unsupported` too (the scheme is not offered at all).
async fn non_fitting_schemes(
    ctx: &Ctx<'_>,
    alg: KeyAlgorithm,
    key: &KeyRef,
    message: &[u8],
) -> R<()> {
    let name = key.name();
    let mut undeclared_tried = false;
    for scheme in all_schemes().into_iter().filter(|s| !s.fits(alg)) {
        let declared_scheme = ctx.caps().signature_schemes.contains(&scheme);
        if !declared_scheme && undeclared_tried {
            continue;
        }
        undeclared_tried |= !declared_scheme;
        let d = scheme
            .hash()
            .map(|h| vec![0x5a; h.output_len()])
            .unwrap_or_default();
        let kinds: &[ErrorKind] = if declared_scheme {
            INVALID
        } else {
            &[ErrorKind::InvalidInput, ErrorKind::Unsupported]
        };
        expect_kind(
            ctx.backend
                .sign(key, proper_input(scheme, message, &d), scheme)
                .await,
            kinds,
            format_args!("sign {alg} key {name} with non-fitting scheme {scheme}"),
        )?;
    }
    Ok(())
}

/// Signing with a symmetric key is `InvalidInput`.
async fn symmetric_key_does_not_sign(ctx: &Ctx<'_>, message: &[u8]) -> R<()> {
    let caps = ctx.caps();
    if let Some(alg) = symmetric(caps).first().copied() {
        let (name, _) = ctx.generate(alg.as_str(), &KeySpec::new(alg)).await?;
        if let Some(scheme) = caps.signature_schemes.first().copied() {
            let d = scheme
                .hash()
                .map(|h| vec![0x5a; h.output_len()])
                .unwrap_or_default();
            expect_kind(
                ctx.backend
                    .sign(
                        &KeyRef::latest(name.clone()),
                        proper_input(scheme, message, &d),
                        scheme,
                    )
                    .await,
                INVALID,
                format_args!("sign with symmetric key {name} ({alg})"),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. aead

/// For every declared symmetric algorithm (when [`Capabilities::aead`]): round trips with and
/// without AAD; the ciphertext does not contain the plaintext; a wrong or missing AAD, a flipped
/// byte (first, middle, last) and another key of the same algorithm are `Integrity`; truncated
/// ciphertexts are `Integrity` or `InvalidInput`; two encryptions of one plaintext differ;
/// the empty plaintext round-trips; a missing key is `NotFound`.
///
/// # Errors
/// [`CheckFailure`] naming the case that failed.
pub async fn check_aead(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::Aead);
    let result = aead(&ctx).await;
    ctx.finish(result).await
}

async fn aead(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    if !caps.aead {
        return skipped("Capabilities::aead is false");
    }
    let algs = symmetric(caps);
    if algs.is_empty() {
        return skipped(
            "Capabilities::aead is set but Capabilities::algorithms has no symmetric algorithm",
        );
    }
    let b = ctx.backend;
    let plaintext: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let aad = b"keychain-testkit aad";
    for alg in algs {
        let (name, _) = ctx
            .generate(&format!("{alg}-a"), &KeySpec::new(alg))
            .await?;
        let (other, _) = ctx
            .generate(&format!("{alg}-b"), &KeySpec::new(alg))
            .await?;
        let key = KeyRef::latest(name.clone());

        let ct = b
            .encrypt(&key, &plaintext, aad)
            .await
            .during(format_args!("encrypt with {name}"))?;
        ensure!(
            ct.len() >= plaintext.len() + 16,
            "encrypt with {name}: {} bytes of ciphertext for {} bytes of plaintext leave no room for a tag",
            ct.len(),
            plaintext.len()
        );
        ensure!(
            !ct.windows(plaintext.len())
                .any(|w| w == plaintext.as_slice()),
            "encrypt with {name}: the ciphertext contains the plaintext"
        );
        let back = b
            .decrypt_aead(&name, &ct, aad)
            .await
            .during(format_args!("decrypt_aead with {name}"))?;
        ensure!(
            back.expose() == plaintext.as_slice(),
            "decrypt_aead with {name}: the plaintext differs"
        );

        let ct_no_aad = b
            .encrypt(&key, &plaintext, b"")
            .await
            .during(format_args!("encrypt with {name} and empty AAD"))?;
        let back = b
            .decrypt_aead(&name, &ct_no_aad, b"")
            .await
            .during(format_args!("decrypt_aead with {name} and empty AAD"))?;
        ensure!(
            back.expose() == plaintext.as_slice(),
            "decrypt_aead with {name} and empty AAD: the plaintext differs"
        );
        expect_kind(
            b.decrypt_aead(&name, &ct_no_aad, aad).await,
            INTEGRITY,
            format_args!("decrypt_aead with {name}: ciphertext made without AAD, given AAD"),
        )?;
        expect_kind(
            b.decrypt_aead(&name, &ct, b"keychain-testkit aaD").await,
            INTEGRITY,
            format_args!("decrypt_aead with {name} and the wrong AAD"),
        )?;
        expect_kind(
            b.decrypt_aead(&name, &ct, b"").await,
            INTEGRITY,
            format_args!("decrypt_aead with {name} and the AAD left out"),
        )?;
        for at in positions(ct.len()) {
            expect_kind(
                b.decrypt_aead(&name, &flip(&ct, at), aad).await,
                INTEGRITY,
                format_args!(
                    "decrypt_aead with {name}, byte {at} of {} flipped",
                    ct.len()
                ),
            )?;
        }
        for len in [ct.len() - 1, ct.len() / 2, 1, 0] {
            expect_kind(
                b.decrypt_aead(&name, &ct[..len], aad).await,
                &[ErrorKind::Integrity, ErrorKind::InvalidInput],
                format_args!("decrypt_aead with {name}, ciphertext truncated to {len} bytes"),
            )?;
        }
        expect_kind(
            b.decrypt_aead(&other, &ct, aad).await,
            INTEGRITY,
            format_args!("decrypt_aead with {other}, ciphertext made by {name}"),
        )?;
        let ct2 = b
            .encrypt(&key, &plaintext, aad)
            .await
            .during(format_args!("encrypt with {name}"))?;
        ensure!(
            ct2 != ct,
            "encrypt with {name}: two encryptions of the same plaintext are identical (nonce reuse)"
        );
        let empty = b
            .encrypt(&key, b"", aad)
            .await
            .during(format_args!("encrypt the empty plaintext with {name}"))?;
        let back = b
            .decrypt_aead(&name, &empty, aad)
            .await
            .during(format_args!("decrypt_aead the empty plaintext with {name}"))?;
        ensure!(
            back.expose().is_empty(),
            "decrypt_aead with {name}: the empty plaintext came back non-empty"
        );

        let missing = ctx.name(&format!("{alg}-missing"))?;
        expect_kind(
            b.decrypt_aead(&missing, &ct, aad).await,
            NOT_FOUND,
            format_args!("decrypt_aead with missing key {missing}"),
        )?;
        ctx.delete(&name).await?;
        ctx.delete(&other).await?;
    }
    passed()
}

// ---------------------------------------------------------------------------------------------
// 6. rsa-oaep

/// When [`Capabilities::oaep_hashes`] is non-empty and an RSA algorithm is declared: generates one
/// RSA key (smallest declared size) with usages sign + decrypt, encrypts locally with the `rsa`
/// crate's OAEP (empty label, MGF1 with the same hash) under its public key for every declared
/// hash, and requires `decrypt` to return the plaintext; a tampered ciphertext is `Integrity`.
/// With a non-RSA algorithm declared too, `decrypt` with such a key is `InvalidInput`.
///
/// # Errors
/// [`CheckFailure`] naming the hash and case that failed.
pub async fn check_rsa_oaep(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::RsaOaep);
    let result = rsa_oaep(&ctx).await;
    ctx.finish(result).await
}

fn oaep_encrypt(key: &rsa::RsaPublicKey, hash: HashAlg, plaintext: &[u8]) -> R<Vec<u8>> {
    use getrandom::rand_core::UnwrapErr;
    let mut rng = UnwrapErr(getrandom::SysRng);
    let result = match hash {
        HashAlg::Sha256 => key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha256>::new(), plaintext),
        HashAlg::Sha384 => key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha384>::new(), plaintext),
        HashAlg::Sha512 => key.encrypt(&mut rng, rsa::Oaep::<sha2::Sha512>::new(), plaintext),
        other => {
            return Err(Fail(format!(
                "testkit has no OAEP implementation with {other}"
            )));
        }
    };
    result.map_err(|e| Fail(format!("local RSA-OAEP encryption with {hash} failed: {e}")))
}

async fn rsa_oaep(ctx: &Ctx<'_>) -> R<Outcome> {
    use spki::DecodePublicKey as _;
    let caps = ctx.caps();
    if caps.oaep_hashes.is_empty() {
        return skipped("Capabilities::oaep_hashes is empty");
    }
    let Some(alg) = declared(caps).into_iter().find(|a| a.is_rsa()) else {
        return skipped(
            "Capabilities::oaep_hashes is set but Capabilities::algorithms has no RSA algorithm",
        );
    };
    let b = ctx.backend;
    // Sign + decrypt on one key where the backend allows it; a backend whose keys have one
    // usage class (a KMS key signs or decrypts) refuses that as `Unsupported`, and then gets a
    // decrypt-only key.
    let name = ctx.name(alg.as_str())?;
    let mut spec = KeySpec::new(alg).with_usages(KeyUsages::SIGN | KeyUsages::DECRYPT);
    let info = match b.generate_key(&name, &spec).await {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            ctx.note(format!("an {alg} key that both signs and decrypts ({e})"));
            spec = KeySpec::new(alg).with_usages(KeyUsages::DECRYPT);
            b.generate_key(&name, &spec).await
        }
        other => other,
    }
    .during(format_args!(
        "generate_key {name} ({alg}, {:?})",
        spec.usages
    ))?;
    check_fresh_info(&info, &name, &spec, caps, &format!("generate_key {name}"))?;
    let pk = info
        .public_key()
        .ok_or_else(|| Fail(format!("RSA key {name} has no public key")))?;
    let public = rsa::RsaPublicKey::from_public_key_der(pk.der())
        .map_err(|e| Fail(format!("RSA key {name}: public key does not parse: {e}")))?;
    let key = KeyRef::latest(name.clone());
    for hash in caps.oaep_hashes.clone() {
        let plaintext = format!("keychain-testkit rsa-oaep {hash} {}", random_hex(8));
        let ct = oaep_encrypt(&public, hash, plaintext.as_bytes())?;
        let back = b
            .decrypt(&key, &ct, RsaPadding::Oaep(hash))
            .await
            .during(format_args!("decrypt {name} with RSA-OAEP {hash}"))?;
        ensure!(
            back.expose() == plaintext.as_bytes(),
            "decrypt {name} with RSA-OAEP {hash}: the plaintext differs"
        );
        expect_kind(
            b.decrypt(&key, &flip(&ct, ct.len() - 1), RsaPadding::Oaep(hash))
                .await,
            INTEGRITY,
            format_args!("decrypt {name} with RSA-OAEP {hash}, tampered ciphertext"),
        )?;
    }
    if let Some(ec) = signable(caps).into_iter().find(|a| !a.is_rsa()) {
        let (ec_name, _) = ctx.generate(ec.as_str(), &KeySpec::new(ec)).await?;
        let hash = caps.oaep_hashes[0];
        let ct = oaep_encrypt(&public, hash, b"keychain-testkit")?;
        expect_kind(
            b.decrypt(
                &KeyRef::latest(ec_name.clone()),
                &ct,
                RsaPadding::Oaep(hash),
            )
            .await,
            INVALID,
            format_args!("decrypt (RSA-OAEP) with {ec} key {ec_name}"),
        )?;
    }
    passed()
}

// ---------------------------------------------------------------------------------------------
// 7. rotate

/// When [`Capabilities::rotate`]: rotating a missing key is `NotFound`. For the cheapest signable
/// algorithm: a version-1 signature, then `rotate_key` returns and `key_info` reports version 2
/// with versions `[1, 2]`, version 1's public key unchanged and version 2's new; new signatures
/// name version 2 and verify with its public key (not version 1's); the old signature still
/// verifies with version 1's public key as `key_info(name@1)` reports it; signing with `name@1`
/// still works and names version 1; version 3 is `NotFound`. For a symmetric algorithm (with AEAD):
/// a version-1 ciphertext decrypts after rotation, new ciphertexts (latest and `name@2`) decrypt,
/// `name@1` still encrypts, `name@3` is `NotFound`.
///
/// # Errors
/// [`CheckFailure`] naming the case that failed.
pub async fn check_rotate(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::Rotate);
    let result = rotate(&ctx).await;
    ctx.finish(result).await
}

fn check_rotated_info(info: &KeyInfo, name: &KeyName, what: &str) -> R<()> {
    ensure!(
        info.version == 2,
        "{what} {name}: after one rotation the version is {}, expected 2",
        info.version
    );
    let versions: Vec<_> = info.versions.iter().map(|v| v.version).collect();
    ensure!(
        versions == [1, 2],
        "{what} {name}: after one rotation the versions are {versions:?}, expected [1, 2]"
    );
    Ok(())
}

async fn rotate(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    if !caps.rotate {
        return skipped("Capabilities::rotate is false");
    }
    let missing = ctx.name("missing")?;
    expect_kind(
        ctx.backend.rotate_key(&missing).await,
        NOT_FOUND,
        format_args!("rotate_key missing key {missing}"),
    )?;

    let sign_alg = cheapest_signable(caps);
    let sym_alg = if caps.aead {
        symmetric(caps).first().copied()
    } else {
        None
    };
    if sign_alg.is_none() && sym_alg.is_none() {
        ctx.note("rotation of a key (no signable or AEAD algorithm declared)");
    }
    if let Some(alg) = sign_alg {
        rotate_signing_key(ctx, alg).await?;
    }
    if let Some(alg) = sym_alg {
        rotate_aead_key(ctx, alg).await?;
    }
    passed()
}

/// Rotates `name` once and checks what `rotate_key` and `key_info` report: version 2 of
/// `[1, 2]`. Returns the `KeyInfo` from `key_info`.
async fn rotate_once(ctx: &Ctx<'_>, name: &KeyName) -> R<KeyInfo> {
    let b = ctx.backend;
    let rotated = b
        .rotate_key(name)
        .await
        .during(format_args!("rotate_key {name}"))?;
    check_rotated_info(&rotated, name, "rotate_key")?;
    let info = b
        .key_info(&KeyRef::latest(name.clone()))
        .await
        .during(format_args!("key_info {name} after rotation"))?;
    check_rotated_info(&info, name, "key_info")?;
    Ok(info)
}

/// A signing key of `alg` across one rotation: version 1's public key and signatures stay, version
/// 2 has a new key and names itself, `name@1` still signs, `name@3` is `NotFound`.
async fn rotate_signing_key(ctx: &Ctx<'_>, alg: KeyAlgorithm) -> R<()> {
    let b = ctx.backend;
    let scheme = schemes_for(ctx.caps(), alg)[0];
    let (name, info1) = ctx.generate(alg.as_str(), &KeySpec::new(alg)).await?;
    let latest = KeyRef::latest(name.clone());
    let v1 = verifier_of(ctx, &info1)?;
    let msg1 = b"keychain-testkit rotate: signed by version 1";
    let sig1 = sign_checked(b, &latest, scheme, msg1, false, 1, v1.as_ref()).await?;

    let info2 = rotate_once(ctx, &name).await?;
    let pk1 = info1.public_key();
    ensure!(
        info2.version_info(1).and_then(|v| v.public_key.as_ref()) == pk1,
        "key_info {name}: version 1's public key changed after rotation"
    );
    let pk2 = info2.public_key();
    ensure!(
        pk2.is_some(),
        "key_info {name}: version 2 has no public key"
    );
    ensure!(
        pk2 != pk1,
        "key_info {name}: version 2 has the same public key as version 1"
    );

    let v2 = verifier_of_version(ctx, &info2, 2)?;
    let msg2 = b"keychain-testkit rotate: signed by version 2";
    let sig2 = sign_checked(b, &latest, scheme, msg2, false, 2, v2.as_ref()).await?;
    if let Some(v1) = &v1 {
        ensure!(
            v1.verify(scheme, msg2, sig2.as_bytes()).is_err(),
            "{name}: a signature named version 2 verifies with version 1's public key"
        );
    }

    version_1_still_works(ctx, &name, alg, scheme, pk1, msg1, sig1.as_bytes()).await?;

    let at3 = KeyRef::versioned(name.clone(), 3);
    expect_kind(
        b.key_info(&at3).await,
        NOT_FOUND,
        format_args!("key_info {at3}"),
    )?;
    let (d, _) = sign_input(scheme, msg1, false)?;
    expect_kind(
        b.sign(&at3, proper_input(scheme, msg1, &d), scheme).await,
        NOT_FOUND,
        format_args!("sign with {at3}"),
    )?;
    ctx.delete(&name).await
}

/// After rotation, `key_info(name@1)` reports version 1's public key `pk1` unchanged, version
/// 1's signature `sig1` over `msg1` still verifies with it, and `name@1` still signs as version 1.
async fn version_1_still_works(
    ctx: &Ctx<'_>,
    name: &KeyName,
    alg: KeyAlgorithm,
    scheme: SignatureScheme,
    pk1: Option<&PublicKey>,
    msg1: &[u8],
    sig1: &[u8],
) -> R<()> {
    let at1 = KeyRef::versioned(name.clone(), 1);
    let info_at1 = ctx
        .backend
        .key_info(&at1)
        .await
        .during(format_args!("key_info {at1} after rotation"))?;
    let old = info_at1
        .version_info(1)
        .and_then(|v| v.public_key.as_ref())
        .ok_or_else(|| Fail(format!("key_info {at1}: version 1 has no public key")))?;
    ensure!(
        Some(old) == pk1,
        "key_info {at1}: version 1's public key changed after rotation"
    );
    if let Some(v1_again) =
        Verifier::new(alg, old.der()).map_err(|e| Fail(format!("key_info {at1}: {e}")))?
    {
        v1_again.verify(scheme, msg1, sig1).map_err(|e| {
            Fail(format!(
                "{name}: the version-1 signature no longer verifies after rotation: {e}"
            ))
        })?;
        sign_checked(
            ctx.backend,
            &at1,
            scheme,
            b"keychain-testkit rotate: v1 again",
            false,
            1,
            Some(&v1_again),
        )
        .await?;
    }
    Ok(())
}

/// An AEAD key of `alg` across one rotation: a version-1 ciphertext still decrypts, new ones
/// (latest, `name@2`, `name@1`) round-trip, `name@3` is `NotFound`.
async fn rotate_aead_key(ctx: &Ctx<'_>, alg: KeyAlgorithm) -> R<()> {
    let b = ctx.backend;
    let (name, _) = ctx.generate(alg.as_str(), &KeySpec::new(alg)).await?;
    let latest = KeyRef::latest(name.clone());
    let aad = b"keychain-testkit rotate";
    let pt1 = b"encrypted under version 1";
    let ct1 = b
        .encrypt(&latest, pt1, aad)
        .await
        .during(format_args!("encrypt with {name}"))?;
    let info = rotate_once(ctx, &name).await?;
    ensure!(
        info.versions.iter().all(|v| v.public_key.is_none()),
        "key_info {name}: a symmetric key reports a public key after rotation"
    );
    let back = b.decrypt_aead(&name, &ct1, aad).await.during(format_args!(
        "decrypt_aead of a version-1 ciphertext after rotating {name}"
    ))?;
    ensure!(
        back.expose() == pt1,
        "decrypt_aead {name}: the version-1 plaintext differs after rotation"
    );
    for key in [
        latest.clone(),
        KeyRef::versioned(name.clone(), 2),
        KeyRef::versioned(name.clone(), 1),
    ] {
        let pt = format!("encrypted with {key} after rotation");
        let ct = b
            .encrypt(&key, pt.as_bytes(), aad)
            .await
            .during(format_args!("encrypt with {key}"))?;
        let back = b
            .decrypt_aead(&name, &ct, aad)
            .await
            .during(format_args!("decrypt_aead of a ciphertext made with {key}"))?;
        ensure!(
            back.expose() == pt.as_bytes(),
            "decrypt_aead of a ciphertext made with {key}: the plaintext differs"
        );
    }
    let at3 = KeyRef::versioned(name.clone(), 3);
    expect_kind(
        b.encrypt(&at3, pt1, aad).await,
        NOT_FOUND,
        format_args!("encrypt with {at3}"),
    )?;
    ctx.delete(&name).await
}
// ---------------------------------------------------------------------------------------------
// 8. lifecycle

/// With the cheapest declared algorithm: three keys created out of order are listed by
/// `list_keys` under exactly their names, sorted (and the whole list is sorted); a second
/// `generate_key` with a taken name — same or other algorithm — is `AlreadyExists` and leaves the
/// first key as it was (same algorithm, version, public key; an earlier ciphertext still
/// decrypts); a version that does not exist is `NotFound`; `delete_key` removes the key from
/// `key_info` (`NotFound`), from `list_keys` and from `sign`/`decrypt_aead` (`NotFound`); deleting
/// again, or a key never created, is `NotFound`.
///
/// # Errors
/// [`CheckFailure`] naming the case that failed.
pub async fn check_lifecycle(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::Lifecycle);
    let result = lifecycle(&ctx).await;
    ctx.finish(result).await
}

async fn listed_names(ctx: &Ctx<'_>) -> R<Vec<KeyName>> {
    let list = ctx.backend.list_keys().await.during("list_keys")?;
    let names: Vec<KeyName> = list.iter().map(|k| k.name.clone()).collect();
    ensure!(
        names.windows(2).all(|w| w[0] < w[1]),
        "list_keys: the names are not sorted (or not unique): {:?}",
        names
            .iter()
            .filter(|n| n.as_str().starts_with(ctx.prefix()))
            .collect::<Vec<_>>()
    );
    Ok(names
        .into_iter()
        .filter(|n| n.as_str().starts_with(ctx.prefix()))
        .collect())
}

async fn lifecycle(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    let algs = declared(caps);
    let Some(alg) = algs.first().copied() else {
        return skipped("Capabilities::algorithms is empty");
    };
    let b = ctx.backend;
    let spec = KeySpec::new(alg);
    let mut made = Vec::new();
    for suffix in ["c", "a", "b"] {
        made.push(ctx.generate(suffix, &spec).await?);
    }
    let (c, info_c) = made.remove(0);
    let (a, _) = made.remove(0);
    let (bb, _) = made.remove(0);

    listed_exactly(ctx, alg, &[a.clone(), bb.clone(), c.clone()]).await?;
    already_exists_keeps_the_first(ctx, alg, &algs, &c, &info_c).await?;

    // Versions that do not exist.
    b.key_info(&KeyRef::versioned(a.clone(), 1))
        .await
        .during(format_args!("key_info {a}@1"))?;
    for v in [2, 99] {
        let at = KeyRef::versioned(a.clone(), v);
        expect_kind(
            b.key_info(&at).await,
            NOT_FOUND,
            format_args!("key_info {at} of a key with one version"),
        )?;
    }

    delete_removes_everywhere(ctx, alg, &a, &bb, &c).await?;

    let never = ctx.name("never-created")?;
    expect_kind(
        b.key_info(&KeyRef::latest(never.clone())).await,
        NOT_FOUND,
        format_args!("key_info {never}"),
    )?;
    expect_kind(
        b.delete_key(&never).await,
        NOT_FOUND,
        format_args!("delete_key {never}"),
    )?;
    passed()
}

/// `list_keys` lists exactly `want` (sorted) under this check's prefix, each as `alg`.
async fn listed_exactly(ctx: &Ctx<'_>, alg: KeyAlgorithm, want: &[KeyName]) -> R<()> {
    let listed = listed_names(ctx).await?;
    ensure!(
        listed == want,
        "list_keys: expected exactly {want:?} under this check's prefix, got {listed:?}"
    );
    let list = ctx.backend.list_keys().await.during("list_keys")?;
    for info in list.iter().filter(|k| want.contains(&k.name)) {
        ensure!(
            info.algorithm == alg,
            "list_keys: {} is listed as {}, created as {alg}",
            info.name,
            info.algorithm
        );
    }
    Ok(())
}

/// A second `generate_key` named `c` — same algorithm `alg`, or another of `algs` (not RSA,
/// which is slow) — is `AlreadyExists` and leaves the key as `info_c` describes it (and, for an
/// AEAD key, an earlier ciphertext still decrypts).
async fn already_exists_keeps_the_first(
    ctx: &Ctx<'_>,
    alg: KeyAlgorithm,
    algs: &[KeyAlgorithm],
    c: &KeyName,
    info_c: &KeyInfo,
) -> R<()> {
    let b = ctx.backend;
    let aad = b"keychain-testkit lifecycle";
    let ct = if alg.is_symmetric() && ctx.caps().aead {
        Some(
            b.encrypt(&KeyRef::latest(c.clone()), b"before", aad)
                .await
                .during(format_args!("encrypt with {c}"))?,
        )
    } else {
        None
    };
    expect_kind(
        b.generate_key(c, &KeySpec::new(alg)).await,
        &[ErrorKind::AlreadyExists],
        format_args!("generate_key {c} a second time"),
    )?;
    if let Some(other) = algs.iter().copied().find(|o| *o != alg && !o.is_rsa()) {
        expect_kind(
            b.generate_key(c, &KeySpec::new(other)).await,
            &[ErrorKind::AlreadyExists],
            format_args!("generate_key {c} a second time, as {other}"),
        )?;
    }
    let after = b
        .key_info(&KeyRef::latest(c.clone()))
        .await
        .during(format_args!(
            "key_info {c} after a refused second generate_key"
        ))?;
    ensure!(
        after.algorithm == alg && after.version == 1 && after.public_key() == info_c.public_key(),
        "generate_key {c} a second time changed the existing key (algorithm {}, version {}, public key {})",
        after.algorithm,
        after.version,
        if after.public_key() == info_c.public_key() {
            "unchanged"
        } else {
            "changed"
        }
    );
    if let Some(ct) = ct {
        let back = b.decrypt_aead(c, &ct, aad).await.during(format_args!(
            "decrypt_aead {c} after a refused second generate_key"
        ))?;
        ensure!(
            back.expose() == b"before",
            "generate_key {c} a second time changed the existing key"
        );
    }
    Ok(())
}

/// Deleting `a` removes it from `key_info`, `list_keys` (which keeps `bb` and `c`) and `sign`;
/// deleting it again is `NotFound`; for an AEAD algorithm, a deleted key (`bb`) no longer
/// decrypts its ciphertexts.
async fn delete_removes_everywhere(
    ctx: &Ctx<'_>,
    alg: KeyAlgorithm,
    a: &KeyName,
    bb: &KeyName,
    c: &KeyName,
) -> R<()> {
    let b = ctx.backend;
    b.delete_key(a)
        .await
        .during(format_args!("delete_key {a}"))?;
    expect_kind(
        b.key_info(&KeyRef::latest(a.clone())).await,
        NOT_FOUND,
        format_args!("key_info {a} after delete_key"),
    )?;
    let listed = listed_names(ctx).await?;
    let want = vec![bb.clone(), c.clone()];
    ensure!(
        listed == want,
        "list_keys after deleting {a}: expected {want:?}, got {listed:?}"
    );
    expect_kind(
        b.delete_key(a).await,
        NOT_FOUND,
        format_args!("delete_key {a} a second time"),
    )?;
    if let Some(scheme) = schemes_for(ctx.caps(), alg).first().copied() {
        let (d, _) = sign_input(scheme, b"deleted", false)?;
        expect_kind(
            b.sign(
                &KeyRef::latest(a.clone()),
                proper_input(scheme, b"deleted", &d),
                scheme,
            )
            .await,
            NOT_FOUND,
            format_args!("sign with deleted key {a}"),
        )?;
    }
    if alg.is_symmetric() && ctx.caps().aead {
        let aad = b"keychain-testkit lifecycle";
        let ct = b
            .encrypt(&KeyRef::latest(bb.clone()), b"x", aad)
            .await
            .during(format_args!("encrypt with {bb}"))?;
        b.delete_key(bb)
            .await
            .during(format_args!("delete_key {bb}"))?;
        expect_kind(
            b.decrypt_aead(bb, &ct, aad).await,
            NOT_FOUND,
            format_args!("decrypt_aead with deleted key {bb}"),
        )?;
    }
    Ok(())
}
// ---------------------------------------------------------------------------------------------
// 9. concurrency

/// Number of tasks [`check_concurrency`] runs at once.
const TASKS: usize = 64;
/// Operations of each kind per task.
const OPS_PER_TASK: usize = 3;

/// 64 tokio tasks share one `Arc<dyn Backend>`; each signs three messages with one shared key
/// (the cheapest signable algorithm) and verifies every signature with RustCrypto, and with
/// [`Capabilities::aead`] also encrypts and decrypts three messages with one shared symmetric key.
/// Takes the `Arc` because the tasks are spawned (`tokio::spawn`, so it needs a tokio runtime).
///
/// # Errors
/// [`CheckFailure`] with the first task's failure (or panic).
pub async fn check_concurrency(backend: Arc<dyn Backend>) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend.as_ref(), Check::Concurrency);
    let result = concurrency(&ctx, &backend).await;
    ctx.finish(result).await
}

async fn concurrency(ctx: &Ctx<'_>, backend: &Arc<dyn Backend>) -> R<Outcome> {
    let caps = ctx.caps();
    let sign_alg = cheapest_signable(caps);
    let sym_alg = if caps.aead {
        symmetric(caps).first().copied()
    } else {
        None
    };
    if sign_alg.is_none() && sym_alg.is_none() {
        return skipped("no signable algorithm and no AEAD algorithm declared");
    }
    let mut signer = None;
    if let Some(alg) = sign_alg {
        let (name, info) = ctx.generate(alg.as_str(), &KeySpec::new(alg)).await?;
        let verifier = verifier_of(ctx, &info)?.map(Arc::new);
        signer = Some((KeyRef::latest(name), schemes_for(caps, alg)[0], verifier));
    }
    let mut sealer = None;
    if let Some(alg) = sym_alg {
        let (name, _) = ctx.generate(alg.as_str(), &KeySpec::new(alg)).await?;
        sealer = Some(name);
    }

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let backend = Arc::clone(backend);
        let signer = signer.clone();
        let sealer = sealer.clone();
        tasks.spawn(async move {
            for op in 0..OPS_PER_TASK {
                let message = format!("keychain-testkit concurrency task {task} op {op}");
                if let Some((key, scheme, verifier)) = &signer {
                    sign_checked(
                        backend.as_ref(),
                        key,
                        *scheme,
                        message.as_bytes(),
                        false,
                        1,
                        verifier.as_deref(),
                    )
                    .await
                    .map_err(|Fail(e)| Fail(format!("task {task}: {e}")))?;
                }
                if let Some(name) = &sealer {
                    let aad = task.to_be_bytes();
                    let ct = backend
                        .encrypt(&KeyRef::latest(name.clone()), message.as_bytes(), &aad)
                        .await
                        .during(format_args!("task {task}: encrypt with {name}"))?;
                    let back = backend
                        .decrypt_aead(name, &ct, &aad)
                        .await
                        .during(format_args!("task {task}: decrypt_aead with {name}"))?;
                    ensure!(
                        back.expose() == message.as_bytes(),
                        "task {task}: decrypt_aead with {name}: the plaintext differs"
                    );
                }
            }
            Ok::<(), Fail>(())
        });
    }
    let mut first_failure = None;
    while let Some(joined) = tasks.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(Fail(e))) => e,
            Err(e) => format!("a task panicked or was cancelled: {e}"),
        };
        first_failure.get_or_insert(failure);
    }
    if let Some(e) = first_failure {
        return Err(Fail(format!("{TASKS} concurrent tasks: {e}")));
    }
    passed()
}

// ---------------------------------------------------------------------------------------------
// 10. random

/// When [`Capabilities::random`]: `random(n)` returns exactly `n` bytes for 1, 32 and 1024, two
/// 32-byte results differ, and 1024 bytes are not all one value. With
/// [`Capabilities::max_random`] set, it is at least 1024, `random(max)` returns `max` bytes and
/// `random(max + 1)` is `InvalidInput`: the declared limit is the real one.
///
/// # Errors
/// [`CheckFailure`] naming the length that failed.
pub async fn check_random(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::Random);
    let result = random(&ctx).await;
    ctx.finish(result).await
}

async fn random(ctx: &Ctx<'_>) -> R<Outcome> {
    if !ctx.caps().random {
        return skipped("Capabilities::random is false");
    }
    let b = ctx.backend;
    for len in [1, 32, 1024] {
        let bytes = b.random(len).await.during(format_args!("random({len})"))?;
        ensure!(
            bytes.len() == len,
            "random({len}) returned {} bytes",
            bytes.len()
        );
        if len == 1024 {
            ensure!(
                bytes.iter().any(|x| *x != bytes[0]),
                "random(1024) returned 1024 copies of one byte"
            );
        }
    }
    let one = b.random(32).await.during("random(32)")?;
    let two = b.random(32).await.during("random(32)")?;
    ensure!(
        one != two,
        "two calls of random(32) returned the same bytes"
    );
    if let Some(max) = ctx.caps().max_random {
        ensure!(
            max >= 1024,
            "Capabilities::max_random is {max}; the contract asks for at least 1024"
        );
        let bytes = b.random(max).await.during(format_args!("random({max})"))?;
        ensure!(
            bytes.len() == max,
            "random({max}) returned {} bytes",
            bytes.len()
        );
        expect_kind(
            b.random(max.saturating_add(1)).await,
            &[ErrorKind::InvalidInput],
            format_args!(
                "random({}) past Capabilities::max_random",
                max.saturating_add(1)
            ),
        )?;
    }
    passed()
}

// ---------------------------------------------------------------------------------------------
// 11. export-import

/// When both [`Capabilities::export_wrapped`] and [`Capabilities::import_wrapped`]: an exportable
/// key (the cheapest signable algorithm, else a symmetric one with AEAD) is exported with
/// `WrappingSpec::Password`, imported under a new name with the same password, and the imported
/// key has the same public key and its signatures verify with the original public key (a
/// symmetric one round-trips). Importing with a wrong password is `Unauthenticated` and creates
/// nothing; exporting a key created non-exportable is `PermissionDenied`.
///
/// # Errors
/// [`CheckFailure`] naming the case that failed.
pub async fn check_export_import(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::ExportImport);
    let result = export_import(&ctx).await;
    ctx.finish(result).await
}

fn password(s: &str) -> WrappingSpec {
    WrappingSpec::Password(SecretString::from(s))
}

async fn export_import(ctx: &Ctx<'_>) -> R<Outcome> {
    let caps = ctx.caps();
    if !(caps.export_wrapped && caps.import_wrapped) {
        return skipped(
            "Capabilities::export_wrapped and Capabilities::import_wrapped are not both set",
        );
    }
    // The cheapest signable algorithm first, then the others, then AES: a backend may be unable
    // to export some algorithms (`Unsupported`, noted), but it must export one.
    let mut order = signable(caps);
    order.sort_by_key(|a| crate::ctx::cost(*a));
    if caps.aead {
        order.extend(symmetric(caps));
    }
    if order.is_empty() {
        return skipped("no signable algorithm and no AEAD algorithm to export");
    }
    let b = ctx.backend;
    let good = format!("kt-password-{}", random_hex(8));
    let (alg, info, wrapped) = export_first_exportable(ctx, order, &good).await?;
    import_and_use(ctx, &info, &wrapped, &good).await?;

    let wrong = ctx.name(&format!("{alg}-wrong"))?;
    expect_kind(
        b.import_wrapped(
            &wrong,
            &wrapped,
            &password(&format!("{good}-wrong")),
            &ImportSpec::new().algorithm(alg),
        )
        .await,
        &[ErrorKind::Unauthenticated],
        format_args!("import_wrapped {wrong} with a wrong password"),
    )?;
    expect_kind(
        b.key_info(&KeyRef::latest(wrong.clone())).await,
        NOT_FOUND,
        format_args!("key_info {wrong} after import_wrapped with a wrong password"),
    )?;

    let (sealed, _) = ctx
        .generate(&format!("{alg}-sealed"), &KeySpec::new(alg))
        .await?;
    expect_kind(
        b.export_wrapped(&KeyRef::latest(sealed.clone()), &password(&good))
            .await,
        &[ErrorKind::PermissionDenied],
        format_args!("export_wrapped of non-exportable key {sealed}"),
    )?;
    passed()
}

/// Creates an exportable key of each algorithm of `order` in turn until one exports under the
/// password `good` (an `Unsupported` export is noted and the next algorithm tried; any other
/// error fails). Returns the algorithm, the original key's `KeyInfo` and the wrapped key.
async fn export_first_exportable(
    ctx: &Ctx<'_>,
    order: Vec<KeyAlgorithm>,
    good: &str,
) -> R<(KeyAlgorithm, KeyInfo, WrappedKey)> {
    let mut exported = None;
    for alg in order {
        let spec = KeySpec::new(alg).exportable(true);
        let (orig, info) = ctx.generate(&format!("{alg}-orig"), &spec).await?;
        check_fresh_info(
            &info,
            &orig,
            &spec,
            ctx.caps(),
            &format!("generate_key {orig} (exportable)"),
        )?;
        match ctx
            .backend
            .export_wrapped(&KeyRef::latest(orig.clone()), &password(good))
            .await
        {
            Ok(wrapped) => {
                exported = Some((alg, orig, info, wrapped));
                break;
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                ctx.note(format!("exporting {alg} keys ({e})"));
                ctx.delete(&orig).await?;
            }
            Err(e) => {
                return Err(Fail(format!(
                    "export_wrapped {orig} with a password failed: {e}"
                )));
            }
        }
    }
    let Some((alg, orig, info, wrapped)) = exported else {
        return Err(Fail(
            "Capabilities::export_wrapped is set but no algorithm exported".to_owned(),
        ));
    };
    ensure!(
        wrapped.algorithm == alg,
        "export_wrapped {orig}: the WrappedKey says {}, the key is {alg}",
        wrapped.algorithm
    );
    ensure!(
        !wrapped.bytes.is_empty(),
        "export_wrapped {orig}: the WrappedKey is empty"
    );
    Ok((alg, info, wrapped))
}

/// Imports `wrapped` (exported from the key `info` describes) under a new name with the right
/// password `good`: the `KeyInfo` names the copy and the algorithm, an asymmetric copy has the
/// same public key and its signatures verify with the original's, a symmetric one round-trips.
async fn import_and_use(ctx: &Ctx<'_>, info: &KeyInfo, wrapped: &WrappedKey, good: &str) -> R<()> {
    let b = ctx.backend;
    let alg = info.algorithm;
    let copy = ctx.name(&format!("{alg}-copy"))?;
    let imported = b
        .import_wrapped(
            &copy,
            wrapped,
            &password(good),
            &ImportSpec::new().algorithm(alg),
        )
        .await
        .during(format_args!(
            "import_wrapped {copy} with the right password"
        ))?;
    ensure!(
        imported.name == copy,
        "import_wrapped {copy}: KeyInfo names the key {}",
        imported.name
    );
    ensure!(
        imported.algorithm == alg,
        "import_wrapped {copy}: KeyInfo says {}, the exported key is {alg}",
        imported.algorithm
    );
    if alg.is_asymmetric() {
        ensure!(
            imported.public_key() == info.public_key(),
            "import_wrapped {copy}: the public key differs from the exported key's"
        );
        if let Some(v) = verifier_of(ctx, info)? {
            let scheme = schemes_for(ctx.caps(), alg)[0];
            let version = imported.version;
            sign_checked(
                b,
                &KeyRef::latest(copy.clone()),
                scheme,
                b"keychain-testkit imported",
                false,
                version,
                Some(&v),
            )
            .await
            .map_err(|Fail(e)| {
                Fail(format!(
                    "the imported key's signature against the original public key: {e}"
                ))
            })?;
        }
    } else {
        let ct = b
            .encrypt(&KeyRef::latest(copy.clone()), b"imported", b"")
            .await
            .during(format_args!("encrypt with imported key {copy}"))?;
        let back = b
            .decrypt_aead(&copy, &ct, b"")
            .await
            .during(format_args!("decrypt_aead with imported key {copy}"))?;
        ensure!(
            back.expose() == b"imported",
            "decrypt_aead with imported key {copy}: the plaintext differs"
        );
    }
    Ok(())
}
// ---------------------------------------------------------------------------------------------
// 12. attest

/// When [`Capabilities::attest`]: an attestation of the cheapest signable key over a random
/// nonce names the key's current version, its signature verifies over the statement with the
/// attestation key (with RustCrypto, not `keychain_core::verify`), the statement carries the
/// nonce verbatim, a statement with its last byte flipped does not verify, two attestations come
/// from the same attestation key, and a missing key is `NotFound`. Format-specific checks (that
/// the statement names *this* key) are the backend's verifier's job.
///
/// # Errors
/// [`CheckFailure`] naming the case that failed.
pub async fn check_attest(backend: &dyn Backend) -> Result<Outcome, CheckFailure> {
    let ctx = Ctx::new(backend, Check::Attest);
    let result = attest(&ctx).await;
    ctx.finish(result).await
}

async fn attest(ctx: &Ctx<'_>) -> R<Outcome> {
    if !ctx.caps().attest {
        return skipped("Capabilities::attest is false");
    }
    let Some(algorithm) = cheapest_signable(ctx.caps()) else {
        return Err(Fail(
            "Capabilities::attest is set but no algorithm signs".to_owned(),
        ));
    };
    let (name, info) = ctx.generate("attested", &KeySpec::new(algorithm)).await?;
    let b = ctx.backend;
    let nonce = random_hex(16).into_bytes();
    let key = KeyRef::from(&name);
    let att = b.attest_key(&key, &nonce).await.during("attest_key")?;
    ensure!(
        att.key_version == info.version,
        "attestation names version {}, the key's current is {}",
        att.key_version,
        info.version
    );
    let attestation_key = att.attestation_key.algorithm();
    let verifier = Verifier::new(attestation_key, att.attestation_key.der())
        .map_err(|e| Fail(format!("the attestation key: {e}")))?;
    if let Some(v) = &verifier {
        v.verify(att.signature_scheme, &att.statement, &att.signature)
            .map_err(|e| {
                Fail(format!(
                    "the attestation's signature does not verify with RustCrypto under its \
                     attestation key: {e}"
                ))
            })?;
    } else {
        ctx.note(format!(
            "attestations signed by {attestation_key} keys against an independent verifier \
             (none compiled in)"
        ));
    }
    ensure!(
        att.statement
            .windows(nonce.len())
            .any(|w| w == nonce.as_slice()),
        "the attestation's statement does not carry the nonce"
    );
    let mut tampered = att.statement.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    if let Some(v) = &verifier {
        ensure!(
            v.verify(att.signature_scheme, &tampered, &att.signature)
                .is_err(),
            "the attestation's signature also verifies over its statement with the last byte \
             flipped"
        );
    }
    let again = b
        .attest_key(&key, b"another nonce")
        .await
        .during("attest_key again")?;
    ensure!(
        again.attestation_key == att.attestation_key,
        "two attestations came from different attestation keys"
    );
    let missing = ctx.name("missing")?;
    expect_kind(
        b.attest_key(&KeyRef::from(&missing), &nonce).await,
        &[ErrorKind::NotFound],
        "attest_key of a missing key",
    )?;
    ctx.delete(&name).await?;
    passed()
}
