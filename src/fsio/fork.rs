//! Telling a handle opened in this process from one inherited through `fork()`.
//!
//! A child of `fork()` shares its parent's open file descriptions: a `flock` taken through an
//! inherited descriptor does not exclude the parent (the lock belongs to the description),
//! unlocking it releases the parent's lock, and the file offset is shared. A handle that
//! holds files open across calls therefore remembers the epoch it was opened in and, once the
//! epoch has moved, opens its own files instead of using the inherited ones.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static EPOCH: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

#[cfg_attr(not(unix), allow(dead_code))]
extern "C" fn in_child() {
    // Runs in the child right after fork(); an atomic add is async-signal-safe.
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// How many `fork()`s separate this process from the one that first asked: a value read when
/// a handle opens its files differs from a later one exactly when the handle was inherited.
/// (A process id could be reused by a grandchild; this count cannot.)
pub fn fork_epoch() -> u64 {
    #[cfg(unix)]
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic add. If registration fails
        // (out of memory), the epoch never moves and handles behave as before.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
    EPOCH.load(Ordering::Relaxed)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn epoch_moves_in_a_forked_child_only() {
        let before = fork_epoch();
        assert_eq!(fork_epoch(), before);
        // SAFETY: the child only reads an atomic and exits without unwinding.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if fork_epoch() == before + 1 { 0 } else { 1 };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(fork_epoch(), before);
    }
}
