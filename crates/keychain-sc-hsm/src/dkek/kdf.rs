//! OpenSSL's `EVP_BytesToKey` with MD5 and an iteration count: the share-file KDF.

use std::fmt;
use std::sync::Arc;

use keychain_core::{Error, Result};
use md5::{Digest, Md5};
use zeroize::{Zeroize, Zeroizing};

/// The iteration count `sc-hsm-tool` hard-codes for share files.
pub const DEFAULT_KDF_ROUNDS: u32 = 10_000_000;

/// How many MD5 rounds pass between two progress reports.
const PROGRESS_EVERY: u32 = 1 << 16;

/// Progress of a running derivation, passed to the callback set with [`Kdf::with_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KdfProgress {
    /// MD5 rounds done so far.
    pub done: u64,
    /// MD5 rounds the derivation takes in all (3 × rounds: key, key and IV are three MD5 chains).
    pub total: u64,
}

type ProgressFn = Arc<dyn Fn(KdfProgress) + Send + Sync>;

/// The share-file key derivation: OpenSSL `EVP_BytesToKey(AES-256-CBC, MD5, salt, password,
/// count)`, which yields the 32-byte AES key and the 16-byte IV.
///
/// `D1 = MD5^c(password ‖ salt)`, `D2 = MD5^c(D1 ‖ password ‖ salt)`,
/// `D3 = MD5^c(D2 ‖ password ‖ salt)`; key = D1 ‖ D2, IV = D3; `MD5^c(x)` is one MD5 of `x`
/// followed by `c − 1` MD5s of the previous 16-byte digest. With `c = 1` this is what
/// `openssl enc -md md5` (without `-pbkdf2`) does.
///
/// The default is the tool's count, 10,000,000, which takes seconds; tests use small counts.
#[derive(Clone)]
pub struct Kdf {
    rounds: u32,
    progress: Option<ProgressFn>,
}

impl Default for Kdf {
    /// The tool's count, [`DEFAULT_KDF_ROUNDS`], without progress reports.
    fn default() -> Self {
        Self {
            rounds: DEFAULT_KDF_ROUNDS,
            progress: None,
        }
    }
}

impl fmt::Debug for Kdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kdf")
            .field("rounds", &self.rounds)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Kdf {
    /// A derivation with `rounds` iterations (files made by `sc-hsm-tool` need
    /// [`DEFAULT_KDF_ROUNDS`]).
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] if `rounds` is 0.
    pub fn with_rounds(rounds: u32) -> Result<Self> {
        if rounds == 0 {
            return Err(Error::invalid_input("the KDF needs at least one round"));
        }
        Ok(Self {
            rounds,
            progress: None,
        })
    }

    /// Calls `progress` every 65,536 rounds and once at the end, from the deriving thread.
    #[must_use]
    pub fn with_progress(mut self, progress: impl Fn(KdfProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// The iteration count.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Derives key ‖ IV (48 bytes) from `password` and the 8-byte `salt`.
    pub fn derive(&self, password: &[u8], salt: &[u8; 8]) -> Zeroizing<[u8; 48]> {
        let total = 3 * u64::from(self.rounds);
        let mut out = Zeroizing::new([0u8; 48]);
        let mut prev = Zeroizing::new([0u8; 16]);
        for (i, chunk) in out.chunks_exact_mut(16).enumerate() {
            let mut h = Md5::new();
            if i > 0 {
                h.update(prev.as_slice());
            }
            h.update(password);
            h.update(salt);
            prev.copy_from_slice(&h.finalize());
            let base = i as u64 * u64::from(self.rounds);
            iterate_md5(&mut prev, self.rounds - 1, |done| {
                if let Some(p) = &self.progress {
                    p(KdfProgress {
                        done: base + 1 + u64::from(done),
                        total,
                    });
                }
            });
            chunk.copy_from_slice(prev.as_slice());
        }
        if let Some(p) = &self.progress {
            p(KdfProgress { done: total, total });
        }
        out
    }
}

const MD5_IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Replaces `digest` by MD5 applied `n` more times, calling `progress(done)` every
/// [`PROGRESS_EVERY`] rounds.
///
/// A 16-byte message is always one padded 64-byte block, so each round is a single call of the
/// compression function on a block whose padding and length never change: no buffering, no
/// allocation, nothing but the 64 MD5 steps.
fn iterate_md5(digest: &mut [u8; 16], n: u32, mut progress: impl FnMut(u32)) {
    let mut block = [0u8; 64];
    block[..16].copy_from_slice(digest);
    block[16] = 0x80;
    block[56..].copy_from_slice(&(16u64 * 8).to_le_bytes());
    let mut blocks = [block];
    let mut state = MD5_IV;
    let mut done = 0u32;
    while done < n {
        let step = (n - done).min(PROGRESS_EVERY);
        // Plain indexing rather than iterator adaptors keeps debug builds (tests) fast too.
        for _ in 0..step {
            state = MD5_IV;
            md5::block_api::compress(&mut state, &blocks);
            let b = &mut blocks[0];
            b[0..4].copy_from_slice(&state[0].to_le_bytes());
            b[4..8].copy_from_slice(&state[1].to_le_bytes());
            b[8..12].copy_from_slice(&state[2].to_le_bytes());
            b[12..16].copy_from_slice(&state[3].to_le_bytes());
        }
        done += step;
        progress(done);
    }
    digest.copy_from_slice(&blocks[0][..16]);
    blocks.zeroize();
    state.zeroize();
    block.zeroize();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::sync::Mutex;

    use super::*;

    /// The plain definition, one `Md5::digest` per round, to check the fast path against.
    fn reference(password: &[u8], salt: &[u8; 8], rounds: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev: Vec<u8> = Vec::new();
        while out.len() < 48 {
            let mut x = prev.clone();
            x.extend_from_slice(password);
            x.extend_from_slice(salt);
            let mut h = Md5::digest(&x).to_vec();
            for _ in 1..rounds {
                h = Md5::digest(&h).to_vec();
            }
            out.extend_from_slice(&h);
            prev = h;
        }
        out
    }

    #[test]
    fn count_one_vector() {
        let kdf = Kdf::with_rounds(1).unwrap();
        let out = kdf.derive(b"testpw", &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            hex::encode_upper(&out[..32]),
            "EB55B5AECA1B99D70EEF0674499A368B2C5818D92D60E179F46106B6CC0C01B9"
        );
        assert_eq!(
            hex::encode_upper(&out[32..]),
            "00435A3E2F98C280896DD28DC7B9775D"
        );
    }

    #[test]
    fn fast_path_matches_definition() {
        for rounds in [1, 2, 3, 17, 1000, 70_000] {
            let out = Kdf::with_rounds(rounds).unwrap().derive(b"pw", b"saltsalt");
            assert_eq!(
                &out[..],
                &reference(b"pw", b"saltsalt", rounds)[..],
                "{rounds}"
            );
        }
    }

    #[test]
    fn progress_reaches_total() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let kdf = Kdf::with_rounds(200_000)
            .unwrap()
            .with_progress(move |p| s.lock().unwrap().push(p));
        kdf.derive(b"pw", &[0; 8]);
        let seen = seen.lock().unwrap();
        assert!(seen.len() > 3);
        assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
        let last = seen.last().unwrap();
        assert_eq!((last.done, last.total), (600_000, 600_000));
    }

    #[test]
    fn zero_rounds_rejected() {
        assert!(Kdf::with_rounds(0).is_err());
        assert_eq!(Kdf::default().rounds(), DEFAULT_KDF_ROUNDS);
    }
}
