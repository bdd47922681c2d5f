//! candlecache: an OHLCV Parquet cache and a file-based key-value cache.
//!
//! The core (`fsio`, `ohlcv`, `vision`, `kv`) knows nothing about Python; `python` holds the PyO3 bindings.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod fsio;
pub mod kv;
pub mod ohlcv;
pub mod shared;
pub mod vision;

#[cfg(feature = "python")]
mod python;
