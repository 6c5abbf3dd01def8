//! The worker thread that owns the TPM connection: the TPM runs one command at a time and a
//! `tss_esapi::Context` cannot leave its thread, so every TPM call is a job sent here, in order.
//! Async callers await a oneshot reply and never block their executor.

use std::sync::Mutex;
use std::sync::mpsc;

use keychain_core::{Error, ErrorKind, Result};
use tokio::sync::oneshot;

use crate::device::{Device, Probe, Settings};

type Job = Box<dyn FnOnce(&mut Device) + Send>;

pub(crate) struct Worker {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
}

fn gone() -> Error {
    Error::new(ErrorKind::Unavailable, "the TPM connection is closed").with_retryable(false)
}

impl Worker {
    /// Starts the thread and opens the device on it.
    pub(crate) async fn start(settings: Settings) -> Result<(Self, Probe)> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel();
        let (stop_signal, stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("keychain-tpm2".into())
            .spawn(move || {
                match Device::open(settings) {
                    Ok(mut device) => {
                        let _ = ready.send(Ok(device.probe.clone()));
                        while let Ok(job) = queue.recv() {
                            job(&mut device);
                        }
                        device.shutdown();
                        // Dropping the device closes the connection before `stopped` fires.
                        drop(device);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
                let _ = stop_signal.send(());
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("cannot start the TPM worker: {e}"),
                )
            })?;
        let probe = opened.await.map_err(|_| {
            Error::new(
                ErrorKind::Unexpected,
                "the TPM worker stopped while opening",
            )
        })??;
        Ok((
            Self {
                jobs: Mutex::new(Some(jobs)),
                stopped: Mutex::new(Some(stopped)),
            },
            probe,
        ))
    }

    /// Runs `job` on the device and returns its result.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Device) -> Result<T> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let jobs = jobs.as_ref().ok_or_else(gone)?;
            jobs.send(Box::new(move |device: &mut Device| {
                let _ = reply.send(job(device));
            }))
            .map_err(|_| gone())?;
        }
        result.await.map_err(|_| {
            Error::new(
                ErrorKind::Unexpected,
                "the TPM worker stopped during the call",
            )
        })?
    }

    /// Lets queued jobs finish, closes the connection, and waits until it is closed.
    pub(crate) async fn stop(&self) {
        drop(self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take());
        let stopped = self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
    }
}
