//! `cargo xtask bench`: the TPM backend side by side with bare tss-esapi on the same swtpm
//! (`KEYCHAIN_TEST_TPM2_TCTI`), signing a P-256 digest with the same key:
//!
//! - (a) a bare loop of `TPM2_Sign` on a key loaded once — what the backend's loaded-key cache
//!   should come close to;
//! - (b) a bare load–sign–flush loop — what a backend without the cache would do.
//!
//! Each comparison uses the same session kind on both sides: a password session, or (the
//! backend's default) an HMAC session salted with the SRK with the digest encrypted.
//!
//! swtpm serves one connection at a time, so the two sides cannot run at once: rounds alternate,
//! each side connecting for its round (connecting is not timed), and the best round of each
//! counts. Output: a Markdown table on stdout (`ratio = keychain / baseline`, higher is better).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark binary: it reports on stdout and fails loudly"
)]

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keychain_bench::{is_bench_run, op, round, row, runtime};
use keychain_core::{
    Backend, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySpec, SignInput, SignatureScheme,
};
use keychain_tpm2::{Config, TpmBackend};
use tss_esapi::Context;
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Digest, HashScheme, HashcheckTicket, Private, Public, SignatureScheme as TpmScheme,
    SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::UnMarshall as _;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

const ROUND: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 5;
const WARMUP: usize = 20;

fn main() {
    if !is_bench_run() {
        return;
    }
    let Ok(tcti) = std::env::var("KEYCHAIN_TEST_TPM2_TCTI") else {
        println!("skipped: tpm2 not configured (run through `cargo xtask bench`)");
        return;
    };
    runtime().block_on(run(tcti));
}

#[derive(Clone, Copy, PartialEq)]
enum Session {
    Password,
    Salted,
}

#[derive(Clone, Copy, PartialEq)]
enum Bare {
    Loaded,
    LoadSignFlush,
}

/// The key's blobs as the backend stored them.
fn blobs(dir: &std::path::Path, name: &str) -> (Public, Vec<u8>) {
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("keys").join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    let decode = |field: &str| -> Vec<u8> {
        let b64 = record["versions"][0][field].as_str().unwrap();
        <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64).unwrap()
    };
    let public = Public::unmarshall(&decode("public")[2..]).unwrap();
    (public, decode("private")[2..].to_vec())
}

fn ticket() -> HashcheckTicket {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .unwrap()
}

/// Signs for `length` on a fresh connection of its own; ops/s.
fn bare_round(
    tcti: &str,
    key: &(Public, Vec<u8>),
    digest: &[u8],
    session: Session,
    mode: Bare,
    length: Duration,
    warmup: usize,
) -> f64 {
    let mut ctx = Context::new(TctiNameConf::from_str(tcti).unwrap()).unwrap();
    let srk: KeyHandle = ctx
        .tr_from_tpm_public(TpmHandle::Persistent(
            PersistentTpmHandle::new(keychain_tpm2::DEFAULT_SRK_HANDLE).unwrap(),
        ))
        .unwrap()
        .into();
    let auth = match session {
        Session::Password => AuthSession::Password,
        Session::Salted => {
            let s = ctx
                .start_auth_session(
                    Some(srk),
                    None,
                    None,
                    SessionType::Hmac,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
                .unwrap()
                .unwrap();
            let (attributes, mask) = SessionAttributesBuilder::new()
                .with_continue_session(true)
                .with_decrypt(true)
                .build();
            ctx.tr_sess_set_attributes(s, attributes, mask).unwrap();
            s
        }
    };
    let (public, private) = key;
    let private = Private::try_from(private.clone()).unwrap();
    let digest = Digest::try_from(digest.to_vec()).unwrap();
    let scheme = TpmScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    let load = |ctx: &mut Context| {
        ctx.execute_with_session(Some(auth), |ctx| {
            ctx.load(srk, private.clone(), public.clone())
        })
        .unwrap()
    };
    let loaded = (mode == Bare::Loaded).then(|| load(&mut ctx));
    let once = |ctx: &mut Context| {
        let handle = loaded.unwrap_or_else(|| load(ctx));
        let sig = ctx
            .execute_with_session(Some(auth), |ctx| {
                ctx.sign(handle, digest.clone(), scheme, ticket())
            })
            .unwrap();
        std::hint::black_box(sig);
        if loaded.is_none() {
            ctx.flush_context(handle.into()).unwrap();
        }
    };
    for _ in 0..warmup {
        once(&mut ctx);
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < length {
        once(&mut ctx);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    if let Some(h) = loaded {
        ctx.flush_context(h.into()).unwrap();
    }
    if let AuthSession::Password = auth {
    } else {
        let handle: tss_esapi::handles::SessionHandle = auth.into();
        ctx.flush_context(handle.into()).unwrap();
    }
    rate
}

/// One round of the backend's sign on a connection of its own; ops/s.
async fn backend_round(
    tcti: &str,
    dir: &std::path::Path,
    name: &KeyName,
    digest: Arc<[u8]>,
    session: Session,
) -> f64 {
    let config = Config::new(tcti, dir).with_parameter_encryption(session == Session::Salted);
    let backend = Arc::new(TpmBackend::open(config).await.unwrap());
    let sign = {
        let (b, key) = (Arc::clone(&backend), KeyRef::from(name));
        op(move || {
            let (b, key, digest) = (Arc::clone(&b), key.clone(), Arc::clone(&digest));
            async move {
                let sig = b
                    .sign(
                        &key,
                        SignInput::digest(HashAlg::Sha256, &digest),
                        SignatureScheme::Ecdsa(HashAlg::Sha256),
                    )
                    .await
                    .unwrap();
                std::hint::black_box(sig);
            }
        })
    };
    for _ in 0..WARMUP {
        sign().await;
    }
    let rate = round(&sign, 1, ROUND).await;
    backend.close().await.unwrap();
    rate
}

async fn run(tcti: String) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys-store");
    let name = KeyName::new("bench-p256").unwrap();
    {
        let backend = TpmBackend::open(Config::new(&tcti, &keys)).await.unwrap();
        backend
            .generate_key(&name, &KeySpec::new(KeyAlgorithm::EcP256))
            .await
            .unwrap();
        backend.close().await.unwrap();
    }
    let key = blobs(&keys, name.as_str());
    let digest: Arc<[u8]> = HashAlg::Sha256.digest(b"keychain bench").into();

    println!("### keychain-tpm2 (swtpm 0.7 on 127.0.0.1, one connection)\n");
    println!("| operation | keychain | baseline (bare tss-esapi) | ratio |");
    println!("|---|---:|---:|---:|");
    for (label, session, mode) in [
        (
            "sign ECDSA P-256, password session — (a) vs bare loop on a loaded key",
            Session::Password,
            Bare::Loaded,
        ),
        (
            "sign ECDSA P-256, salted session + parameter encryption — (a) vs bare loop on a loaded key",
            Session::Salted,
            Bare::Loaded,
        ),
        (
            "sign ECDSA P-256, password session — (b) vs bare load–sign–flush loop",
            Session::Password,
            Bare::LoadSignFlush,
        ),
        (
            "sign ECDSA P-256, salted session + parameter encryption — (b) vs bare load–sign–flush loop",
            Session::Salted,
            Bare::LoadSignFlush,
        ),
    ] {
        let (mut k, mut b) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            k = k.max(backend_round(&tcti, &keys, &name, Arc::clone(&digest), session).await);
            let (tcti, key, digest) = (tcti.clone(), key.clone(), Arc::clone(&digest));
            b = b.max(
                tokio::task::spawn_blocking(move || {
                    bare_round(&tcti, &key, &digest, session, mode, ROUND, WARMUP)
                })
                .await
                .unwrap(),
            );
        }
        println!("{}", row(label, k, b));
    }
    println!();
}
