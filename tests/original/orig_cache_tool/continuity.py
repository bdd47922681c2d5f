import polars as pl
from pathlib import Path
from typing import List, Dict
from .log_manager import read_log, compact_log

def check_continuity(data_dir: Path) -> List[Dict]:
    """
    检查数据连续性，返回断裂点列表。
    
    首尾衔接规则：log[n].data_end == log[n+1].data_start 即连续
    """
    log = read_log(data_dir)
    
    if log.is_empty() or len(log) < 2:
        return []
    
    gaps = []
    log_rows = log.to_dicts()
    
    for i in range(1, len(log_rows)):
        prev_end = log_rows[i - 1]["data_end"]
        curr_start = log_rows[i]["data_start"]
        
        if prev_end != curr_start:
            gaps.append({
                "gap_after": prev_end,
                "gap_before": curr_start,
                "missing_from": prev_end,
                "missing_to": curr_start,
            })
    
    return gaps


def get_data_range(data_dir: Path) -> Dict | None:
    """获取已有数据的时间范围"""
    log = read_log(data_dir)
    
    if log.is_empty():
        return None
    
    return {
        "start": log["data_start"].min(),
        "end": log["data_end"].max(),
    }


def find_missing_ranges(
    data_dir: Path,
    target_start: int,
    target_end: int,
) -> List[Dict]:
    """
    找出目标时间范围内缺失的数据段。
    用于增量下载。
    """
    data_range = get_data_range(data_dir)
    gaps = check_continuity(data_dir)
    
    missing = []
    
    # 1. 检查目标范围之前是否有缺失
    if data_range is None:
        # 完全没有数据
        missing.append({"start": target_start, "end": target_end})
        return missing
    
    if target_start < data_range["start"]:
        missing.append({"start": target_start, "end": data_range["start"]})
    
    # 2. 检查中间的断裂
    for gap in gaps:
        if gap["missing_from"] >= target_start and gap["missing_to"] <= target_end:
            missing.append({"start": gap["missing_from"], "end": gap["missing_to"]})
    
    # 3. 检查目标范围之后是否有缺失
    if target_end > data_range["end"]:
        missing.append({"start": data_range["end"], "end": target_end})
    
    return missing
