//! A writer killed (`SIGKILL`) in the middle of `FileStore::put` never leaves a torn or missing
//! blob.
//!
//! The test re-runs its own binary as a child process running [`crash_child_writer`], which
//! overwrites one key with large self-validating blobs as fast as it can. The parent kills it at
//! a random moment, reopens the store, and checks the key holds one complete blob.

use std::hash::{BuildHasher as _, RandomState};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keychain_storage::{BlobStore as _, FileStore, FileStoreOptions};
use sha2::{Digest as _, Sha256};

/// Set (to the store root) only in the child process.
const CHILD_ENV: &str = "KEYCHAIN_STORAGE_CRASH_CHILD";
const KEY: &str = "victim/blob";
const ROUNDS: usize = 20;
const MAGIC: &[u8; 8] = b"KCCRASH1";
const HEADER_LEN: usize = 8 + 8 + 8 + 32;
const BLOB_LEN: usize = 4 << 20;

/// `MAGIC | seed (u64 LE) | payload length (u64 LE) | SHA-256(payload) | payload`, the payload
/// pseudo-random from `seed`, so blobs with different seeds differ everywhere.
fn make_blob(seed: u64, payload_len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut payload = Vec::with_capacity(payload_len + 8);
    while payload.len() < payload_len {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        payload.extend_from_slice(&state.to_le_bytes());
    }
    payload.truncate(payload_len);
    let mut blob = Vec::with_capacity(HEADER_LEN + payload_len);
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&seed.to_le_bytes());
    blob.extend_from_slice(&(payload_len as u64).to_le_bytes());
    blob.extend_from_slice(&Sha256::digest(&payload));
    blob.extend_from_slice(&payload);
    blob
}

/// Checks `blob` is one whole blob written by [`make_blob`]; returns its seed.
fn validate_blob(blob: &[u8]) -> Result<u64, String> {
    let header = blob
        .get(..HEADER_LEN)
        .ok_or_else(|| format!("blob of {} bytes is shorter than its header", blob.len()))?;
    let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if &header[..8] != MAGIC {
        return Err("bad magic".to_owned());
    }
    let (seed, payload_len) = (field(8), field(16));
    let payload = &blob[HEADER_LEN..];
    if payload.len() as u64 != payload_len {
        return Err(format!(
            "payload is {} bytes, header says {payload_len}",
            payload.len()
        ));
    }
    if Sha256::digest(payload).as_slice() != &header[24..HEADER_LEN] {
        return Err(format!("checksum mismatch in blob with seed {seed:#x}"));
    }
    Ok(seed)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The child's body: overwrites [`KEY`] forever. Returns at once unless [`CHILD_ENV`] is set,
/// so it is a no-op in a normal test run.
#[test]
fn crash_child_writer() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let rt = runtime();
    let store = FileStore::open(root, FileStoreOptions::default()).expect("child: open");
    let pid = u64::from(std::process::id());
    // Precomputed so that the child spends its time inside `put`, where the kill should land.
    let blobs: Vec<Vec<u8>> = (0..4u64)
        .map(|i| make_blob(pid << 8 | i, BLOB_LEN + 4099 * i as usize))
        .collect();
    loop {
        for blob in &blobs {
            rt.block_on(store.put(KEY, blob)).expect("child: put");
        }
    }
}

/// Kills the child when dropped, so a failing parent never leaves it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_writer(root: &Path) -> KillOnDrop {
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child writer");
    KillOnDrop(child)
}

fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        })
        .count()
}

#[test]
fn kill_during_put_never_tears_the_blob() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let rt = runtime();
    let random = RandomState::new();
    let mut killed_mid_write = 0;

    for round in 0..ROUNDS {
        let store = FileStore::open(&root, FileStoreOptions::default()).expect("open");
        let marker_seed = random.hash_one(round) & !0xff;
        rt.block_on(store.put(KEY, &make_blob(marker_seed, 1000)))
            .expect("put marker");

        let mut child = spawn_writer(&root);
        // Wait until the child's writes have replaced the marker, so the kill lands in its loop.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                panic!("round {round}: child writer exited early: {status}");
            }
            let blob = rt.block_on(store.get(KEY)).expect("get").expect("present");
            if validate_blob(&blob).expect("valid while child writes") != marker_seed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: child never wrote"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(
            random.hash_one((round, "sleep")) % 60,
        ));
        child.0.kill().expect("kill");
        child.0.wait().expect("wait");
        drop(child);

        if temp_files(&root.join("victim")) > 0 {
            killed_mid_write += 1;
        }
        let store = FileStore::open(&root, FileStoreOptions::default()).expect("reopen");
        assert_eq!(
            temp_files(&root.join("victim")),
            0,
            "open removes leftovers"
        );
        let blob = rt
            .block_on(store.get(KEY))
            .expect("get")
            .unwrap_or_else(|| {
                panic!("round {round}: blob missing after kill");
            });
        let seed = validate_blob(&blob).unwrap_or_else(|e| panic!("round {round}: torn blob: {e}"));
        assert_ne!(seed, marker_seed, "round {round}: child's write was lost");
        assert_eq!(rt.block_on(store.list("")).expect("list"), [KEY]);
    }
    eprintln!("{killed_mid_write} of {ROUNDS} kills landed while a temporary file existed");
    // The proof only means something if kills hit the write window; the child spends nearly all
    // its time in `put`, so at least one of the rounds must have.
    assert!(
        killed_mid_write > 0,
        "no kill landed mid-write; the test proved nothing"
    );
}
