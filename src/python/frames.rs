//! Frames in the disk cache: tables handed over through the Arrow C stream interface and
//! stored as Arrow IPC files (`crate::kv::frame`).

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_array::RecordBatchReader;
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};

use super::arrow::ArrowStream;
use super::errors::{corruption, fs_to_py};
use crate::kv::frame::{self, Codec, FrameError};

fn to_py(py: Python<'_>, e: FrameError) -> PyErr {
    match e {
        FrameError::Fs(fs) => fs_to_py(py, fs),
        FrameError::Corrupt { .. } => corruption(
            py,
            format!(
                "{e}; Cache.check(fix=True) removes it, and a memoized function computes it again"
            ),
        ),
        FrameError::Unsupported(_) => PyTypeError::new_err(e.to_string()),
        FrameError::UnknownCodec(_) => PyValueError::new_err(e.to_string()),
    }
}

/// Every batch of `obj`'s Arrow C stream (zero-copy: the batches point into `obj`'s buffers).
fn batches_of(obj: &Bound<'_, PyAny>) -> PyResult<(arrow_schema::SchemaRef, Vec<RecordBatch>)> {
    let capsule = obj
        .call_method0("__arrow_c_stream__")?
        .cast_into::<PyCapsule>()?;
    let ptr = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule named "arrow_array_stream" holds an FFI_ArrowArrayStream by the
    // Arrow PyCapsule interface; from_raw moves it out and leaves a released stream behind.
    let reader =
        unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast::<FFI_ArrowArrayStream>()) }
            .map_err(|e| PyTypeError::new_err(format!("invalid Arrow stream: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<_, _>>()
        .map_err(|e| PyTypeError::new_err(format!("invalid Arrow stream: {e}")))?;
    Ok((schema, batches))
}

/// Write `table` (anything with `__arrow_c_stream__`) as `dir/{stem}.{crc32}.arrow`, with
/// `meta` in the file's footer; returns the file's name and size.
#[pyfunction]
#[pyo3(signature = (dir, stem, table, meta, compression="none", durable=false))]
pub fn write_frame(
    py: Python<'_>,
    dir: PathBuf,
    stem: &str,
    table: &Bound<'_, PyAny>,
    meta: Vec<(String, String)>,
    compression: &str,
    durable: bool,
) -> PyResult<(String, u64)> {
    let codec = Codec::parse(compression).map_err(|e| to_py(py, e))?;
    let (schema, batches) = batches_of(table)?;
    let written = py
        .detach(|| frame::write(&dir, stem, &schema, &batches, codec, &meta, durable))
        .map_err(|e| to_py(py, e))?;
    Ok((written.name, written.size))
}

/// Read the frame file at `path`, verified against the checksum its name carries: the rows
/// (a one-shot Arrow stream), the footer's metadata, and the bytes the arrays use.
#[pyfunction]
pub fn read_frame<'py>(
    py: Python<'py>,
    path: PathBuf,
) -> PyResult<(ArrowStream, Bound<'py, PyDict>, usize)> {
    let f = py.detach(|| frame::read(&path)).map_err(|e| to_py(py, e))?;
    let meta = PyDict::new(py);
    for (k, v) in &f.meta {
        meta.set_item(k, v)?;
    }
    Ok((
        ArrowStream::with_schema(f.schema, f.batches),
        meta,
        f.nbytes,
    ))
}
