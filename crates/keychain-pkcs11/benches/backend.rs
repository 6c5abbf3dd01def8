//! `cargo xtask bench`: the PKCS#11 backend on SoftHSM side by side with bare `cryptoki`.
//!
//! The token is the one `cargo xtask services start` makes (settings from
//! `KEYCHAIN_TEST_PKCS11_MODULE` / `_TOKEN` / `_PIN`). Rows: ECDSA P-256 and RSA-2048 PKCS#1 v1.5
//! signatures of a SHA-256 digest through the backend (1 and 2 concurrent tasks on a 2-worker
//! runtime) against a bare `cryptoki` loop with one session per OS thread (1 and 2 threads) on
//! the same key objects, through the default dispatch (adaptive: SoftHSM's fast P-256 calls run
//! inline, RSA runs off-thread); P-256 once more through a backend with `dispatch = off-thread`
//! (a thread hand-off per call); and opening a second backend on a module another backend holds (the
//! shared context) against the 1 ms target. Output: a
//! Markdown table on stdout (`ratio = keychain / baseline`, higher is better).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark binary: it reports on stdout and fails loudly"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keychain_bench::{Op, Plan, is_bench_run, op, round, row, runtime};
use keychain_core::{
    Backend, HashAlg, KeyAlgorithm, KeyName, KeyRef, KeySpec, SecretSource, SignInput,
    SignatureScheme,
};
use keychain_pkcs11::{Config, Dispatch, Pkcs11Backend};

/// DER DigestInfo prefix of SHA-256 (RFC 8017 §9.2), what CKM_RSA_PKCS signs before the digest.
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

struct Token {
    module: PathBuf,
    label: String,
    pin: String,
}

/// One bare-cryptoki signing setup: the key labelled `label` on `slot`, signing `data`.
struct Bare<'a> {
    ctx: &'a Pkcs11,
    slot: Slot,
    pin: &'a str,
    label: &'a str,
    /// Built in each thread: cryptoki's `Mechanism` is not `Sync`.
    mechanism: fn() -> Mechanism<'static>,
    data: &'a [u8],
}

/// Bare cryptoki: `threads` threads, each with its own logged-in session, signing until the
/// round ends. Operations per second.
fn bare_round(bare: &Bare<'_>, threads: usize, length: Duration) -> f64 {
    let Bare {
        ctx,
        slot,
        pin,
        label,
        mechanism,
        data,
    } = *bare;
    let start = Instant::now();
    let deadline = start + length;
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let session = ctx.open_rw_session(slot).unwrap();
                    let _ = session.login(UserType::User, Some(&AuthPin::new(pin.into())));
                    let key = find_key(&session, label);
                    let mechanism = mechanism();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        std::hint::black_box(session.sign(&mechanism, key, data).unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn find_key(session: &cryptoki::session::Session, label: &str) -> ObjectHandle {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "one private key labelled {label}");
    found[0]
}

fn main() {
    if !is_bench_run() {
        return;
    }
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (Some(module), Some(label), Some(pin)) = (
        var("KEYCHAIN_TEST_PKCS11_MODULE"),
        var("KEYCHAIN_TEST_PKCS11_TOKEN"),
        var("KEYCHAIN_TEST_PKCS11_PIN"),
    ) else {
        println!("skipped: pkcs11 not configured (run through `cargo xtask bench`)");
        return;
    };
    let token = Token {
        module: module.into(),
        label,
        pin,
    };
    runtime().block_on(run(token));
}

fn config(token: &Token) -> Config {
    Config::new(&token.module, &token.label, SecretSource::value(&token.pin))
}

async fn run(token: Token) {
    // Short rounds, many of them: this shared 2-core machine has quiet and busy seconds, and
    // the best round of each side is the one that caught a quiet one.
    let plan = Plan {
        round: Duration::from_millis(500),
        rounds: 12,
        ..Plan::default()
    };
    let backend = Arc::new(Pkcs11Backend::open(config(&token)).await.unwrap());
    // The backend initialized the module; the bare context joins it (PKCS#11 allows one
    // C_Initialize per process) and finds the token's slot itself.
    let ctx = Pkcs11::new(&token.module).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == token.label)
        })
        .expect("the bench token");

    let tag = format!("bench-{:08x}", std::process::id());
    let digest = HashAlg::Sha256.digest(b"keychain bench");
    let mut rsa_input = SHA256_DIGEST_INFO.to_vec();
    rsa_input.extend_from_slice(&digest);

    println!("### keychain-pkcs11 (SoftHSM 2.6 token)\n");
    println!("| operation | keychain | baseline (bare cryptoki) | ratio |");
    println!("|---|---:|---:|---:|");
    // The second backend runs every call off the async threads (`dispatch = "off-thread"`),
    // for the rows that show what the default's inline fast calls save.
    let off_thread = Arc::new(
        Pkcs11Backend::open(config(&token).with_dispatch(Dispatch::OffThread))
            .await
            .unwrap(),
    );
    let cases = [
        (
            &backend,
            KeyAlgorithm::EcP256,
            SignatureScheme::Ecdsa(HashAlg::Sha256),
            (|| Mechanism::Ecdsa) as fn() -> Mechanism<'static>,
            digest.clone(),
            "sign ECDSA P-256 (SHA-256 digest)",
        ),
        (
            &backend,
            KeyAlgorithm::Rsa2048,
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha256),
            || Mechanism::RsaPkcs,
            rsa_input.clone(),
            "sign RSA-2048 PKCS#1 v1.5 (SHA-256 digest)",
        ),
        (
            &off_thread,
            KeyAlgorithm::EcP256,
            SignatureScheme::Ecdsa(HashAlg::Sha256),
            || Mechanism::Ecdsa,
            digest.clone(),
            "sign ECDSA P-256 (SHA-256 digest), dispatch = off-thread",
        ),
    ];
    for (backend, alg, scheme, mechanism, input, what) in cases {
        let name = KeyName::new(format!("{tag}-{}", alg.as_str())).unwrap();
        backend
            .generate_key(&name, &KeySpec::new(alg))
            .await
            .unwrap();
        let k: Op = {
            let (b, key, digest) = (
                Arc::clone(backend),
                KeyRef::from(&name),
                Arc::<[u8]>::from(digest.clone()),
            );
            op(move || {
                let (b, key, digest) = (Arc::clone(&b), key.clone(), Arc::clone(&digest));
                async move {
                    std::hint::black_box(
                        b.sign(&key, SignInput::digest(HashAlg::Sha256, &digest), scheme)
                            .await
                            .unwrap(),
                    );
                }
            })
        };
        let mut rates = Vec::new();
        for threads in [1usize, 2] {
            let (mut kr, mut br) = (0f64, 0f64);
            let bare = Bare {
                ctx: &ctx,
                slot,
                pin: &token.pin,
                label: name.as_str(),
                mechanism,
                data: &input,
            };
            for i in 0..plan.rounds {
                // Which side goes first alternates, so neither always runs on the other's heels.
                if i % 2 == 1 {
                    br = br.max(tokio::task::block_in_place(|| {
                        bare_round(&bare, threads, plan.round)
                    }));
                }
                kr = kr.max(round(&k, threads, plan.round).await);
                if i % 2 == 0 {
                    br = br.max(tokio::task::block_in_place(|| {
                        bare_round(&bare, threads, plan.round)
                    }));
                }
            }
            println!("{}", row(&format!("{what}, {threads} thread(s)"), kr, br));
            rates.push((kr, br));
        }
        println!(
            "| {what}: 2 threads / 1 thread | {:.2}× | {:.2}× | {:.3} |",
            rates[1].0 / rates[0].0,
            rates[1].1 / rates[0].1,
            (rates[1].0 / rates[0].0) / (rates[1].1 / rates[0].1)
        );
        // Where the calls ended up (stderr: not part of the table).
        if let Some((_, d)) = backend
            .health()
            .await
            .unwrap()
            .details
            .into_iter()
            .find(|(k, _)| k == "dispatch")
        {
            eprintln!("{what}: dispatch {d}");
        }
        backend.delete_key(&name).await.unwrap();
    }

    // A second backend on the module the first one holds: no C_Initialize, a session and the
    // login state the token already has.
    let n = 50u32;
    let start = Instant::now();
    for _ in 0..n {
        let second = Pkcs11Backend::open(config(&token)).await.unwrap();
        second.close().await.unwrap();
    }
    let keychain_open = start.elapsed() / n;
    // No bare counterpart opens "a second backend": the row compares with the 1 ms target.
    let target = Duration::from_millis(1);
    println!(
        "| open a second backend on the same module (shared context), per open | {:.3} ms | {:.3} ms (target) | {:.3} |",
        keychain_open.as_secs_f64() * 1e3,
        target.as_secs_f64() * 1e3,
        target.as_secs_f64() / keychain_open.as_secs_f64()
    );
    println!();
    off_thread.close().await.unwrap();
    backend.close().await.unwrap();
}
