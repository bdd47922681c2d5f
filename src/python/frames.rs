//! Frames in the disk cache: tables handed over through the Arrow C stream interface and
//! stored as Arrow IPC files (`crate::kv::frame`).

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::arrow::{ArrowStream, stream_batches};
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
    let (schema, batches) = stream_batches(table)?;
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
