//! Data objects: immutable Parquet files written once with create-if-absent and read by
//! byte range (the footer and page index in one GET, then only the pages a read needs).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use super::StoreError;
use crate::fsio::FileStamp;
use crate::ohlcv::frame;
use crate::ohlcv::parquet_file::{self, FileInfo};

/// Sorted, unique rows as Parquet bytes, and how many bytes at the end hold the metadata
/// (footer and page index).
pub fn encode(batch: &RecordBatch, codec: Compression) -> Result<(Bytes, u64), StoreError> {
    let bytes = parquet_file::encode(std::slice::from_ref(batch), Vec::new(), codec)
        .map_err(|e| StoreError::corrupted("(new data object)", e))?;
    let bytes = Bytes::from(bytes);
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .map_err(|e| StoreError::corrupted("(new data object)", e))?;
    let data_end = meta
        .row_groups()
        .iter()
        .flat_map(|rg| rg.columns())
        .map(|c| {
            let (start, len) = c.byte_range();
            start + len
        })
        .max()
        .unwrap_or(4);
    let tail = (bytes.len() as u64).saturating_sub(data_end);
    Ok((bytes, tail))
}

/// Write a new object; it must not exist (data objects have random names, so an existing
/// one means a bug or a collision, never something to overwrite).
pub async fn put_new(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    bytes: Bytes,
) -> Result<(), StoreError> {
    store
        .put_opts(
            key,
            PutPayload::from(bytes),
            PutOptions::from(PutMode::Create),
        )
        .await
        .map_err(|e| StoreError::request("write", key, e))?;
    Ok(())
}

/// A range reader of one object of known size.
struct Reader {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    size: u64,
    tail: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for Reader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.key, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // object_store merges nearby ranges into one request.
        async move {
            self.store
                .get_ranges(&self.key, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let (size, tail) = (self.size, self.tail);
        async move {
            let meta = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                // The footer and page index in one request.
                .with_prefetch_hint(Some(tail.max(8) as usize))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// The error of a failed read: the store's own when the request failed (a 404 means the
/// object was removed and the caller refreshes its state), otherwise damage.
fn read_error(key: &ObjectPath, e: ParquetError) -> StoreError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store_err) => StoreError::request("read", key, *store_err),
            Err(other) => StoreError::corrupted(key, other),
        },
        other => StoreError::corrupted(key, other),
    }
}

type Infos = Mutex<HashMap<String, Arc<FileInfo>>>;

/// Footers of objects read before: objects never change, so their footers are kept
/// (bounded) without any check.
fn infos() -> &'static Infos {
    static INFOS: OnceLock<Infos> = OnceLock::new();
    INFOS.get_or_init(Default::default)
}

async fn info(reader: &mut Reader, id: &str) -> Result<Arc<FileInfo>, StoreError> {
    if let Some(info) = infos().lock().ok().and_then(|m| m.get(id).cloned()) {
        return Ok(info);
    }
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let key = reader.key.clone();
    let meta = ArrowReaderMetadata::load_async(reader, options)
        .await
        .map_err(|e| read_error(&key, e))?;
    let info = Arc::new(FileInfo::new(meta, FileStamp::immutable(reader.size), 0));
    if let Ok(mut m) = infos().lock() {
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(id.to_owned(), info.clone());
    }
    Ok(info)
}

/// Rows of the object with `lo <= time < hi`, normalised, sorted and unique on time.
/// `id` names the object across roots (for the footer cache).
pub async fn read(
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    id: &str,
    size: u64,
    tail: u64,
    lo: i64,
    hi: i64,
) -> Result<Vec<RecordBatch>, StoreError> {
    let mut reader = Reader {
        store,
        key: key.clone(),
        size,
        tail,
    };
    let info = info(&mut reader, id).await?;
    let Some((groups, selection)) = info.plan(lo, hi) else {
        return Ok(Vec::new());
    };
    let mut builder =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, info.reader_metadata().clone())
            .with_row_groups(groups)
            .with_batch_size(64 * 1024);
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    let stream = builder.build().map_err(|e| read_error(&key, e))?;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| read_error(&key, e))?;
    parquet_file::finish(batches, Path::new(key.as_ref()), lo, hi)
        .map_err(|e| StoreError::corrupted(&key, e))
}

/// The first and last time of sorted rows.
pub fn span(batch: &RecordBatch) -> Option<(i64, i64)> {
    frame::first_last(std::slice::from_ref(batch))
}
