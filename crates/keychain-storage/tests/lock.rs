//! Record locks exclude other processes, and a killed holder never leaves a lock behind.
//!
//! The test re-runs its own binary as child processes running [`lock_child`], each of which
//! increments a counter blob many times, reading and writing it under `FileStore::lock`. Lost
//! updates (a total below the number of increments) mean two processes held the lock at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keychain_core::ErrorKind;
use keychain_storage::{BlobStore as _, FileStore, FileStoreOptions};

/// Set (to the store root) only in child processes.
const CHILD_ENV: &str = "KEYCHAIN_STORAGE_LOCK_CHILD";
/// In a child: how many increments to make, or `hold` to take the lock and wait to be killed.
const CHILD_MODE_ENV: &str = "KEYCHAIN_STORAGE_LOCK_MODE";
const CHILDREN: u32 = 4;
const INCREMENTS: u32 = 40;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The child's body; returns at once unless [`CHILD_ENV`] is set, so it is a no-op in a normal
/// test run.
#[test]
fn lock_child() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mode = std::env::var(CHILD_MODE_ENV).expect("child: mode");
    let rt = runtime();
    let store = FileStore::open(root, FileStoreOptions::default()).expect("child: open");
    if mode == "hold" {
        let _lock = rt.block_on(store.lock("counter")).expect("child: lock");
        // Tell the parent the lock is held, then wait for the kill.
        rt.block_on(store.put("held", b"1")).expect("child: put");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let increments: u32 = mode.parse().expect("child: increments");
    for _ in 0..increments {
        rt.block_on(async {
            let _lock = store.lock("counter").await.expect("child: lock");
            let n = read_counter(&store).await;
            // Widen the window between read and write so that a broken lock shows.
            std::thread::sleep(Duration::from_micros(200));
            store
                .put("counter", (n + 1).to_string().as_bytes())
                .await
                .expect("child: put");
        });
    }
}

async fn read_counter(store: &FileStore) -> u32 {
    let bytes = store.get("counter").await.expect("get").unwrap_or_default();
    if bytes.is_empty() {
        return 0;
    }
    String::from_utf8(bytes)
        .expect("utf-8")
        .parse()
        .expect("number")
}

/// Kills the child when dropped, so a failing parent never leaves it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(root: &Path, mode: &str) -> KillOnDrop {
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args(["lock_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, root)
        .env(CHILD_MODE_ENV, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    KillOnDrop(child)
}

#[test]
fn processes_never_hold_a_lock_together() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let store = FileStore::open(&root, FileStoreOptions::default()).expect("open");
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| spawn_child(&root, &INCREMENTS.to_string()))
        .collect();
    for mut child in children {
        let status = child.0.wait().expect("wait");
        assert!(status.success(), "child failed: {status}");
    }
    let total = runtime().block_on(read_counter(&store));
    assert_eq!(total, CHILDREN * INCREMENTS, "updates were lost");
}

#[test]
fn a_killed_holder_releases_its_lock() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let options = FileStoreOptions::default().with_lock_timeout(Duration::from_millis(300));
    let store = FileStore::open(&root, options).expect("open");
    let rt = runtime();
    let mut child = spawn_child(&root, "hold");
    let mut waited = Duration::ZERO;
    while rt.block_on(store.get("held")).expect("get").is_none() {
        assert!(
            child.0.try_wait().expect("try_wait").is_none(),
            "child exited"
        );
        assert!(
            waited < Duration::from_secs(60),
            "child never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
        waited += Duration::from_millis(5);
    }
    let err = rt
        .block_on(store.lock("counter"))
        .expect_err("held by the child");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    child.0.kill().expect("kill");
    child.0.wait().expect("wait");
    let _lock = rt
        .block_on(store.lock("counter"))
        .expect("the kernel released the dead holder's lock");
}
