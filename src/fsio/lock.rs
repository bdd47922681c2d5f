use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{FsError, Result, fork_epoch};

/// How long a waiter retries (yielding the CPU in between) before it blocks or sleeps.
const SPIN: Duration = Duration::from_micros(100);

/// Take an OS file lock (flock on Unix) on an open file, waiting up to `timeout` (None:
/// forever). flock interoperates with Python's `filelock.FileLock` on the same path and, on
/// NFSv4, across hosts. `path` names the file in errors.
///
/// A waiter first retries for `SPIN`, yielding the CPU to the holder between tries; then, on a
/// local filesystem, it blocks in the kernel (`block.rs`) and takes the lock as soon as it is
/// released. On other filesystems (or with `CANDLECACHE_LOCK_POLL` set) it polls with sleeps
/// that double from 50 µs up to 10 ms. Measured (README, `benches/kv.py`): blocking gives more
/// throughput than polling, most with a core per writer; with more writers than cores
/// polling's p99 can be lower, so `CANDLECACHE_LOCK_POLL=1` brings it back.
pub fn wait_for_lock(
    file: &File,
    path: &Path,
    exclusive: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    let started = Instant::now();
    if try_lock(file, path, exclusive)? {
        return Ok(());
    }
    let polling = std::env::var_os("CANDLECACHE_LOCK_POLL").is_some();
    // A holder keeps the lock for microseconds (one append): yield to it a few times before
    // going to sleep, since a sleeper needs a wake-up and a context switch to take it over.
    while !polling && started.elapsed() < SPIN {
        if try_lock(file, path, exclusive)? {
            return Ok(());
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
        std::thread::yield_now();
    }
    #[cfg(target_os = "linux")]
    if !polling
        && !timeout.is_some_and(|t| t.is_zero())
        && super::fstype::is_local_file(file)
        && let Some(waited) = super::block::wait(file, exclusive, started, timeout)
    {
        return match waited.map_err(|e| FsError::io(path, e))? {
            super::block::Waited::Locked => Ok(()),
            super::block::Waited::TimedOut(waited) => Err(FsError::Timeout {
                path: path.to_owned(),
                waited,
            }),
        };
    }
    poll_for_lock(file, path, exclusive, started, timeout)
}

fn try_lock(file: &File, path: &Path, exclusive: bool) -> Result<bool> {
    let attempt = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match attempt {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(FsError::io(path, e)),
    }
}

fn poll_for_lock(
    file: &File,
    path: &Path,
    exclusive: bool,
    started: Instant,
    timeout: Option<Duration>,
) -> Result<()> {
    let mut pause = Duration::from_micros(50);
    loop {
        if try_lock(file, path, exclusive)? {
            return Ok(());
        }
        let waited = started.elapsed();
        if let Some(limit) = timeout
            && waited >= limit
        {
            return Err(FsError::Timeout {
                path: path.to_owned(),
                waited,
            });
        }
        let mut step = pause;
        if let Some(limit) = timeout {
            step = step.min(limit.saturating_sub(waited).max(Duration::from_micros(100)));
        }
        sleep(step);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// An exclusive lock on a lock file, released on drop (by the process that took it: a copy
/// inherited through `fork()` closes its descriptor without unlocking the parent's lock).
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    epoch: u64,
}

impl FolderLock {
    /// Wait up to `timeout` (None: forever) for the lock at `path`, creating the file if needed.
    pub fn acquire(path: &Path, timeout: Option<Duration>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| FsError::io(path, e))?;
        wait_for_lock(&file, path, true, timeout)?;
        Ok(FolderLock {
            file,
            epoch: fork_epoch(),
        })
    }
}

impl FolderLock {
    /// Whether the file this lock holds is still the one at `path`. A holder may remove a
    /// lock file (and its folder) it created in vain; whoever was waiting on the removed
    /// file then holds nothing that excludes anyone and must lock the new one.
    pub fn is_at(&self, path: &Path) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match (self.file.metadata(), std::fs::metadata(path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            true
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        if self.epoch == fork_epoch() {
            let _ = self.file.unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_times_out_then_succeeds_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = FolderLock::acquire(&path, None).unwrap();
        let second = FolderLock::acquire(&path, Some(Duration::from_millis(30)));
        assert!(matches!(second, Err(FsError::Timeout { .. })));
        drop(first);
        FolderLock::acquire(&path, Some(Duration::from_millis(30))).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_inherited_through_fork_is_not_released_by_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = FolderLock::acquire(&path, None).unwrap();
        // SAFETY: the child only drops the inherited lock (close(2)) and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            drop(held);
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let other = FolderLock::acquire(&path, Some(Duration::from_millis(30)));
        assert!(
            matches!(other, Err(FsError::Timeout { .. })),
            "the child's exit released the parent's lock"
        );
        drop(held);
        FolderLock::acquire(&path, Some(Duration::from_millis(30))).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_removed_lock_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = FolderLock::acquire(&path, None).unwrap();
        assert!(held.is_at(&path));
        std::fs::remove_file(&path).unwrap();
        assert!(!held.is_at(&path));
        let other = FolderLock::acquire(&path, Some(Duration::from_millis(30))).unwrap();
        assert!(other.is_at(&path) && !held.is_at(&path));
    }

    /// A waiter blocked in the kernel takes the lock as soon as it is free, not at the end of
    /// a sleep (polling's sleeps reach 10 ms, so its median delay would be ~5 ms), and still
    /// times out when it is not.
    #[test]
    fn a_waiter_takes_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = FolderLock::acquire(&path, None).unwrap();
        let started = Instant::now();
        let late = FolderLock::acquire(&path, Some(Duration::from_millis(40)));
        let waited = started.elapsed();
        assert!(matches!(late, Err(FsError::Timeout { .. })));
        assert!(waited >= Duration::from_millis(40) && waited < Duration::from_millis(400));
        drop(held);
        let mut delays = Vec::new();
        for _ in 0..5 {
            let held = FolderLock::acquire(&path, None).unwrap();
            let released = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
            let mark = released.clone();
            let holder = std::thread::spawn(move || {
                sleep(Duration::from_millis(60));
                *mark.lock().unwrap() = Some(Instant::now());
                drop(held);
            });
            let got = FolderLock::acquire(&path, Some(Duration::from_secs(10))).unwrap();
            delays.push(released.lock().unwrap().expect("released").elapsed());
            holder.join().unwrap();
            drop(got);
        }
        delays.sort();
        #[cfg(target_os = "linux")]
        assert!(
            delays[2] < Duration::from_millis(3),
            "took the lock {delays:?} after it was released"
        );
    }

    #[test]
    fn shared_holders_coexist_and_exclude_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap()
        };
        let (a, b, c) = (open(), open(), open());
        wait_for_lock(&a, &path, false, None).unwrap();
        wait_for_lock(&b, &path, false, Some(Duration::from_millis(10))).unwrap();
        let r = wait_for_lock(&c, &path, true, Some(Duration::from_millis(10)));
        assert!(matches!(r, Err(FsError::Timeout { .. })));
    }
}
