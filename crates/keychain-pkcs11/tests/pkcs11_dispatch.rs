//! Where the module's calls run (`Config::dispatch`), as `health()` reports it: under the
//! adaptive default a class of call runs inline when its typical duration is under
//! `INLINE_BELOW` and off-thread when it is over twice that; the fixed modes put every class in
//! one place. Each mode signs for real on the cell's SoftHSM token, on both tokio runtime
//! flavours.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use keychain_core::{Backend, BackendExt as _, KeyAlgorithm, KeyRef, KeySpec, SignInput};
use keychain_pkcs11::{Dispatch, INLINE_BELOW, Pkcs11Backend};

/// The health detail parsed: the mode, then each class as (label, inline?, typical µs).
fn classes(detail: &str) -> (String, Vec<(String, bool, u128)>) {
    let (mode, rest) = detail.split_once("; ").unwrap_or((detail, ""));
    let mut out = Vec::new();
    for part in rest.split(", ").filter(|p| !p.is_empty()) {
        let mut words = part.split(' ');
        let label = words.next().unwrap().to_owned();
        let inline = match words.next().unwrap() {
            "inline" => true,
            "off-thread" => false,
            other => panic!("unknown placement {other} in {detail}"),
        };
        let micros = words
            .next()
            .unwrap()
            .trim_start_matches('(')
            .parse()
            .unwrap();
        assert_eq!(words.next(), Some("µs)"), "{detail}");
        out.push((label, inline, micros));
    }
    (mode.to_owned(), out)
}

async fn dispatch_detail(b: &Pkcs11Backend) -> String {
    let health = b.health().await.unwrap();
    health
        .details
        .iter()
        .find(|(k, _)| k == "dispatch")
        .map(|(_, v)| v.clone())
        .expect("a dispatch detail")
}

/// Signs with a P-256 and an RSA-2048 key and reads random bytes, each call checked; returns
/// the dispatch detail afterwards.
async fn exercise(env: &common::Env, dispatch: Dispatch) -> String {
    let b = Pkcs11Backend::open(env.config().with_dispatch(dispatch))
        .await
        .unwrap();
    let before = dispatch_detail(&b).await;
    let mode = match dispatch {
        Dispatch::Adaptive => "adaptive",
        Dispatch::OffThread => "off-thread",
        _ => "inline",
    };
    // Before the first call nothing is timed: the detail is the mode alone.
    assert_eq!(before, mode);
    let names = [
        (env.name("dispatch-ec"), KeyAlgorithm::EcP256),
        (env.name("dispatch-rsa"), KeyAlgorithm::Rsa2048),
    ];
    for (name, alg) in &names {
        b.generate_key(name, &KeySpec::new(*alg)).await.unwrap();
        for i in 0..12u8 {
            let message = [i; 40];
            let sig = b.sign_message(&KeyRef::from(name), &message).await.unwrap();
            b.verify(name, SignInput::message(&message), &sig)
                .await
                .unwrap();
        }
    }
    for _ in 0..4 {
        let r = b.random(32).await.unwrap();
        assert_eq!(r.len(), 32);
    }
    let after = dispatch_detail(&b).await;
    for (name, _) in &names {
        b.delete_key(name).await.unwrap();
    }
    b.close().await.unwrap();
    after
}

async fn check_all_modes(env: &common::Env) {
    let limit = INLINE_BELOW.as_micros();

    let detail = exercise(env, Dispatch::Adaptive).await;
    let (mode, seen) = classes(&detail);
    assert_eq!(mode, "adaptive", "{detail}");
    for label in ["ec-p256", "rsa-2048", "random"] {
        assert!(seen.iter().any(|(l, ..)| l == label), "{label} in {detail}");
    }
    for (label, inline, micros) in &seen {
        // Inline under the limit, off-thread over twice it, and in between where it was.
        // Rounded down to whole µs: a class at 99.6 µs is inline and shows 99.
        if *micros < limit {
            assert!(*inline, "{label} in {detail}");
        } else if *micros > 2 * limit {
            assert!(!*inline, "{label} in {detail}");
        }
    }
    // An RSA-2048 signature takes several hundred µs on any CPU: never inline.
    assert!(
        seen.iter().any(|(l, inline, _)| l == "rsa-2048" && !inline),
        "{detail}"
    );

    let detail = exercise(env, Dispatch::OffThread).await;
    let (mode, seen) = classes(&detail);
    assert_eq!(mode, "off-thread", "{detail}");
    assert!(seen.len() >= 3, "{detail}");
    assert!(seen.iter().all(|(_, inline, _)| !inline), "{detail}");

    let detail = exercise(env, Dispatch::Inline).await;
    let (mode, seen) = classes(&detail);
    assert_eq!(mode, "inline", "{detail}");
    assert!(seen.len() >= 3, "{detail}");
    assert!(seen.iter().all(|(_, inline, _)| *inline), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_on_a_multi_threaded_runtime() {
    let Some(env) = common::env() else { return };
    check_all_modes(&env).await;
}

/// `block_in_place` is unavailable here: off-thread calls go to the blocking pool.
#[tokio::test(flavor = "current_thread")]
async fn dispatch_on_a_current_thread_runtime() {
    let Some(env) = common::env() else { return };
    check_all_modes(&env).await;
}
