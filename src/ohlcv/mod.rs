//! The market-data cache: periods and partitions, Parquet partition I/O, the fetch log,
//! coverage arithmetic and the fetch loop.

pub mod checksums;
pub mod coverage;
pub mod error;
pub mod fetch;
pub mod frame;
pub mod hot;
pub mod integrity;
pub mod log;
pub mod maintenance;
pub mod parquet_file;
pub mod period;
pub mod read;
pub mod resample;
pub mod store;
pub mod tiers;

pub use coverage::Ranges;
pub use error::{OhlcvError, Result};
pub use hot::{HotStats, HotTier};
pub use period::{PERIODS, Period, Window};
