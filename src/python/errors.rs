//! The one place Rust errors become Python exceptions.

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::fsio::FsError;
use crate::ohlcv::OhlcvError;
use crate::shared::StoreError;

/// An exception class from `candlecache.exceptions` (defined in Python so it can inherit
/// from both `CandlecacheError` and a builtin, as `CallbackError(ValueError)` does).
fn class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || {
        py.import("candlecache.exceptions").map(Bound::unbind)
    })?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

fn raise(py: Python<'_>, name: &'static str, msg: String) -> PyErr {
    match class(py, name) {
        Ok(cls) => PyErr::from_type(cls, msg),
        Err(e) => e,
    }
}

pub fn corruption(py: Python<'_>, msg: String) -> PyErr {
    raise(py, "CorruptionError", msg)
}

pub fn fs_to_py(py: Python<'_>, err: FsError) -> PyErr {
    match err {
        FsError::Timeout { .. } => raise(py, "Timeout", err.to_string()),
        FsError::Io {
            ref path,
            ref source,
        } => {
            let msg = source.to_string();
            let file = path.to_string_lossy().into_owned();
            let errno = source.raw_os_error().unwrap_or(0);
            match source.kind() {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err((errno, msg, file)),
                std::io::ErrorKind::PermissionDenied => {
                    PyPermissionError::new_err((errno, msg, file))
                }
                _ => PyOSError::new_err((errno, msg, file)),
            }
        }
    }
}

pub fn to_py(py: Python<'_>, err: OhlcvError) -> PyErr {
    match err {
        OhlcvError::UnknownPeriod(_)
        | OhlcvError::TimeOutOfRange(_)
        | OhlcvError::YearOutOfRange(_)
        | OhlcvError::InvalidArgument(_) => PyValueError::new_err(err.to_string()),
        OhlcvError::Fs(e) => fs_to_py(py, e),
        OhlcvError::Corrupted { .. } => raise(
            py,
            "CorruptionError",
            format!(
                "{err}; candlecache.repair_cache() moves such files aside so their range is fetched again"
            ),
        ),
        OhlcvError::BadCallbackData(_) => raise(py, "CallbackError", err.to_string()),
        OhlcvError::Callback(_) => raise(py, "CandlecacheError", err.to_string()),
        OhlcvError::Store(e) => store_to_py(py, e),
    }
}

pub fn store_to_py(py: Python<'_>, err: StoreError) -> PyErr {
    let msg = err.to_string();
    match err {
        StoreError::BadUrl { .. } | StoreError::BadOption { .. } => PyValueError::new_err(msg),
        StoreError::Refused { .. } => raise(py, "StoreRefusedError", msg),
        StoreError::NoBucket { .. } => PyFileNotFoundError::new_err(msg),
        StoreError::Corrupted { .. } | StoreError::Dropped { .. } => {
            raise(py, "CorruptionError", msg)
        }
        StoreError::Contended { .. } | StoreError::ClaimWait { .. } => raise(py, "Timeout", msg),
        StoreError::Request { ref source, .. } => match source {
            object_store::Error::NotFound { .. } => PyFileNotFoundError::new_err(msg),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => PyPermissionError::new_err(msg),
            _ => raise(py, "ObjectStoreError", msg),
        },
        StoreError::Runtime(_) => raise(py, "ObjectStoreError", msg),
    }
}
