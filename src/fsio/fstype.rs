//! Whether a file is on a filesystem known to be local (ext4, xfs, btrfs, tmpfs, …): there a
//! write is visible to every process as soon as it returns, and a blocked `flock` is woken
//! by the kernel the moment it can be had. Anything else (NFS, SMB, FUSE, …) is taken for a
//! network filesystem.

use std::fs::File;
use std::path::Path;

#[cfg(target_os = "linux")]
const LOCAL: [i64; 11] = [
    0xEF53,     // ext2/3/4
    0x58465342, // xfs
    0x9123683E, // btrfs
    0x01021994, // tmpfs
    0x794C7630, // overlayfs
    0x2FC12FC1, // zfs
    0xF2F52010, // f2fs
    0xCA451A4E, // bcachefs
    0x52654973, // reiserfs
    0x3153464A, // jfs
    0x858458F6, // ramfs
];

#[cfg(target_os = "linux")]
fn is_local(st: &libc::statfs) -> bool {
    // f_type is i64 on some targets and 32-bit on others.
    #[allow(clippy::unnecessary_cast)]
    LOCAL.contains(&(st.f_type as i64))
}

/// Whether `dir` is on a local filesystem.
#[cfg(target_os = "linux")]
pub fn is_local_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is a valid C string and `st` a writable statfs buffer.
    if unsafe { libc::statfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    is_local(&st)
}

/// Whether an open file is on a local filesystem.
#[cfg(target_os = "linux")]
pub fn is_local_file(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: the descriptor is borrowed from `file`; `st` is a writable statfs buffer.
    if unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    is_local(&st)
}

#[cfg(not(target_os = "linux"))]
pub fn is_local_fs(_dir: &Path) -> bool {
    false
}

#[cfg(not(target_os = "linux"))]
pub fn is_local_file(_file: &File) -> bool {
    false
}
