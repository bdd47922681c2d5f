use std::fs::Metadata;

/// The identity of a file's content for caches of what was parsed from it.
///
/// Files here are only appended to or replaced by rename (a new inode), so inode, length and
/// mtime together change whenever the content does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// The last modification, in ns since the epoch (0 if the system does not say).
    pub fn mtime_ns(&self) -> i128 {
        self.mtime_ns
    }

    /// The file's length in bytes.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// The stamp of an object that never changes once written (a data object on object
    /// storage, named uniquely): its length is all there is to tell.
    pub fn immutable(len: u64) -> Self {
        FileStamp {
            ino: 0,
            len,
            mtime_ns: 0,
        }
    }

    pub fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let ino = 0;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        FileStamp {
            ino,
            len: meta.len(),
            mtime_ns,
        }
    }
}
