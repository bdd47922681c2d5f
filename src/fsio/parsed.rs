use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{FileStamp, FsError, Result};

/// What was parsed from small files (a log, a record of checksums), kept per file version so
/// a read that finds the file unchanged costs one `stat`.
pub struct ParsedFiles<T> {
    map: Mutex<HashMap<PathBuf, (FileStamp, Arc<T>)>>,
}

impl<T> Default for ParsedFiles<T> {
    fn default() -> Self {
        ParsedFiles {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> ParsedFiles<T> {
    /// The parse of `path` as it is now, with its stamp; `None` if the file does not exist.
    pub fn get(
        &self,
        path: &Path,
        parse: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<(FileStamp, Arc<T>)>> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::io(path, e)),
        };
        let stamp = FileStamp::of(&meta);
        if let Ok(map) = self.map.lock()
            && let Some((s, parsed)) = map.get(path)
            && *s == stamp
        {
            return Ok(Some((stamp, parsed.clone())));
        }
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::io(path, e)),
        };
        let parsed = Arc::new(parse(&bytes));
        // Keep it only if the file did not change while it was read (an append between the
        // stat and the read would otherwise be hidden behind the older stamp).
        if let Ok(after) = fs::metadata(path)
            && FileStamp::of(&after) == stamp
            && after.len() == bytes.len() as u64
            && let Ok(mut map) = self.map.lock()
        {
            if map.len() > 4096 {
                map.clear();
            }
            map.insert(path.to_owned(), (stamp, parsed.clone()));
        }
        Ok(Some((stamp, parsed)))
    }
}
