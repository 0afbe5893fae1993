"""What every modality ingester receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clinfuse.platform.dask_workers import DaskWorkers
from clinfuse.platform.security import Pseudonymiser


@dataclass(frozen=True)
class IngestContext:
    """Shared settings of one ingest run."""

    pseudonymise: Pseudonymiser
    scratch: Path  # private temporary folder, deleted after the run
    previous: Path | None  # the modality's folder in the previous complete cache, for per-item reuse
    workers: DaskWorkers = field(default_factory=lambda: DaskWorkers(1))  # parallel decoding; owned by the caller
    progress: bool = False
    alignment: dict | None = None  # a frozen alignment (scoring): applied, never refitted
    input_digests: dict[str, str] = field(default_factory=dict)  # input file path -> content digest


@dataclass
class ModalityOutput:
    """Patients with usable data (source ids, in the order of the arrays' rows) and the report section."""

    present_ids: list[str]
    report: dict = field(default_factory=dict)
    alignment: dict | None = None
    patient_issues: dict[str, str] = field(default_factory=dict)  # source id -> why its data was unusable
