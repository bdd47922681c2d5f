import json
import polars as pl
from pathlib import Path
from datetime import datetime, timezone
from filelock import FileLock

def get_log_path(data_dir: Path) -> Path:
    return data_dir / "fetch_log.jsonl"


def append_log(
    data_dir: Path,
    data_start: int,
    data_end: int,
    count: int,
    source: str = "api",
) -> None:
    """追加一条获取日志"""
    log_path = get_log_path(data_dir)
    
    entry = {
        "fetch_time": datetime.now(timezone.utc).isoformat(),
        "data_start": data_start,
        "data_end": data_end,
        "count": count,
        "source": source,
    }
    
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def read_log(data_dir: Path) -> pl.DataFrame:
    """读取日志为 DataFrame"""
    log_path = get_log_path(data_dir)
    
    if not log_path.exists():
        return pl.DataFrame()
    
    entries = []
    with open(log_path, "r", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                entries.append(json.loads(line))
    
    if not entries:
        return pl.DataFrame()
    
    return pl.DataFrame(entries).sort("data_start")


def compact_log(data_dir: Path) -> None:
    """合并首尾相连的日志条目，减少日志行数"""
    log = read_log(data_dir)
    
    if log.is_empty() or len(log) < 2:
        return
    
    # 标记可合并的行（当前行的 start == 上一行的 end）
    log = log.with_columns(
        (pl.col("data_start") == pl.col("data_end").shift(1)).alias("can_merge")
    )
    
    # 分组：每次 can_merge=False 开始新组
    log = log.with_columns(
        (~pl.col("can_merge").fill_null(False)).cum_sum().alias("group_id")
    )
    
    # 按组聚合
    compacted = log.group_by("group_id").agg([
        pl.col("data_start").min().alias("data_start"),
        pl.col("data_end").max().alias("data_end"),
        pl.col("count").sum().alias("count"),
        pl.col("fetch_time").first().alias("fetch_time"),
        pl.lit("compacted").alias("source"),
    ]).drop("group_id")
    
    # 重写日志文件
    log_path = get_log_path(data_dir)
    with open(log_path, "w", encoding="utf-8") as f:
        for row in compacted.iter_rows(named=True):
            f.write(json.dumps(row) + "\n")


def rebuild_log_from_data(data_dir: Path, period_ms: int) -> None:
    """从数据文件重建日志（用于日志丢失时恢复）"""
    parquet_files = sorted(data_dir.glob("*.parquet"))
    if not parquet_files:
        return
    
    dfs = [pl.read_parquet(f) for f in parquet_files]
    df = pl.concat(dfs).sort("time")
    
    if df.is_empty():
        return
    
    # 找出时间断裂点
    df = df.with_columns(
        (pl.col("time").diff() != period_ms).fill_null(True).alias("is_break")
    )
    
    # 每个断裂点开始新 batch
    df = df.with_columns(
        pl.col("is_break").cum_sum().alias("batch_id")
    )
    
    # 按 batch 聚合
    log = df.group_by("batch_id").agg([
        pl.col("time").min().alias("data_start"),
        pl.col("time").max().alias("data_end"),
        pl.len().alias("count"),
    ]).drop("batch_id")
    
    # 写入日志
    log_path = get_log_path(data_dir)
    with open(log_path, "w", encoding="utf-8") as f:
        for row in log.iter_rows(named=True):
            entry = {
                "fetch_time": datetime.now(timezone.utc).isoformat(),
                "data_start": row["data_start"],
                "data_end": row["data_end"],
                "count": row["count"],
                "source": "rebuilt",
            }
            f.write(json.dumps(entry) + "\n")
