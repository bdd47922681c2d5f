//! A cache root on object storage: a URL (`s3://bucket/prefix`, `gs://…`, `az://…`,
//! `file:///path`, `memory://name`) and its storage options, the store built from them, and
//! the once-per-process check that the store honours create-if-absent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig};

use super::StoreError;
use super::runtime;

/// Options candlecache reads itself rather than passing to the store's builder.
const MAX_RETRIES: &str = "max_retries";
const RETRY_TIMEOUT: &str = "retry_timeout";

/// The store built for a fork epoch.
type Built = Mutex<Option<(u64, Arc<dyn ObjectStore>)>>;

/// A parsed cache root. Cheap to clone; the store behind it is built once per fork epoch.
#[derive(Clone)]
pub struct Root {
    url: String,
    scheme: String,
    options: BTreeMap<String, String>,
    /// The key prefix of the cache inside the store (the URL's path).
    prefix: ObjectPath,
    store: Arc<Built>,
    /// The fork epoch + 1 in which this root last passed the self-test (0: not yet): the
    /// check on every call is then one atomic load.
    tested: Arc<AtomicU64>,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options may hold secrets: only their names are shown.
        f.debug_struct("Root")
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `s` names an object store root rather than a local path.
pub fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        matches!(
            scheme.to_ascii_lowercase().as_str(),
            "s3" | "s3a" | "gs" | "gcs" | "az" | "azure" | "abfs" | "abfss" | "file" | "memory"
        )
    })
}

impl Root {
    /// Parse `url` with `options` (keys as `object_store` names them: `endpoint`,
    /// `access_key_id`, `region`, `allow_http`, …; plus `max_retries` and `retry_timeout`
    /// seconds). Nothing is contacted yet.
    pub fn parse(url: &str, options: HashMap<String, String>) -> Result<Root, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let scheme = parsed.scheme().to_ascii_lowercase();
        let options: BTreeMap<String, String> = options
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let path = match scheme.as_str() {
            "file" => String::new(),
            "memory" => parsed.path().to_owned(),
            "s3" | "s3a" | "gs" | "gcs" | "az" | "azure" | "abfs" | "abfss" => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(bad("it names no bucket or container"));
                }
                parsed.path().to_owned()
            }
            other => {
                return Err(bad(&format!(
                    "unsupported scheme {other:?}; use s3://, gs://, az://, file:// or a plain path"
                )));
            }
        };
        let prefix = ObjectPath::parse(path.trim_matches('/'))
            .map_err(|e| bad(&format!("its path is not a valid object key prefix: {e}")))?;
        let root = Root {
            url: url.trim_end_matches('/').to_owned(),
            scheme,
            options,
            prefix,
            store: Arc::default(),
            tested: Arc::default(),
        };
        root.retry()?;
        // Build once now so that a bad option is reported where it was given.
        root.store()?;
        Ok(root)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `parts` joined below the root's prefix; a part may hold several segments
    /// (`okx/BTC_USDT_1m`).
    pub fn key(&self, parts: &[&str]) -> ObjectPath {
        let mut key = self.prefix.clone();
        for segment in parts.iter().flat_map(|p| p.split('/')) {
            key = key.join(segment);
        }
        key
    }

    /// The key prefix of the cache inside the store.
    pub fn prefix(&self) -> &ObjectPath {
        &self.prefix
    }

    fn retry(&self) -> Result<RetryConfig, StoreError> {
        let mut retry = RetryConfig::default();
        let number = |key: &str| -> Result<Option<f64>, StoreError> {
            self.options
                .get(key)
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| StoreError::BadOption {
                            key: key.to_owned(),
                            scheme: self.scheme.clone(),
                            reason: format!("expected a number >= 0, got {v:?}"),
                        })
                })
                .transpose()
        };
        if let Some(n) = number(MAX_RETRIES)? {
            retry.max_retries = n as usize;
        }
        if let Some(s) = number(RETRY_TIMEOUT)? {
            retry.retry_timeout = Duration::from_secs_f64(s);
        }
        Ok(retry)
    }

    /// The store, built for this fork epoch (a client from before a `fork()` holds
    /// connections of the parent's runtime).
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let epoch = runtime::epoch();
        let mut slot = self
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((e, store)) = &*slot
            && *e == epoch
        {
            return Ok(store.clone());
        }
        let store = self.build()?;
        *slot = Some((epoch, store.clone()));
        Ok(store)
    }

    fn build(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let retry = self.retry()?;
        let options = self
            .options
            .iter()
            .filter(|(k, _)| k.as_str() != MAX_RETRIES && k.as_str() != RETRY_TIMEOUT);
        let bad_key = |key: &str, e: object_store::Error| StoreError::BadOption {
            key: key.to_owned(),
            scheme: self.scheme.clone(),
            reason: e.to_string(),
        };
        let built = |r: object_store::Result<Arc<dyn ObjectStore>>| {
            r.map_err(|e| StoreError::BadUrl {
                url: self.url.clone(),
                reason: e.to_string(),
            })
        };
        let store: Arc<dyn ObjectStore> = match self.scheme.as_str() {
            "s3" | "s3a" => {
                let mut b = AmazonS3Builder::from_env().with_url(&self.url);
                for (k, v) in options {
                    b = b.with_config(
                        AmazonS3ConfigKey::from_str(k).map_err(|e| bad_key(k, e))?,
                        v,
                    );
                }
                built(b.with_retry(retry).build().map(|s| Arc::new(s) as _))?
            }
            "gs" | "gcs" => {
                let mut b = GoogleCloudStorageBuilder::from_env().with_url(&self.url);
                for (k, v) in options {
                    b = b.with_config(GoogleConfigKey::from_str(k).map_err(|e| bad_key(k, e))?, v);
                }
                built(b.with_retry(retry).build().map(|s| Arc::new(s) as _))?
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_url(&self.url);
                for (k, v) in options {
                    b = b.with_config(AzureConfigKey::from_str(k).map_err(|e| bad_key(k, e))?, v);
                }
                built(b.with_retry(retry).build().map(|s| Arc::new(s) as _))?
            }
            "file" => {
                if let Some((k, _)) = options.into_iter().next() {
                    return Err(StoreError::BadOption {
                        key: k.clone(),
                        scheme: self.scheme.clone(),
                        reason: "file:// roots take no storage options".into(),
                    });
                }
                let dir = url::Url::parse(&self.url)
                    .ok()
                    .and_then(|u| u.to_file_path().ok())
                    .ok_or_else(|| StoreError::BadUrl {
                        url: self.url.clone(),
                        reason: "not an absolute file:// URL".into(),
                    })?;
                std::fs::create_dir_all(&dir).map_err(|e| StoreError::BadUrl {
                    url: self.url.clone(),
                    reason: format!("cannot create {}: {e}", dir.display()),
                })?;
                built(LocalFileSystem::new_with_prefix(&dir).map(|s| Arc::new(s) as _))?
            }
            // One store per name, shared by the process: for tests and examples.
            _ => {
                static MEMORY: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> =
                    OnceLock::new();
                let host = url::Url::parse(&self.url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                let mut map = MEMORY
                    .get_or_init(Default::default)
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                map.entry(host)
                    .or_insert_with(|| Arc::new(InMemory::new()))
                    .clone()
            }
        };
        Ok(store)
    }

    /// Prove, once per process and store, that a second create of the same key fails; a
    /// store that lets it succeed would let two writers overwrite each other's commits.
    pub async fn self_test(&self) -> Result<(), StoreError> {
        let epoch = runtime::epoch() + 1;
        if self.tested.load(Ordering::Relaxed) == epoch {
            return Ok(());
        }
        static PASSED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
        let passed = PASSED.get_or_init(Default::default);
        let id = self.identity();
        if passed.lock().is_ok_and(|p| p.contains(&id)) {
            self.tested.store(epoch, Ordering::Relaxed);
            return Ok(());
        }
        let store = self.store()?;
        let probe = self.key(&[
            "_candlecache",
            &format!("probe-{}", uuid::Uuid::new_v4().simple()),
        ]);
        let create = || PutOptions::from(PutMode::Create);
        let refused = |reason: String| StoreError::Refused {
            url: self.url.clone(),
            reason,
        };
        match store
            .put_opts(&probe, PutPayload::from_static(b"1"), create())
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::NotImplemented { .. }) => {
                return Err(refused("it does not implement create-if-absent".into()));
            }
            Err(source @ object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NoBucket {
                    url: self.url.clone(),
                    source,
                });
            }
            Err(e) => return Err(StoreError::request("create probe", &probe, e)),
        }
        let second = store
            .put_opts(&probe, PutPayload::from_static(b"2"), create())
            .await;
        let _ = store.delete(&probe).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Ok(_) => {
                return Err(refused(
                    "a second create of the same key succeeded and overwrote the first".into(),
                ));
            }
            Err(object_store::Error::Precondition { .. }) => {}
            Err(e) => return Err(StoreError::request("create probe again", &probe, e)),
        }
        if let Ok(mut p) = passed.lock() {
            p.insert(id);
        }
        self.tested.store(epoch, Ordering::Relaxed);
        Ok(())
    }

    /// What identifies the store (not the prefix inside it) for the self-test.
    fn identity(&self) -> String {
        let endpoint = [
            "endpoint",
            "aws_endpoint",
            "aws_endpoint_url",
            "endpoint_url",
        ]
        .iter()
        .find_map(|k| self.options.get(*k))
        .cloned()
        .unwrap_or_default();
        let bucket = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        format!("{}://{bucket} {endpoint} {}", self.scheme, runtime::epoch())
    }
}
