"""Check explanations against the demo cohort's planted truth (ground_truth.json).

Three figures, each beside its chance level:
- dominant modality: among patients whose truth names a dominant modality that is present, the share for
  which the exact modality Shapley value ranks it first (chance: 1 / modalities present);
- planted genes: mean share of the 20 planted genes among the top-20 table SHAP features, over positive
  patients with genomics (chance: 20 / panel size);
- image heatmap: mean share of heatmap mass inside the planted finding's box, over patients with a clear
  finding (chance: the box's share of the image area).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from clinfuse.pipelines.explain import RunExplainer
from clinfuse.platform.ingest.dicom_pixels import ImageGeometry
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key


def check_against_truth(run: Path, cohort_dir: Path, split: str = "test", limit: int | None = None) -> dict:
    truth = json.loads((cohort_dir / "ground_truth.json").read_text())
    explainer = RunExplainer(run, top_k=20)
    pseudonym = Pseudonymiser(load_pseudonym_key())
    by_pseudonym = {pseudonym(pid): entry for pid, entry in truth["patients"].items()}
    planted_genes = set(truth["planted"]["genes"])
    kinds = explainer.kinds
    table_name = next((n for n, k in kinds.items() if k == "table"), None)
    image_name = next((n for n, k in kinds.items() if k == "dicom"), None)
    cohort = explainer.cache.cohort
    patients = cohort.loc[cohort["split"] == split, "patient"].tolist()[:limit]

    dominant_hits, dominant_chance, gene_recall, heat_inside, heat_area = [], [], [], [], []
    for patient in patients:
        entry = by_pseudonym[patient]
        explanation = explainer.explain(patient, store_heatmaps=False)
        values = explanation.modality.logit_values
        dominant = entry["dominant_modality"]
        if dominant and dominant in values:
            ranked = sorted(values, key=lambda m: -abs(values[m]))
            dominant_hits.append(ranked[0] == dominant)
            dominant_chance.append(1.0 / len(values))
        if table_name in explanation.within and entry["label"] == 1:
            top = {t["name"] for t in explanation.within[table_name]["top"][:20]}
            gene_recall.append(len(top & planted_genes) / len(planted_genes))
        image = entry.get("image") or {}
        finding = image.get("finding")
        if image_name in explanation.within and finding and entry["latent"]["finding_amplitude"] >= 1.0:
            heatmap = np.clip(explanation.within[image_name]["heatmap_array"].astype(float), 0, None)
            inside, area = _mass_inside(heatmap, finding["bbox"], image["rows"], image["cols"])
            heat_inside.append(inside)
            heat_area.append(area)
    panel = len(explainer.contexts[table_name].feature_names) if table_name else 0
    return {
        "split": split,
        "dominant_modality_first": _share(dominant_hits, dominant_chance),
        "planted_genes_in_top20": {
            "n": len(gene_recall),
            "mean_recall": _mean(gene_recall),
            "chance": 20 / panel if panel else None,
        },  # fmt: skip
        "heatmap_mass_in_finding": {
            "n": len(heat_inside),
            "mean_fraction": _mean(heat_inside),
            "chance": _mean(heat_area),
        },  # fmt: skip
    }


def _mass_inside(heatmap: np.ndarray, bbox: list[int], rows: int, cols: int) -> tuple[float, float]:
    """Heatmap mass share inside the finding box (mapped onto the preprocessed square), and the box area share."""
    geometry = ImageGeometry(rows=rows, cols=cols, size=heatmap.shape[-1])
    (off_r, off_c), scale = geometry.offset, geometry.scale
    r0, c0, r1, c1 = bbox
    box = (slice(int(r0 * scale + off_r), int(np.ceil(r1 * scale + off_r))),
           slice(int(c0 * scale + off_c), int(np.ceil(c1 * scale + off_c))))  # fmt: skip
    total = heatmap.sum()
    inside = heatmap[box].sum() / total if total > 0 else 0.0
    mask = np.zeros_like(heatmap, dtype=bool)
    mask[box] = True
    return float(inside), float(mask.mean())


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _share(hits: list[bool], chance: list[float]) -> dict:
    return {"n": len(hits), "fraction": _mean([float(h) for h in hits]), "chance": _mean(chance)}
