//! Errors of the shared cache on object storage.

/// What can go wrong between the cache and an object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid object store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("invalid storage option {key:?} for {scheme}: {reason}")]
    BadOption {
        key: String,
        scheme: String,
        reason: String,
    },
    #[error(
        "the object store at {url} does not honour create-if-absent writes ({reason}); candlecache \
         refuses to use it, because two machines could then overwrite each other's commits and lose \
         candles. Use a store with conditional writes (AWS S3, GCS, Azure, MinIO, Cloudflare R2, a \
         local folder through file://) or upgrade the S3-compatible server to one that supports \
         If-None-Match"
    )]
    Refused { url: String, reason: String },
    #[error(
        "{url}: the bucket or container does not exist at this endpoint (or these credentials \
         cannot see it); create it first, or check the URL and the endpoint option ({source})"
    )]
    NoBucket {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{op} {path} failed: {source}")]
    Request {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("unreadable object {path}: {reason}")]
    Corrupted { path: String, reason: String },
    #[error(
        "data object {path} is unreadable ({reason}); it was dropped from the log with the \
         coverage of its candles, so get_ohlcv fetches them again"
    )]
    Dropped { path: String, reason: String },
    #[error(
        "{path}: still contended after {tries} attempts to commit (other writers committed first \
         each time); try again"
    )]
    Contended { path: String, tries: u32 },
    #[error(
        "{path}: another writer ({writer}) is still fetching this range after {waited:?}; it \
         renews its claim while it works, so it is alive: try again later or raise lock_timeout"
    )]
    ClaimWait {
        path: String,
        writer: String,
        waited: std::time::Duration,
    },
    #[error("the object store runtime could not start: {0}")]
    Runtime(String),
}

impl StoreError {
    pub(crate) fn request(
        op: &'static str,
        path: impl ToString,
        source: object_store::Error,
    ) -> Self {
        StoreError::Request {
            op,
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn corrupted(path: impl ToString, reason: impl ToString) -> Self {
        StoreError::Corrupted {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The object was not there (404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Request {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}
