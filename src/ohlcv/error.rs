use std::path::PathBuf;

use crate::fsio::FsError;
use crate::shared::StoreError;

/// Errors of the OHLCV layer.
#[derive(Debug, thiserror::Error)]
pub enum OhlcvError {
    #[error(
        "unknown period {0:?}; expected one of 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M"
    )]
    UnknownPeriod(String),
    #[error("time {0} (epoch ms) is outside the supported range of dates")]
    TimeOutOfRange(i64),
    #[error("year {0} is outside the supported range of dates")]
    YearOutOfRange(i32),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupted data file {path}: {reason}")]
    Corrupted { path: PathBuf, reason: String },
    #[error("fetch callback returned unusable data: {0}")]
    BadCallbackData(String),
    /// The callback itself failed; the binding layer keeps the original error object.
    #[error("fetch callback failed: {0}")]
    Callback(String),
}

pub type Result<T, E = OhlcvError> = std::result::Result<T, E>;

impl OhlcvError {
    pub(crate) fn corrupted(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        OhlcvError::Corrupted {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
