//! The one Tokio runtime of a process, started the first time a URL root is used.
//!
//! A child of `fork()` inherits the runtime's memory but not its worker threads, so a runtime
//! belongs to the fork epoch it was started in; a child starts its own. The parent's runtime
//! is leaked in the child, never dropped: dropping it would wait for threads that do not
//! exist there.

use std::future::Future;
use std::sync::Mutex;

use tokio::runtime::{Builder, Runtime};

use super::StoreError;
use crate::fsio::fork_epoch;

static RUNTIME: Mutex<Option<(u64, &'static Runtime)>> = Mutex::new(None);

/// This process's runtime (started on first use).
pub fn runtime() -> Result<&'static Runtime, StoreError> {
    let epoch = fork_epoch();
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((e, rt)) = *slot
        && e == epoch
    {
        return Ok(rt);
    }
    let rt = Builder::new_multi_thread()
        // Requests wait on the network, not on a CPU: two threads drive many of them.
        .worker_threads(2)
        .thread_name("candlecache-io")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Runtime(e.to_string()))?;
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((epoch, rt));
    Ok(rt)
}

/// Run `fut` to completion on the runtime, from a thread outside it.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, StoreError> {
    Ok(runtime()?.block_on(fut))
}

/// The fork epoch the current runtime belongs to: clients built for another epoch hold
/// connections of a runtime that is gone.
pub fn epoch() -> u64 {
    fork_epoch()
}
