use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{FsError, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Host name for temp-file names: two hosts sharing an NFS directory may reuse a pid.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .unwrap_or_else(|| "host".to_owned());
        raw.trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    })
}

/// Temp files start with a dot and end in `.tmp`, so `*.parquet` globs never see them.
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(".{name}.{}.{}.{n}.tmp", host(), std::process::id());
    target.with_file_name(tmp)
}

/// Whether a directory entry is a temp file left by [`atomic_write`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Replace `target` atomically with what `fill` writes.
///
/// With `durable`, the file is fsynced before the rename and the directory after it, so the
/// new content survives a power cut; without, it survives a killed process (the rename is
/// atomic either way).
pub fn atomic_write<F>(target: &Path, durable: bool, fill: F) -> Result<()>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let tmp = temp_path(target);
    let result = (|| {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        fill(&mut file)?;
        file.flush()?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        fs::rename(&tmp, target)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::io(target, e));
    }
    if durable && let Some(dir) = target.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// fsync a directory so a rename or unlink in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FsError::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Append one newline-terminated record to a log in a single `write`.
///
/// If a previous writer died mid-line, the torn tail has no newline; a newline is written first
/// so the torn record stays a separate (unparseable, ignored) line and this one stays whole.
pub fn append_line(path: &Path, line: &[u8], durable: bool) -> Result<()> {
    let err = |e| FsError::io(path, e);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let mut record = Vec::with_capacity(line.len() + 2);
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(err)?;
        file.read_exact(&mut last).map_err(err)?;
        if last[0] != b'\n' {
            record.push(b'\n');
        }
    }
    record.extend_from_slice(line);
    if !line.ends_with(b"\n") {
        record.push(b'\n');
    }
    file.write_all(&record).map_err(err)?;
    if durable {
        file.sync_data().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.parquet");
        atomic_write(&target, false, |f| f.write_all(b"one")).unwrap();
        atomic_write(&target, true, |f| f.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_fill_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a");
        atomic_write(&target, false, |f| f.write_all(b"old")).unwrap();
        let r = atomic_write(&target, false, |_| Err(io::Error::other("disk full")));
        assert!(r.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn append_after_torn_tail_starts_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fs::write(&log, b"{\"a\":1}\n{\"b\":").unwrap();
        append_line(&log, b"{\"c\":3}", false).unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n");
    }

    #[test]
    fn temp_names_are_hidden_from_globs() {
        let t = temp_path(Path::new("/x/2024-01.parquet"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_name(name));
        assert!(!name.ends_with(".parquet"));
    }
}
