"""Source tables (the cohort table, a table modality's file): CSV/TSV/Parquet read with one error per problem."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from clinfuse.platform.errors import ClinFuseError


def read_source_table(path: Path, id_column: str, where: str) -> pd.DataFrame:
    """Read a CSV/TSV (optionally gzipped) or Parquet table; unreadable files become one error naming the fix.

    Patient ids are read as the exact text of the cell: '00123' must not become 123, and ids such as 'NA',
    'NULL', 'None' or 'nan' are ids, not missing values (pandas' NA parsing stays on for the other columns).
    """
    with _readable(where):
        if _is_parquet(path):
            frame = pd.read_parquet(path)
            _check_unique_header(list(frame.columns), where)
            return frame
        with warnings.catch_warnings():
            # index_col=False: rows longer than the header must not silently turn into an index; pandas then
            # warns that it drops the extra fields, which is an error here
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, sep=_separator(path), low_memory=False, converters={id_column: str},
                                index_col=False)  # fmt: skip
    read_source_header(path, where)  # pandas renames a repeated column 'x' to 'x.1': the header as written
    return frame


def read_source_header(path: Path, where: str) -> list[str]:
    """A table's column names as written, without reading its rows; repeated names are refused."""
    with _readable(where):
        if _is_parquet(path):
            names = list(pq.read_schema(path).names)
        else:
            first_row = pd.read_csv(path, sep=_separator(path), header=None, nrows=1, dtype=str, keep_default_na=False)
            names = [str(name) for name in first_row.iloc[0]]
    _check_unique_header(names, where)
    return names


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(".parquet")


def _separator(path: Path) -> str:
    name = path.name.lower()
    return "\t" if any(name.endswith(s) for s in (".tsv", ".tsv.gz", ".txt", ".tab")) else ","


@contextlib.contextmanager
def _readable(where: str) -> Iterator[None]:
    """Turn what pandas and Arrow raise for an unreadable file into one error naming the fix."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise ClinFuseError(
            f"{where}: the file is empty (no header row)", "export it again with a header row and one row per patient"
        ) from None
    except UnicodeDecodeError as exc:
        raise ClinFuseError(
            f"{where}: the file is not UTF-8 text (byte {exc.start} cannot be decoded)",
            "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`",
        ) from None
    except pd.errors.ParserWarning:
        raise ClinFuseError(
            f"{where}: rows have more fields than the header", "check the delimiter and remove trailing separators"
        ) from None
    except pd.errors.ParserError as exc:
        raise ClinFuseError(
            f"{where}: not a well-formed table: {str(exc).strip().splitlines()[-1]}",
            "check the delimiter (comma for .csv, tab for .tsv) and that every row has the header's columns",
        ) from None
    except (pa.ArrowException, OSError) as exc:  # a damaged Parquet file, or a file the OS will not read
        raise ClinFuseError(f"{where}: cannot be read ({exc})", "check the file and export it again") from None


def _check_unique_header(names: list[str], where: str) -> None:
    duplicated = sorted({str(name) for name in names if names.count(name) > 1})
    if duplicated:
        raise ClinFuseError(f"{where}: duplicated column name(s) {duplicated[:5]}", "rename or drop them")
