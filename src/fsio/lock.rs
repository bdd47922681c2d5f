use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{FsError, Result};

/// An exclusive OS file lock (flock on Unix) on a lock file, released on drop.
///
/// flock interoperates with Python's `filelock.FileLock` on the same path, so the original
/// tool and candlecache exclude each other. It works across processes and, on NFSv4, hosts.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    path: PathBuf,
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
        let started = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(FolderLock {
                        file,
                        path: path.to_owned(),
                    });
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(FsError::io(path, e)),
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
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
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
}
