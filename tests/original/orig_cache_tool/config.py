from pathlib import Path

# 不同周期的分块窗口配置
PARTITION_CONFIG = {
    "1m":  "month",   # 分钟K线按月分块，避免单文件过大
    "5m":  "month",
    "15m": "year",
    "1h":  "year",
    "4h":  "year",
    "1d":  "decade",  # 日K线数据量小，可以按10年分块
}

def get_partition_key(timestamp_ms: int, period: str) -> str:
    """根据时间戳和周期，返回分块的 key（用于文件名）"""
    from datetime import datetime, timezone
    dt = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc)
    
    window = PARTITION_CONFIG.get(period, "year")
    
    if window == "month":
        return f"{dt.year}-{dt.month:02d}"
    elif window == "year":
        return str(dt.year)
    elif window == "decade":
        return f"{(dt.year // 10) * 10}s"
    else:
        return str(dt.year)

def get_data_dir(base_dir: Path, symbol: str, period: str) -> Path:
    """获取数据目录路径"""
    safe_symbol = symbol.replace("/", "_").replace(":", "_")
    return base_dir / f"{safe_symbol}_{period}"
