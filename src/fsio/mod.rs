//! File-system primitives shared by every store: atomic replacement, framed appends,
//! folder locks, directory listing, and telling handles inherited through `fork()`.
//!
//! Nothing here overwrites a file in place. A replaced file is written to a temp file in the
//! same directory and renamed over its target, so a reader (or a process killed mid-write)
//! sees either the old content or the new, never a mix.

mod atomic;
#[cfg(target_os = "linux")]
mod block;
mod fork;
mod fstype;
mod lock;
mod parsed;
mod stamp;

pub use atomic::{append_line, atomic_write, fsync_dir, is_temp_name};
pub use fork::fork_epoch;
pub use fstype::is_local_fs;
pub use lock::{FolderLock, wait_for_lock};
pub use parsed::ParsedFiles;
pub use stamp::FileStamp;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the file-system layer.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "lock {path} still held by another process after {:.1} s: it is writing there (a long fetch or a large write); wait and try again, or give a longer timeout",
        waited.as_secs_f64()
    )]
    Timeout { path: PathBuf, waited: Duration },
}

impl FsError {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        FsError::Io {
            path: path.into(),
            source,
        }
    }

    /// The underlying I/O error kind, if this is an I/O error.
    pub fn kind(&self) -> Option<io::ErrorKind> {
        match self {
            FsError::Io { source, .. } => Some(source.kind()),
            FsError::Timeout { .. } => None,
        }
    }
}

pub type Result<T, E = FsError> = std::result::Result<T, E>;
