//! The key-value engine behind `Cache` and `FanoutCache`: file-based, no SQLite, no shared
//! memory maps, safe on NFSv4.
//!
//! # Design
//!
//! A cache directory holds one append-only **segment log** (`cache.NNNNNNNN.log`), a `HEAD`
//! file naming its generation, a lock file (`cache.lock`), and, as python-diskcache does, one
//! file per large value (`xx/yy/….val`, written by the Python `Disk`, atomically).
//!
//! * **Records.** Every change (put, delete, touch, access update, hit/miss counts, a setting,
//!   clear) is one record `len | crc32 | payload`, appended with a single `write` under the
//!   exclusive lock. A reader stops at the first incomplete or damaged record, so a writer
//!   killed mid-append loses only its unacknowledged record. Values over 512 bytes are LZ4
//!   compressed when that saves space.
//! * **Index.** Each process keeps an in-memory index (rows by key, by rowid, by key order,
//!   by expiry). Before every operation it asks the log's length (one `fstat`) and applies
//!   the records appended since last time. Writes hold the exclusive lock. Reads on a
//!   filesystem `statfs` names as local take no lock (a record being appended is told apart
//!   by its framing); elsewhere they hold the shared lock, because taking a lock is what makes
//!   a network filesystem revalidate its caches. Either way every process sees the latest
//!   acknowledged write of every other. Small values live in the index; larger ones are read
//!   from their log record (`pread`), whose checksum is verified on each read.
//! * **Snapshot** (`snapshot.rs`, `index.rs`). Logs over 1 MiB get an index snapshot
//!   `cache.NNNNNNNN.idx`: every row's fields and where its value is in the log, hashed into
//!   buckets of about 16 rows, each with its own CRC-32. A new process reads the snapshot's
//!   head, replays only the log after it, and reads a bucket (one `pread`) the first time a
//!   key in it is looked up. Records replayed after the snapshot shadow or patch the rows of
//!   buckets not read yet instead of reading them; counters are made exact only when `len`,
//!   `volume` or culling near the size limit need them. A process that has read an eighth of
//!   the buckets one by one rebuilds from the whole log in one pass instead.
//!   Writers rewrite the snapshot when the log has grown 2 MiB (or 256 bytes per row, if
//!   more) past it, spending at most 1% of their time on it unless the log has grown three
//!   times that far; a handle dropped with every row in memory leaves a fresh one if it can
//!   take the lock at once. The snapshot is derived data: when it is missing, damaged or does not
//!   match the log's bytes before the offset it covers, the log is replayed from the start
//!   (also in the middle of an operation, when a bucket fails its checksum), and `check()`
//!   verifies the whole log, not only its tail.
//! * **Compaction.** When the log is mostly dead records (and on `clear`, and when a damaged
//!   tail is found by a writer) the live state is written whole as the next generation by
//!   temp file + rename; then a record naming that generation is appended to the old log (the
//!   commit point: readers follow it), `HEAD` is updated, the new generation's snapshot is
//!   written and the old log and snapshot removed.
//! * **Transactions.** `transact()` holds the exclusive lock across calls; nested calls reuse it.
//! * **Check-then-act happens under the lock.** A new directory's first log and `HEAD` are
//!   created under the exclusive lock (`init_head`); no other path creates a log but
//!   compaction, which reads `HEAD` under the lock first and follows it if it has moved past
//!   the handle's log. A writer whose log was removed without a record naming its successor
//!   follows `HEAD` too (`nlink` is 0) instead of appending to a file nobody reads.
//! * **fork().** A handle remembers the fork epoch it opened its files in
//!   (`fsio::fork_epoch`). In a child it opens its own before any use and drops the inherited
//!   ones without unlocking or writing a snapshot: the lock file's and the log's open file
//!   descriptions are the parent's, a flock through them excludes nobody, and unlocking them
//!   would release the parent's lock. The log is read with `pread` only.

mod files;
pub mod frame;
pub mod index;
pub mod record;
mod row;
pub mod snapshot;
pub mod store;
pub mod value;

pub use row::Fields;
pub use store::{NewRow, Policy, RowOut, Store};
pub use value::Val;

use crate::fsio::FsError;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("corrupted cache data: {0}")]
    Corrupt(String),
}

pub type Result<T, E = KvError> = std::result::Result<T, E>;
