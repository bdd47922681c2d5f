import polars as pl
from pathlib import Path
from typing import Callable
from filelock import FileLock

from .config import get_data_dir, PARTITION_CONFIG
from .storage import read_ohlcv, save_ohlcv
from .log_manager import append_log, compact_log
from .continuity import check_continuity, find_missing_ranges

def period_to_ms(period: str) -> int:
    """将周期字符串转换为毫秒"""
    if period.endswith("m"):
        return int(period[:-1]) * 60 * 1000
    elif period.endswith("h"):
        return int(period[:-1]) * 3600 * 1000
    elif period.endswith("d"):
        return int(period[:-1]) * 24 * 3600 * 1000
    else:
        raise ValueError(f"Unsupported period: {period}")


def get_ohlcv_with_cache(
    base_dir: Path,
    symbol: str,
    period: str,
    start_time: int,
    count: int,
    fetch_callback: Callable,
    fetch_callback_params: dict = {},
    enable_cache: bool = True,
) -> pl.DataFrame:
    """
    获取 OHLCV 数据，优先从缓存读取，缺失部分从 API 获取。
    """
    data_dir = get_data_dir(base_dir, symbol, period)
    lock_path = data_dir / ".lock"
    data_dir.mkdir(parents=True, exist_ok=True)
    
    with FileLock(lock_path):
        period_ms = period_to_ms(period)
        end_time = start_time + (count - 1) * period_ms
        
        if not enable_cache:
            # 不使用缓存，直接从 API 获取
            new_data = fetch_callback(
                symbol, period, start_time, count, **fetch_callback_params
            )
            save_ohlcv(base_dir, symbol, period, new_data)
            if not new_data.is_empty():
                append_log(
                    data_dir,
                    new_data["time"].min(),
                    new_data["time"].max(),
                    len(new_data),
                )
            return new_data
        
        # 查找缺失的数据段
        missing_ranges = find_missing_ranges(data_dir, start_time, end_time)
        
        # 下载缺失的数据
        for missing in missing_ranges:
            # 计算需要下载的数量（会多算，不会少算）
            missing_count = (missing["end"] - missing["start"]) // period_ms + 1
            
            new_data = fetch_callback(
                symbol, period, missing["start"], missing_count,
                **fetch_callback_params
            )
            
            if not new_data.is_empty():
                # 过滤掉超出范围的数据
                new_data = new_data.filter(
                    (pl.col("time") >= missing["start"]) &
                    (pl.col("time") <= missing["end"])
                )
                
                save_ohlcv(base_dir, symbol, period, new_data)
                append_log(
                    data_dir,
                    new_data["time"].min(),
                    new_data["time"].max(),
                    len(new_data),
                )
        
        # 定期合并日志（可选，减少日志行数）
        compact_log(data_dir)
        
        # 返回请求范围内的数据
        return read_ohlcv(base_dir, symbol, period, start_time, end_time)
