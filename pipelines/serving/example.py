"""An online scoring request for patients of a site's own cohort, read from its sources: the documented example,
the serving test and the latency benchmark send it, and an integrator sees exactly what each modality's cell is.
The request holds the patients' data as the site's export has it: treat the file as patient data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from clinfuse.pipelines.scoring.frozen_ingest import scoring_config
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.table_source import read_source_table
from clinfuse.platform.kinds import get_kind
from clinfuse.platform.kinds.base import NoSourceData


def example_request(config_path: Path, bundle: Path, patient_ids: list[str]) -> dict[str, Any]:
    """The MLflow scoring server's JSON body (`dataframe_records`) for `patient_ids` of the cohort at `config_path`,
    with the modalities the model at `bundle` uses; a modality without data for a patient is sent as null."""
    config = scoring_config(config_path, bundle)
    table = config.cohort
    cohort = read_source_table(table.path, table.patient_id, "the cohort table").astype({table.patient_id: str})
    cohort = cohort.set_index(table.patient_id)
    records = []
    for pid in patient_ids:
        if pid not in cohort.index:
            raise ClinFuseError("a requested patient is not in the cohort table", f"pick ids from {table.path.name}")
        row = cohort.loc[pid]
        record: dict[str, Any] = {"patient_id": pid, "index_time": str(row[table.index_time])}
        if table.sex:
            record["sex"] = str(row[table.sex])
        if table.age and not (isinstance(row[table.age], float) and math.isnan(row[table.age])):
            record["age"] = float(row[table.age])
        for modality in config.modalities:
            try:
                record[modality.name] = get_kind(modality.kind).request_cell(modality, pid)
            except NoSourceData:
                record[modality.name] = None  # the patient lacks this modality: sent as missing
        records.append(record)
    return {"dataframe_records": records}
