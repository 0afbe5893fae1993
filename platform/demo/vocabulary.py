"""Clinical vocabularies the synthetic cohort draws from: gene symbols, ICD-10 codes, drugs, lab items.

Codes and lab item ids follow MIMIC-IV conventions (ICD codes without the dot, d_labitems item ids), so the
same ingestion path serves real exports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A neutrophil/inflammation gene set: the planted genomic signal.
PLANTED_GENES: tuple[str, ...] = (
    "IL6", "CXCL8", "IL1B", "TNF", "CCL2", "PTGS2", "SOCS3", "S100A8", "S100A9", "S100A12",
    "MMP9", "CD163", "LCN2", "OLFM4", "HP", "ARG1", "CEACAM8", "ORM1", "IL1R2", "ANXA3",
)  # fmt: skip

# Background genes: well-known symbol families (ribosomal, zinc-finger, transmembrane, solute carriers, ...).
_GENE_FAMILIES: tuple[tuple[str, int], ...] = (
    ("RPL", 41), ("RPS", 29), ("ZNF", 420), ("TMEM", 260), ("CCDC", 190), ("SLC25A", 50), ("SLC2A", 14),
    ("KRT", 86), ("FAM", 220), ("KLHL", 42), ("ANKRD", 66), ("LRRC", 75), ("TRIM", 75), ("WDR", 97),
)  # fmt: skip


@dataclass(frozen=True)
class LabItem:
    """A MIMIC-IV lab item: id, label, unit, its LOINC code (as d_labitems carried it) and a log-normal reference
    distribution."""

    itemid: int
    label: str
    fluid: str
    category: str
    unit: str
    median: float
    log_sd: float
    ref_low: float
    ref_high: float
    loinc: str


LAB_ITEMS: tuple[LabItem, ...] = (
    LabItem(50912, "Creatinine", "Blood", "Chemistry", "mg/dL", 0.9, 0.25, 0.5, 1.2, "2160-0"),
    LabItem(50813, "Lactate", "Blood", "Blood Gas", "mmol/L", 1.3, 0.3, 0.5, 2.0, "2524-7"),
    LabItem(50963, "NTproBNP", "Blood", "Chemistry", "pg/mL", 120.0, 0.9, 0.0, 353.0, "33762-6"),
    LabItem(51006, "Urea Nitrogen", "Blood", "Chemistry", "mg/dL", 16.0, 0.3, 6.0, 20.0, "3094-0"),
    LabItem(50983, "Sodium", "Blood", "Chemistry", "mEq/L", 139.0, 0.02, 133.0, 145.0, "2951-2"),
    LabItem(50971, "Potassium", "Blood", "Chemistry", "mEq/L", 4.2, 0.1, 3.3, 5.1, "2823-3"),
    LabItem(50931, "Glucose", "Blood", "Chemistry", "mg/dL", 105.0, 0.25, 70.0, 100.0, "2345-7"),
    LabItem(51222, "Hemoglobin", "Blood", "Hematology", "g/dL", 12.8, 0.12, 13.7, 17.5, "718-7"),
    LabItem(51301, "White Blood Cells", "Blood", "Hematology", "K/uL", 7.5, 0.3, 4.0, 11.0, "6690-2"),
    LabItem(51265, "Platelet Count", "Blood", "Hematology", "K/uL", 240.0, 0.3, 150.0, 440.0, "777-3"),
    LabItem(50885, "Bilirubin, Total", "Blood", "Chemistry", "mg/dL", 0.6, 0.4, 0.0, 1.5, "1975-2"),
    LabItem(50862, "Albumin", "Blood", "Chemistry", "g/dL", 3.9, 0.12, 3.5, 5.2, "1751-7"),
)
# Lab items whose level carries the planted EHR signal (shift in log units per unit of EHR latent).
PLANTED_LAB_SHIFTS: dict[int, float] = {50912: 0.45, 50963: 1.2, 50813: 0.3}

# Chronic conditions whose presence carries the planted EHR signal.
PLANTED_DIAGNOSES: tuple[str, ...] = ("I5022", "N184", "I4891", "J441", "E1122")
# Common background diagnoses (unrelated to the outcome).
BACKGROUND_DIAGNOSES: tuple[str, ...] = (
    "I10", "E785", "K219", "F329", "J45909", "M5450", "Z87891", "E669", "N390", "G4733",
    "F419", "E039", "K5900", "M1990", "R0789", "Z7901", "D649", "E559", "H409", "L409",
)  # fmt: skip
# Codes only coded at discharge of the index admission for patients who had the outcome: a leakage trap
# (any model that sees them has read the future).
LEAK_DIAGNOSES: tuple[str, ...] = ("R570", "J9600", "R6521")

BACKGROUND_PROCEDURES: tuple[str, ...] = ("0DJ08ZZ", "B246ZZZ", "3E0336Z", "BW03ZZZ", "02HV33Z", "0BH17EZ")
PLANTED_PROCEDURES: tuple[str, ...] = ("5A1955Z", "5A1D70Z")  # ventilation, dialysis

BACKGROUND_DRUGS: tuple[tuple[str, str, str, str], ...] = (
    # drug, ndc, dose value, unit
    ("Acetaminophen", "00904198861", "650", "mg"),
    ("Atorvastatin", "00093505898", "40", "mg"),
    ("Lisinopril", "00172375810", "10", "mg"),
    ("Pantoprazole", "00008084199", "40", "mg"),
    ("Heparin", "63323026201", "5000", "UNIT"),
    ("Docusate Sodium", "00904718059", "100", "mg"),
)
PLANTED_DRUGS: tuple[tuple[str, str, str, str], ...] = (
    ("Furosemide", "00054829725", "40", "mg"),
    ("Metoprolol Tartrate", "51079025520", "25", "mg"),
    ("Insulin Glargine", "00088222033", "10", "UNIT"),
)

FIRST_NAMES: tuple[str, ...] = ("ALEX", "MARIA", "JOHN", "WEI", "FATIMA", "OLGA", "PEDRO", "AMARA", "LIAM", "YUKI")
LAST_NAMES: tuple[str, ...] = ("SMITH", "GARCIA", "NGUYEN", "MULLER", "ROSSI", "KOWALSKI", "OKAFOR", "TANAKA")
INSTITUTIONS: tuple[str, ...] = ("ST ELSEWHERE GENERAL", "NORTH VALLEY MEDICAL CENTER", "RIVERSIDE CLINIC")


def background_gene_symbols(count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct background gene symbols drawn from the families, none of them planted."""
    pool = [f"{prefix}{i}" for prefix, n in _GENE_FAMILIES for i in range(1, n + 1)]
    pool = [g for g in pool if g not in PLANTED_GENES]
    if count > len(pool):
        raise ValueError(f"at most {len(pool)} background genes are available, asked for {count}")
    chosen = rng.choice(len(pool), size=count, replace=False)
    return [pool[i] for i in sorted(chosen)]
