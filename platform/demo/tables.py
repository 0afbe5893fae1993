"""Byte-reproducible table writers (gzip without a timestamp, Parquet without varying metadata)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def write_csv_deterministic(table: pd.DataFrame, path: Path, float_format: str | None = None) -> None:
    """CSV, gzipped when the name ends in .gz, with a zero gzip mtime so equal data gives equal bytes."""
    compression = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None
    table.to_csv(path, index=False, float_format=float_format, compression=compression, lineterminator="\n")


def write_parquet_deterministic(table: pd.DataFrame, path: Path) -> None:
    """Parquet without the pandas index and with fixed row groups."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(arrow, path, compression="zstd", row_group_size=max(1, len(table)))
