//! The market-data cache on object storage (S3, GCS, Azure, or a folder through `file://`),
//! shared by many machines without locks: immutable Parquet data objects, and per symbol
//! and period a log of numbered commits written with create-if-absent.
//!
//! ```text
//! {root}/{folder}/data/{partition}-{uuid}.parquet      rows, written once
//! {root}/{folder}/_log/{seq:020}.json                   commit `seq`
//! {root}/{folder}/_log/{seq:020}.checkpoint.json        the state after commit `seq`
//! {root}/_candlecache/probe-{uuid}                      the create-if-absent self-test
//! ```

pub mod commits;
pub mod error;
pub mod gc;
pub mod market;
pub mod objects;
pub mod root;
pub mod runtime;
pub mod state;

pub use commits::Log;
pub use error::StoreError;
pub use root::{Root, is_url};
