"""Check explanations against the demo cohort's planted truth (ground_truth.json).

Each figure sits beside its chance level; a modality the cohort lacks gives n = 0:
- dominant modality: among patients whose truth names a dominant modality that is present, the share for
  which the exact modality Shapley value ranks it first (chance: 1 / modalities present);
- planted genes: mean share of the 20 planted genes among the top-20 table SHAP features, over positive
  patients with genomics (chance: 20 / panel size);
- image heatmap: mean share of heatmap mass inside the planted finding's box, over patients with a clear
  finding (chance: the box's share of the image area);
- notes: over patients whose notes (before the index time) hold a planted phrase and whose notes severity is
  clearly raised, the share whose top-5 tokens hold a word of a planted phrase (chance: the probability that 5 of
  the patient's distinct tokens drawn at random hold one); and the mean attribution of the findings' key words
  inside negations ("no evidence of consolidation") against inside planted phrases (negated ones must not push
  the risk up as much);
- CT: over patients whose index CT series (not broken) shows a clear nodule, the mean share of 3D heatmap mass
  inside the planted sphere, mapped into the volume through its voxel-to-RAS affine (chance: the sphere's share of
  the volume);
- ECG: over patients with a clear elevation, the mean share of |attribution| in the planted leads (chance: their
  share of the leads) and inside the planted ST segments of those leads (chance: the segments' share of the
  leads x samples).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from clinfuse.kinds.dicom.pixels import ImageGeometry
from clinfuse.kinds.dicom.store import holds_volumes
from clinfuse.pipelines.explain import RunExplainer
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

CLEAR_SEVERITY = 1.0  # latent severity (SD units) above which a planted signal is clearly present
CLEAR_ST_MV = 0.15
NOTES_TOP = 5


def check_against_truth(run: Path, cohort_dir: Path, split: str = "test", limit: int | None = None) -> dict:
    truth = json.loads((cohort_dir / "ground_truth.json").read_text())
    explainer = RunExplainer(run, top_k=20)
    pseudonym = Pseudonymiser(load_pseudonym_key())
    by_pseudonym = {pseudonym(pid): entry for pid, entry in truth["patients"].items()}
    cohort = explainer.cache.cohort
    patients = cohort.loc[cohort["split"] == split, "patient"].tolist()[:limit]
    volumes = {n for n, k in explainer.kinds.items() if k == "dicom" and holds_volumes(explainer.cache, n)}
    names = {kind: next((n for n, k in explainer.kinds.items() if k == kind and n not in volumes), None)
             for kind in ("table", "dicom", "notes", "waveform")}  # fmt: skip
    names["volume"] = next(iter(sorted(volumes)), None)
    tally: dict[str, list] = {
        key: []
        for key in (
            "dominant",
            "dominant_chance",
            "genes",
            "heat",
            "heat_area",
            "notes",
            "notes_chance",
            "positive",
            "negated",
            "ecg",
            "ecg_area",
            "ecg_leads",
            "ecg_leads_chance",
            "sphere",
            "sphere_volume",
        )
    }
    planted_genes = set(truth["planted"]["genes"])
    planted_notes = truth["planted"].get("notes", {})
    phrase_words = {word for phrase in planted_notes.get("phrases", []) for word in phrase.lower().split()}
    signal_words = set(planted_notes.get("tokens", []))
    for patient in patients:
        entry = by_pseudonym[patient]
        explanation = explainer.explain(patient, store_heatmaps=False)
        within = explanation.within
        _dominant(entry, explanation.modality.logit_values, tally)
        if names["table"] in within and entry["label"] == 1:
            top = {t["name"] for t in within[names["table"]]["top"][:20]}
            tally["genes"].append(len(top & planted_genes) / len(planted_genes))
        if names["dicom"] in within:
            _image(entry, within[names["dicom"]], tally)
        if names["volume"] in within and entry.get("ct"):
            _volume(entry, within[names["volume"]], tally)
        if names["notes"] in within and entry.get("notes"):
            _notes(entry, within[names["notes"]], phrase_words, signal_words, tally)
        if names["waveform"] in within and entry.get("ecg"):
            _ecg(entry["ecg"], within[names["waveform"]], tally)
    panel = len(explainer.contexts[names["table"]].feature_names) if names["table"] else 0
    return {
        "split": split,
        "dominant_modality_first": _share(tally["dominant"], tally["dominant_chance"]),
        "planted_genes_in_top20": {"n": len(tally["genes"]), "mean_recall": _mean(tally["genes"]),
                                   "chance": 20 / panel if panel else None},
        "heatmap_mass_in_finding": {"n": len(tally["heat"]), "mean_fraction": _mean(tally["heat"]),
                                    "chance": _mean(tally["heat_area"])},
        "ct_heatmap_mass_in_sphere": {"n": len(tally["sphere"]), "mean_fraction": _mean(tally["sphere"]),
                                      "chance": _mean(tally["sphere_volume"])},
        "phrase_words_in_notes_top5": _share(tally["notes"], tally["notes_chance"]),
        "signal_word_attribution": {"in_planted_phrases": _mean(tally["positive"]),
                                    "in_negations": _mean(tally["negated"]),
                                    "n_positive": len(tally["positive"]), "n_negated": len(tally["negated"])},
        "ecg_mass_in_planted_leads": {"n": len(tally["ecg_leads"]), "mean_fraction": _mean(tally["ecg_leads"]),
                                      "chance": _mean(tally["ecg_leads_chance"])},
        "ecg_mass_in_st_segments": {"n": len(tally["ecg"]), "mean_fraction": _mean(tally["ecg"]),
                                    "chance": _mean(tally["ecg_area"])},
    }  # fmt: skip


def _dominant(entry: dict, values: dict[str, float], tally: dict[str, list]) -> None:
    dominant = entry["dominant_modality"]
    if dominant and dominant in values:
        ranked = sorted(values, key=lambda m: -abs(values[m]))
        tally["dominant"].append(ranked[0] == dominant)
        tally["dominant_chance"].append(1.0 / len(values))


def _image(entry: dict, within: dict, tally: dict[str, list]) -> None:
    image = entry.get("image") or {}
    finding = image.get("finding")
    if finding and entry["latent"]["finding_amplitude"] >= CLEAR_SEVERITY:
        heatmap = np.clip(within["heatmap_array"].astype(float), 0, None)
        inside, area = _mass_inside(heatmap, finding["bbox"], image["rows"], image["cols"])
        tally["heat"].append(inside)
        tally["heat_area"].append(area)


def _volume(entry: dict, within: dict, tally: dict[str, list]) -> None:
    ct = entry["ct"]
    finding = ct.get("finding")
    if not finding or ct.get("broken") or entry["latent"].get("ct_severity", 0.0) < CLEAR_SEVERITY:
        return
    heatmap = np.clip(np.asarray(within["heatmap_array"], dtype=float), 0, None)
    affine = np.asarray(within["source_geometry"]["affine"], dtype=float)
    x, y, z = finding["centre_lps_mm"]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in heatmap.shape], indexing="ij"), axis=-1).astype(float)
    ras = grid @ affine[:3, :3].T + affine[:3, 3]  # each voxel's centre in RAS millimetres
    inside = np.linalg.norm(ras - np.array([-x, -y, z]), axis=-1) <= finding["radius_mm"]  # LPS -> RAS
    total = heatmap.sum()
    tally["sphere"].append(float(heatmap[inside].sum() / total) if total > 0 else 0.0)
    tally["sphere_volume"].append(float(inside.mean()))


def _notes(entry: dict, within: dict, phrase_words: set[str], signal_words: set[str],
           tally: dict[str, list]) -> None:  # fmt: skip
    """Words of planted phrases among the top tokens; the key words' values in planted phrases and in negations."""
    tokens = [(str(token).lower(), float(value)) for token, value in within["detail"].get("tokens", [])]
    distinct = {token for token, _ in tokens}
    notes = entry["notes"]
    if notes.get("planted") and entry["latent"].get("notes_severity", 0.0) >= CLEAR_SEVERITY:
        top = [item["name"].lower() for item in within["top"][:NOTES_TOP]]
        tally["notes"].append(bool(phrase_words & set(top)))
        without_signal, draws = len(distinct - phrase_words), min(NOTES_TOP, len(distinct))
        miss = math.comb(without_signal, draws) / math.comb(len(distinct), draws) if distinct else 1.0
        tally["notes_chance"].append(1.0 - miss)
    values = [value for token, value in tokens if token in signal_words]
    if values and notes.get("planted") and not notes.get("negated"):
        tally["positive"].append(float(np.mean(values)))
    elif values and notes.get("negated") and not notes.get("planted"):
        tally["negated"].append(float(np.mean(values)))


def _ecg(truth: dict, within: dict, tally: dict[str, list]) -> None:
    if truth["amplitude_mv"] < CLEAR_ST_MV or within.get("heatmap_array") is None:
        return
    heat = np.abs(within["heatmap_array"].astype(float))
    rate, leads = within["detail"]["sampling_rate"], within["detail"]["leads"]
    mask = np.zeros_like(heat, dtype=bool)
    for lead in truth["leads"]:
        for start, end in truth["segments_s"]:
            mask[leads.index(lead), int(start * rate) : int(math.ceil(end * rate))] = True
    total = heat.sum()
    planted_leads = [leads.index(lead) for lead in truth["leads"]]
    tally["ecg_leads"].append(float(heat[planted_leads].sum() / total) if total > 0 else 0.0)
    tally["ecg_leads_chance"].append(len(planted_leads) / len(leads))
    tally["ecg"].append(float(heat[mask].sum() / total) if total > 0 else 0.0)
    tally["ecg_area"].append(float(mask.mean()))


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
