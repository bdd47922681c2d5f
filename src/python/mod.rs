//! PyO3 bindings: the `candlecache._core` extension module.

mod arrow;
mod errors;
mod frames;
mod hot;
mod kv;
mod kv_values;
mod ohlcv;
mod resample;
mod shared;
mod vision;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PERIODS", crate::ohlcv::PERIODS.to_vec())?;
    m.add("GRACE_MS", crate::ohlcv::log::GRACE_MS)?;
    m.add_class::<arrow::ArrowStream>()?;
    m.add_class::<kv::KvStore>()?;
    m.add_class::<kv_values::Deferred>()?;
    m.add_class::<kv_values::KeyHasher>()?;
    m.add("KV_SLOW", kv_values::slow(m.py()))?;
    kv_values::init_clock(m.py())?;
    m.add_class::<hot::PyHotTier>()?;
    m.add_function(wrap_pyfunction!(kv::crc32, m)?)?;
    m.add_function(wrap_pyfunction!(frames::write_frame, m)?)?;
    m.add_function(wrap_pyfunction!(frames::read_frame, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::get_ohlcv, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::read_range, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::find_corrupt, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::live_files, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::check_codec, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::write_rows, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::log_entries, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::log_append, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::log_compact, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::coverage, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::rebuild_log, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::repair, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::forget, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::hold_lock, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::ranges_missing, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::ranges_union, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::period_ms, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::period_floor, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::period_add, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::partition_key, m)?)?;
    m.add_function(wrap_pyfunction!(ohlcv::partition_window, m)?)?;
    m.add_function(wrap_pyfunction!(resample::resample, m)?)?;
    m.add_function(wrap_pyfunction!(resample::check_nested, m)?)?;
    m.add_function(wrap_pyfunction!(resample::compact_tier, m)?)?;
    m.add_class::<shared::PyRoot>()?;
    m.add_function(wrap_pyfunction!(shared::is_object_url, m)?)?;
    m.add_function(wrap_pyfunction!(shared::shared_get_ohlcv, m)?)?;
    m.add_function(wrap_pyfunction!(shared::shared_read_range, m)?)?;
    m.add_function(wrap_pyfunction!(shared::shared_coverage, m)?)?;
    m.add_function(wrap_pyfunction!(shared::shared_folders, m)?)?;
    m.add_function(wrap_pyfunction!(vision::vision_target, m)?)?;
    m.add_function(wrap_pyfunction!(vision::vision_backfill, m)?)?;
    m.add_function(wrap_pyfunction!(vision::vision_failures, m)?)?;
    m.add_function(wrap_pyfunction!(vision::vision_clear_failures, m)?)?;
    Ok(())
}
