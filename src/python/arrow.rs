//! Moving tables across the boundary through the Arrow C stream interface (PyCapsule).

use std::sync::{Arc, Mutex};

use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, RecordBatchIterator, RecordBatchReader,
};
use arrow_schema::SchemaRef;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyList, PySequence, PyTuple};

use crate::ohlcv::frame;

/// Result rows for Python: `polars.DataFrame(stream)` (or pyarrow, pandas, DuckDB) takes
/// them zero-copy through `__arrow_c_stream__`. A stream can be consumed once.
#[pyclass(module = "candlecache._core", frozen)]
pub struct ArrowStream {
    inner: Mutex<Option<(SchemaRef, Vec<RecordBatch>)>>,
    span: Option<(i64, i64)>,
}

impl ArrowStream {
    /// Rows normalised by `frame` (sorted on `time`).
    pub fn new(batches: Vec<RecordBatch>) -> Self {
        let schema = batches
            .first()
            .map_or_else(frame::base_schema, |b| b.schema());
        ArrowStream {
            span: frame::first_last(&batches),
            inner: Mutex::new(Some((schema, batches))),
        }
    }

    /// Any table, with its own schema (kept when there are no rows).
    pub fn with_schema(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        ArrowStream {
            span: None,
            inner: Mutex::new(Some((schema, batches))),
        }
    }
}

#[pymethods]
impl ArrowStream {
    /// The first and last `time` of the rows, None without rows (readable after the rows
    /// were taken: it saves converting a column back to Python to ask).
    #[getter]
    fn time_span(&self) -> Option<(i64, i64)> {
        self.span
    }

    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let (schema, batches) = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("stream lock poisoned"))?
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this Arrow stream was already consumed"))?;
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }
}

/// Import any object exporting `__arrow_c_stream__` as one batch.
pub fn import_stream(obj: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    let (schema, batches) = stream_batches(obj)?;
    arrow_select::concat::concat_batches(&schema, &batches)
        .map_err(|e| PyTypeError::new_err(e.to_string()))
}

/// Every batch of `obj`'s Arrow C stream, as exported (zero-copy: they point into `obj`'s
/// buffers).
pub fn stream_batches(obj: &Bound<'_, PyAny>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
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

fn number(item: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if item.is_none() {
        return Ok(None);
    }
    Ok(Some(item.extract::<f64>()?))
}

/// ccxt's OHLCV rows, `[[ms, open, high, low, close, volume], ...]`, as a batch.
/// Extra trailing numbers in a row are dropped, as ccxt's own helpers do.
pub fn rows_to_batch(rows: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    let seq = rows.cast::<PySequence>()?;
    let n = seq.len()?;
    let mut time = Vec::with_capacity(n);
    let mut cols: [Vec<Option<f64>>; 5] = Default::default();
    let bad = |i: usize, why: &str| {
        PyTypeError::new_err(format!(
            "fetch_callback returned a list whose row {i} {why}; expected [timestamp_ms, open, high, low, close, volume]"
        ))
    };
    for i in 0..n {
        let row = seq.get_item(i)?;
        let row = if let Ok(l) = row.cast::<PyList>() {
            l.as_sequence().clone()
        } else if let Ok(t) = row.cast::<PyTuple>() {
            t.as_sequence().clone()
        } else {
            return Err(bad(i, &format!("is a {}", row.get_type().name()?)));
        };
        if row.len()? < 6 {
            return Err(bad(i, "has fewer than 6 values"));
        }
        let t = row.get_item(0)?;
        let ms = if let Ok(v) = t.extract::<i64>() {
            v
        } else {
            match t.extract::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.is_finite() => f as i64,
                _ => {
                    return Err(bad(
                        i,
                        "has a timestamp that is not whole epoch milliseconds",
                    ));
                }
            }
        };
        time.push(ms);
        for (c, col) in cols.iter_mut().enumerate() {
            let v = row.get_item(c + 1)?;
            col.push(
                number(&v).map_err(|_| {
                    bad(i, &format!("has a non-numeric value at position {}", c + 1))
                })?,
            );
        }
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(time))];
    for col in cols {
        arrays.push(Arc::new(Float64Array::from(col)));
    }
    RecordBatch::try_new(frame::base_schema(), arrays)
        .map_err(|e| PyTypeError::new_err(e.to_string()))
}

/// What a callback returned, as a batch: a list of rows, or anything with `__arrow_c_stream__`.
pub fn to_batch(obj: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return rows_to_batch(obj);
    }
    if obj.hasattr("__arrow_c_stream__")? {
        return import_stream(obj);
    }
    Err(PyTypeError::new_err(format!(
        "fetch_callback returned {}; expected a list of [timestamp_ms, open, high, low, close, volume] rows, a polars or pandas DataFrame, or a pyarrow Table",
        obj.get_type().name()?
    )))
}
