//! The files of a cache directory: log names, `HEAD`, opening and creating logs under the
//! lock, and the OS specifics of reading them (positional reads, local filesystems).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{KvError, Result};
use crate::fsio::{self, FsError};

pub const LOCK_NAME: &str = "cache.lock";
pub const HEAD_NAME: &str = "HEAD";

pub(super) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KvError + '_ {
    move |e| KvError::Fs(FsError::io(path, e))
}

pub fn log_name(generation: u64) -> String {
    format!("cache.{generation:08}.log")
}

/// The generation HEAD names, if there is a HEAD.
pub(super) fn read_head(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join(HEAD_NAME))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

pub(super) fn open_log_file(dir: &Path, generation: u64, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(dir.join(log_name(generation)))
}

/// Open the log of `generation`, or, if compaction has removed it meanwhile, the one HEAD
/// names now. Never creates a log: that happens under the lock (`init_head`, `compact`).
pub(super) fn open_log(dir: &Path, generation: u64) -> Result<(File, u64)> {
    let mut generation = generation;
    for _ in 0..100 {
        match open_log_file(dir, generation, false) {
            Ok(f) => return Ok((f, generation)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                generation = read_head(dir).unwrap_or(0).max(generation);
            }
            Err(e) => return Err(io_err(&dir.join(log_name(generation)))(e)),
        }
    }
    Err(KvError::Corrupt(format!(
        "{}: HEAD names {}, which does not exist (was it removed by hand?)",
        dir.display(),
        log_name(generation)
    )))
}

/// Give a directory without HEAD its log and HEAD, under the exclusive lock. Done without
/// the lock, a process could create a first log just after a compactor had moved the
/// directory past generation 0 and removed its log: whatever it then wrote would land in a
/// file nobody else reads.
pub(super) fn init_head(dir: &Path, lock: &File, timeout: Option<Duration>) -> Result<u64> {
    fsio::wait_for_lock(lock, &dir.join(LOCK_NAME), true, timeout)?;
    let result = (|| {
        if let Some(generation) = read_head(dir) {
            return Ok(generation);
        }
        // A directory written before HEAD was made up front has logs but no HEAD until its
        // first compaction. Its oldest log is the live one or leads to it through the
        // records naming each next generation; a newer one can only be a compaction's
        // leftover, never committed.
        let generation = oldest_log(dir).unwrap_or(0);
        let path = dir.join(log_name(generation));
        open_log_file(dir, generation, true).map_err(io_err(&path))?;
        let head = dir.join(HEAD_NAME);
        fsio::atomic_write(&head, false, |f| {
            f.write_all(generation.to_string().as_bytes())
        })?;
        Ok(generation)
    })();
    let _ = lock.unlock();
    result
}

/// The lowest generation with a log in `dir`.
pub(super) fn oldest_log(dir: &Path) -> Option<u64> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let digits = name.strip_prefix("cache.")?.strip_suffix(".log")?;
            (digits.len() == 8).then(|| digits.parse::<u64>().ok())?
        })
        .min()
}

/// The log's length and whether it has been removed from the directory, in one `fstat`
/// (every operation asks; `File::metadata` would ask `statx` for fields nobody reads). (On
/// NFS a file removed by another process of the same client is renamed instead; the record
/// naming the next generation, which compaction appends before removing a log, is what
/// readers follow there.)
#[cfg(unix)]
pub(super) fn log_state(log: &File) -> std::io::Result<(u64, bool)> {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the descriptor is borrowed from `log`; `st` is a writable stat buffer.
    if unsafe { libc::fstat(log.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok((st.st_size as u64, st.st_nlink == 0))
}

#[cfg(not(unix))]
pub(super) fn log_state(log: &File) -> std::io::Result<(u64, bool)> {
    Ok((log.metadata()?.len(), false))
}

/// `len` bytes from `offset`, by positional reads: the file offset is never moved, so no
/// other reader of the same open file (a thread, or a process it is shared with) is disturbed.
pub(super) fn read_range(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    read_at(file, &mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(e.kind(), "log shrank while reading")
        } else {
            e
        }
    })?;
    Ok(buf)
}

#[cfg(unix)]
pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Windows has no `pread` that leaves the offset alone, but `seek_read` on a handle no other
/// process shares (each opens its own) is positional enough.
#[cfg(windows)]
pub(super) fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "failed to fill whole buffer",
                ));
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
