use std::fmt;

use crate::fsio::FsError;
use crate::ohlcv::OhlcvError;

/// Errors that stop a backfill. A file that cannot be had is not one of them: it is a
/// [`Problem`], reported and registered while the rest goes on.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Ohlcv(#[from] OhlcvError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

pub type Result<T, E = VisionError> = std::result::Result<T, E>;

/// Why one archive file could not be stored (as verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The archive answered 404: it does not have the file.
    NotFound,
    /// An HTTP status that is not success, after the retries.
    Status(u16),
    /// Connection, TLS or timeout errors, after the retries.
    Network(String),
    ChecksumMissing,
    BadChecksumFile(String),
    ChecksumMismatch {
        expected: String,
        actual: String,
    },
    BadZip(String),
    NoCsv,
    BadCsv(String),
    NoRows,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotFound => write!(f, "not in the archive (HTTP 404)"),
            Problem::Status(s) => write!(f, "HTTP {s}"),
            Problem::Network(e) => write!(f, "network error: {e}"),
            Problem::ChecksumMissing => write!(f, "no .CHECKSUM file (HTTP 404)"),
            Problem::BadChecksumFile(s) => write!(f, "unreadable .CHECKSUM file: {s}"),
            Problem::ChecksumMismatch { expected, actual } => {
                write!(
                    f,
                    "SHA-256 mismatch: .CHECKSUM says {expected}, the zip hashes to {actual}"
                )
            }
            Problem::BadZip(e) => write!(f, "the zip does not open: {e}"),
            Problem::NoCsv => write!(f, "the zip holds no CSV file"),
            Problem::BadCsv(e) => write!(f, "unreadable CSV: {e}"),
            Problem::NoRows => write!(f, "the file holds no candles"),
        }
    }
}

impl Problem {
    /// Worth downloading again: the next attempt may get another answer.
    pub fn retryable(&self) -> bool {
        !matches!(self, Problem::NotFound)
    }

    pub fn digests(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Problem::ChecksumMismatch { expected, actual } => (Some(expected), Some(actual)),
            _ => (None, None),
        }
    }
}
