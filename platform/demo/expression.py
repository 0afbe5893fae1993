"""Bulk RNA expression in the shape labs hand over: a wide log2(TPM+1)-like table plus a sample sheet.

Genes have their own level and spread, co-vary through hidden programmes, shift with the sequencing batch,
and a planted gene set follows each patient's gene score. A few values are missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.platform.demo.latent import PatientTruth
from clinfuse.platform.demo.tables import write_csv_deterministic, write_parquet_deterministic
from clinfuse.platform.demo.vocabulary import PLANTED_GENES, background_gene_symbols

N_GENES = 1000
N_PROGRAMMES = 8
N_BATCHES = 3
NAN_RATE = 0.001


def write_expression(patients: list[PatientTruth], out_dir: Path, rng: np.random.Generator) -> dict[str, float]:
    """Write expression.parquet, expression.csv and samples.csv; return each planted gene's loading."""
    genes = list(PLANTED_GENES) + background_gene_symbols(N_GENES - len(PLANTED_GENES), rng)
    order = rng.permutation(len(genes))  # planted genes scattered among the columns
    genes = [genes[i] for i in order]
    planted_loading = {g: float(rng.uniform(1.0, 2.0)) for g in PLANTED_GENES}
    loading = np.array([planted_loading.get(g, 0.0) for g in genes])

    level = rng.uniform(2.0, 10.0, size=len(genes))
    spread = rng.uniform(0.3, 1.2, size=len(genes))
    programme_weights = rng.normal(0.0, 0.35, size=(N_PROGRAMMES, len(genes)))
    batch_offsets = rng.normal(0.0, 0.3, size=(N_BATCHES, len(genes))) + rng.normal(0.0, 0.4, size=(N_BATCHES, 1))

    with_genomics = [p for p in patients if p.present["genomics"]]
    n = len(with_genomics)
    score = np.array([p.gene_score for p in with_genomics])
    batch = rng.integers(0, N_BATCHES, size=n)
    programmes = rng.normal(size=(n, N_PROGRAMMES))
    z = rng.normal(size=(n, len(genes))) + programmes @ programme_weights + np.outer(score, loading)
    values = np.round(np.maximum(level + spread * z + batch_offsets[batch], 0.0), 4)  # log2(TPM+1) >= 0
    values[rng.random(size=values.shape) < NAN_RATE] = np.nan

    row_order = rng.permutation(n)
    ids = [with_genomics[i].patient_id for i in row_order]
    table = pd.DataFrame(values[row_order], columns=genes)
    table.insert(0, "patient_id", ids)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet_deterministic(table, out_dir / "expression.parquet")
    write_csv_deterministic(table, out_dir / "expression.csv", float_format="%.4f")
    samples = pd.DataFrame(
        {
            "sample_id": [f"RNA-{i:05d}" for i in range(n)],
            "patient_id": ids,
            "batch": [f"B{int(batch[i]) + 1}" for i in row_order],
            "platform": "RNA-seq polyA, log2(TPM+1)",
        }
    )
    write_csv_deterministic(samples, out_dir / "samples.csv")
    return planted_loading
