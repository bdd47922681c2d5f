//! Python objects as python-diskcache's default `Disk` stores them, for the fast path of
//! `Cache` (`KvStore.get_value` and friends): raw keys, values kept in the log (raw or
//! pickled), and the `Deferred` rows whose value Python's `Disk.fetch` reads instead.
//!
//! Everything here answers "not mine" (None) rather than guess: the caller then takes the
//! Python path, which is diskcache's own code.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};

use crate::kv::Val;
use crate::kv::store::fast::{MODE_RAW, Num};

/// diskcache's `MODE_PICKLE`.
const MODE_PICKLE: u8 = 4;

/// Returned by the fast methods when the call is not theirs to make (a key that needs
/// pickling, a value that needs a file): the caller takes the Python path. Nothing was done.
pub fn slow(py: Python<'_>) -> Py<PyAny> {
    static SLOW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    SLOW.get_or_init(py, || {
        Py::new(py, Deferred::default())
            .map(Py::into_any)
            .unwrap_or_else(|_| py.None())
    })
    .clone_ref(py)
}

/// A row found by `get_value` whose value the engine does not decode (a value file, a frame):
/// its columns, for `Disk.fetch(mode, filename, value, False)`. The lookup is done, and
/// counted (statistics, access time) like any other.
#[pyclass(module = "candlecache._core", frozen, get_all)]
#[derive(Default)]
pub struct Deferred {
    pub mode: u8,
    pub filename: Option<String>,
    pub value: Option<Py<PyAny>>,
}

/// `Disk.hash(key)` (which picks a FanoutCache's shard) with the default `Disk`: computed here
/// for raw keys, by `fallback` (the Disk's own `hash`) for the keys it pickles.
#[pyclass(module = "candlecache._core", frozen)]
pub struct KeyHasher {
    fallback: Py<PyAny>,
}

#[pymethods]
impl KeyHasher {
    #[new]
    fn new(fallback: Py<PyAny>) -> Self {
        KeyHasher { fallback }
    }

    fn __call__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        const MASK: u32 = 0xFFFF_FFFF;
        let hash = match raw_key(key) {
            Some(Val::Blob(b)) => adler2::adler32_slice(&b) & MASK,
            Some(Val::Text(s)) => adler2::adler32_slice(s.as_bytes()) & MASK,
            // Python's `%` by a positive number is never negative.
            Some(Val::Int(i)) => (i as i128).rem_euclid(MASK as i128) as u32,
            Some(Val::Float(f)) => adler2::adler32_slice(&f.to_be_bytes()) & MASK,
            // NaN, which the index stores as NULL, and pickled keys: Disk.hash decides.
            _ => return Ok(self.fallback.bind(py).call1((key,))?.unbind()),
        };
        Ok(hash.into_pyobject(py)?.into_any().unbind())
    }
}

/// `Disk.put(key)` for the keys diskcache stores as they are (`raw`): exact `str`, `bytes`,
/// `float`, and `int` within 64 bits. None for any other key (it is pickled).
pub fn raw_key(obj: &Bound<'_, PyAny>) -> Option<Val> {
    if obj.is_exact_instance_of::<PyString>() {
        // A str with lone surrogates cannot be UTF-8: the Python path raises as before.
        return obj
            .cast::<PyString>()
            .ok()?
            .to_str()
            .ok()
            .map(|s| Val::Text(s.to_owned()));
    }
    if obj.is_exact_instance_of::<PyBytes>() {
        return Some(Val::Blob(obj.cast::<PyBytes>().ok()?.as_bytes().to_vec()));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        return obj.extract::<i64>().ok().map(Val::Int);
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return obj.extract::<f64>().ok().map(Val::float);
    }
    None
}

/// `Disk.store(value, False)` for values that stay in the log: `(mode, column)`, or None
/// when the value goes to a file (or is a frame, or its str is not UTF-8).
pub fn inline_value(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    min_file_size: f64,
    protocol: i32,
) -> PyResult<Option<(u8, Val)>> {
    if let Ok(s) = value.cast_exact::<PyString>() {
        if s.len()? as f64 >= min_file_size {
            return Ok(None);
        }
        return Ok(s.to_str().ok().map(|s| (MODE_RAW, Val::Text(s.to_owned()))));
    }
    if let Ok(b) = value.cast_exact::<PyBytes>() {
        let b = b.as_bytes();
        return Ok(((b.len() as f64) < min_file_size).then(|| (MODE_RAW, Val::Blob(b.to_vec()))));
    }
    if value.is_exact_instance_of::<PyInt>()
        && let Ok(i) = value.extract::<i64>()
    {
        return Ok(Some((MODE_RAW, Val::Int(i))));
    }
    if value.is_exact_instance_of::<PyFloat>() {
        return Ok(Some((MODE_RAW, Val::float(value.extract::<f64>()?))));
    }
    if may_be_frame(value)? {
        return Ok(None);
    }
    let pickled = dumps(py)?.call1((value, protocol))?;
    let pickled = pickled.cast::<PyBytes>()?.as_bytes();
    Ok(
        ((pickled.len() as f64) < min_file_size)
            .then(|| (MODE_PICKLE, Val::Blob(pickled.to_vec()))),
    )
}

/// Whether `frames.frame_kind` might claim the value (a polars, pandas or pyarrow type):
/// those are written as Arrow files by Python.
fn may_be_frame(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.is_none()
        || value.is_exact_instance_of::<PyTuple>()
        || value.is_exact_instance_of::<PyList>()
        || value.is_exact_instance_of::<PyDict>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_exact_instance_of::<PySet>()
        || value.is_exact_instance_of::<PyFrozenSet>()
    {
        return Ok(false);
    }
    let module = value.get_type().module()?;
    let module = module.to_str()?;
    Ok(["polars", "pandas", "pyarrow"]
        .iter()
        .any(|m| module.starts_with(m)))
}

/// `Disk.fetch(mode, None, value, False)` for a value kept in the log, or the value back for
/// a row whose value is in a file, or of a mode the engine does not know.
pub fn decode_inline(
    py: Python<'_>,
    mode: u8,
    filename: &Option<String>,
    value: Val,
) -> PyResult<Result<Py<PyAny>, Val>> {
    if filename.is_some() {
        return Ok(Err(value));
    }
    match (mode, value) {
        (MODE_RAW, v) => Ok(Ok(super::kv::from_val(py, v)?)),
        (MODE_PICKLE, Val::Blob(b)) => {
            let loaded = loads(py)?.call1((PyBytes::new(py, &b),))?;
            Ok(Ok(loaded.unbind()))
        }
        (_, v) => Ok(Err(v)),
    }
}

/// The `time` module and the `time.time` it had when `_core` was imported.
fn clock(py: Python<'_>) -> PyResult<&(Py<PyModule>, Py<PyAny>)> {
    static CLOCK: PyOnceLock<(Py<PyModule>, Py<PyAny>)> = PyOnceLock::new();
    CLOCK.get_or_try_init(py, || -> PyResult<_> {
        let module = py.import("time")?;
        let original = module.getattr("time")?.unbind();
        Ok((module.unbind(), original))
    })
}

/// Remember the real `time.time`, when `_core` is imported: `now` tells a replaced one by it.
pub fn init_clock(py: Python<'_>) -> PyResult<()> {
    clock(py).map(|_| ())
}

/// `time.time()`, read from the system clock unless `time.time` has been replaced (by a
/// test's fake clock, freezegun, ...): diskcache's expiry follows such clocks, so this does too.
pub fn now(py: Python<'_>) -> PyResult<f64> {
    let (module, original) = clock(py)?;
    let current = module.bind(py).getattr(pyo3::intern!(py, "time"))?;
    if current.is(original) {
        return Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()));
    }
    current.call0()?.extract()
}

/// A number for `incr`: an exact `int` within 64 bits or a `float`; None otherwise.
pub fn number(obj: &Bound<'_, PyAny>) -> Option<Num> {
    if obj.is_exact_instance_of::<PyInt>() {
        return obj.extract::<i64>().ok().map(Num::Int);
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return obj.extract::<f64>().ok().map(Num::Float);
    }
    None
}

pub fn num_to_py(py: Python<'_>, n: Num) -> PyResult<Py<PyAny>> {
    Ok(match n {
        Num::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Num::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
    })
}

/// `Disk.remove(name)`: the value file, then its folders while empty (never the cache's
/// own). Errors are ignored, as diskcache's are: another process may have removed them.
pub fn remove_value_file(dir: &Path, name: &str) {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut folder = path.parent();
    while let Some(f) = folder.filter(|f| f.starts_with(dir) && *f != dir) {
        if std::fs::remove_dir(f).is_err() {
            break;
        }
        folder = f.parent();
    }
}

fn pickle_fn<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || py.import("pickle")?.getattr(name).map(Bound::unbind))?
        .bind(py))
}

fn dumps(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    pickle_fn(py, &DUMPS, "dumps")
}

fn loads(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    pickle_fn(py, &LOADS, "loads")
}
