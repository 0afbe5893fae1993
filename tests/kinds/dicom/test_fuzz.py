"""No file can stop a batch: 300 demo radiographs (every transfer syntax the demo writes), each damaged once by a
seeded damage of damage.py, ingested in one `clinfuse ingest` run beside their clean originals.

Every damaged file must end decoded exactly like its clean original, or listed as skipped or failed with a reason
(or set aside by the selection, e.g. a date flipped past the index time). A damaged file may decode differently
only where no reader could notice: flipped pixel bytes (DICOM has no checksum; RLE, JPEG-LS and JPEG 2000 streams
carry none either), or header damage that turned a grey-scale attribute (window, rescale, bits stored...) into
another valid value. Anything else decoding differently is damage the ingest failed to detect.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.platform.demo.dicom_export import Presentation, fake_header, write_radiograph
from clinfuse.platform.demo.radiograph import render_radiograph


def _load_damage():
    """damage.py beside this file (test modules are imported by path, not as a package)."""
    spec = importlib.util.spec_from_file_location("dicom_damage", Path(__file__).parent / "damage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


damage = _load_damage()

SEED = 19
PATIENTS = 300
SIDE = 64  # small images: the test is about the file layout, not the pixels
IMAGE_SIZE = 32
TOLERANCE = 2e-3  # float16 images in [0, 1]: equal decodes agree to the last bit; this is float16's step near 1
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
VOI_STYLES = ("window", "lut_sequence", "sigmoid")
UNDETECTABLE = "pixel_bytes"
MAX_REASON = 300  # a reason is one line of a report  # the damage kind whose different decodes no reader can notice


@dataclass(frozen=True)
class Fuzzed:
    """The damaged files, what was done to each, and the one ingest of clean and damaged copies."""

    root: Path
    damages: dict[str, object]  # patient id -> damage.Damage
    phi: dict[str, list[str]]  # patient id -> the fake PHI values written into the header
    syntaxes: dict[str, str]  # patient id -> transfer syntax UID of the clean file
    code: int
    stdout: str
    stderr: str
    report: dict
    cohort: pd.DataFrame
    images: dict[str, np.ndarray]  # modality -> images.npy


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Fuzzed:
    root = tmp_path_factory.mktemp("dicom-fuzz")
    rng = np.random.default_rng(SEED)
    patients = [f"P{i:04d}" for i in range(1, PATIENTS + 1)]
    damages, syntaxes, phi = {}, {}, {}
    for i, pid in enumerate(patients):
        canonical, _ = render_radiograph(SIDE, SIDE, float(rng.uniform(0, 2)) if i % 2 else 0.0, rng)
        # a third each: a window, a VOI LUT Sequence, a SIGMOID window (draw_presentation's text needs larger images)
        presentation = Presentation(voi=VOI_STYLES[i % 3], lut_bits=int(rng.choice([8, 12])))
        header = fake_header(pid, "F", 1950 + i % 50, rng)
        phi[pid] = [header.name, header.birth_date, header.address, header.institution, header.referring_physician]
        record = write_radiograph(
            canonical, root / "clean" / f"{pid}.dcm", header,
            datetime(2015, 1, 1) + timedelta(days=i), [str(SEED), pid], rng, presentation,
        )  # fmt: skip
        syntaxes[pid] = record.transfer_syntax
        kind = damage.DAMAGES[i % len(damage.DAMAGES)]
        damages[pid] = damage.damage_file(record.path, root / "damaged" / f"{pid}.dcm", kind, rng)
    for name in ("clean", "damaged"):
        pd.DataFrame({"patient_id": patients, "path": [f"{name}/{pid}.dcm" for pid in patients]}).to_csv(
            root / f"{name}.csv", index=False
        )
    pd.DataFrame({"patient_id": patients, "label": [i % 2 for i in range(PATIENTS)], "index_time": "2100-01-01"}
                 ).to_csv(root / "cohort.csv", index=False)  # fmt: skip
    (root / "cohort.yaml").write_text(
        "name: dicom-fuzz\ncohort: {path: cohort.csv}\npseudonymise_ids: false\nmodalities:\n"
        + "".join(
            f"  - {{name: {name}, kind: dicom, path: {name}, link: manifest, manifest: {name}.csv, "
            f"image_size: {IMAGE_SIZE}}}\n"
            for name in ("clean", "damaged")
        )
    )
    cache = root / "cache"
    exe = Path(sys.executable).parent / "clinfuse"
    done = subprocess.run(
        [str(exe), "ingest", "--config", str(root / "cohort.yaml"), "--out", str(cache), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    written = (cache / "ingest_report.json").is_file()
    return Fuzzed(
        root=root,
        damages=damages,
        phi=phi,
        syntaxes=syntaxes,
        code=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        report=json.loads((cache / "ingest_report.json").read_text()) if written else {},
        cohort=pd.read_parquet(cache / "cohort.parquet") if written else pd.DataFrame(),
        images={n: np.load(cache / "modalities" / n / "images.npy") for n in ("clean", "damaged")} if written else {},
    )


def _outcomes(fuzzed: Fuzzed) -> dict[str, tuple[str, str]]:
    """Each patient's damaged file -> (outcome, reason): same | different | skipped | failed | set_aside."""
    report = fuzzed.report["modalities"]["damaged"]
    listed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for outcome in ("skipped", "failed"):
        for entry in report[outcome]["files"]:
            listed[Path(entry["path"]).stem].append((outcome, entry["reason"]))
    rows = fuzzed.cohort.set_index("patient")
    outcomes, problems = {}, []
    for pid in fuzzed.damages:
        entries, row = listed.get(pid, []), rows.loc[pid]
        if row["present_damaged"]:
            clean, damaged = (fuzzed.images[n][row[f"row_{n}"]].astype(np.float32) for n in ("clean", "damaged"))
            same = np.allclose(clean, damaged, atol=TOLERANCE, rtol=0)
            outcomes[pid] = ("same" if same else "different", "")
            if entries:
                problems.append(f"{pid}: decoded and also listed as {entries}")
        elif len(entries) == 1:
            outcomes[pid] = entries[0]
            if not entries[0][1].strip():
                problems.append(f"{pid}: {entries[0][0]} without a reason")
        elif not entries:
            outcomes[pid] = ("set_aside", "")
        else:
            problems.append(f"{pid}: listed {len(entries)} times: {entries}")
    assert not problems, f"{len(problems)} damaged file(s) not accounted for exactly once:\n" + "\n".join(problems)
    set_aside = sum(outcome == "set_aside" for outcome, _ in outcomes.values())
    assert set_aside == sum(report["selection"].values()), (
        f"{set_aside} damaged file(s) neither decoded nor listed, but the selection set aside "
        f"{report['selection']}: {[pid for pid, (o, _) in outcomes.items() if o == 'set_aside']}"
    )
    return outcomes


def _summary(fuzzed: Fuzzed, outcomes: dict[str, tuple[str, str]]) -> str:
    columns = ("same", "different", "skipped", "failed", "set_aside")
    by_kind: dict[str, Counter] = defaultdict(Counter)
    reasons: dict[str, Counter] = defaultdict(Counter)
    for pid, (outcome, reason) in outcomes.items():
        kind = fuzzed.damages[pid].kind
        compressed = "native" if fuzzed.syntaxes[pid] in NATIVE else "compressed"
        by_kind[kind][outcome] += 1
        if outcome == "different":
            reasons[kind][f"different ({compressed})"] += 1
        elif reason:
            reasons[kind][f"{outcome}: {reason[:100]}"] += 1
    lines = [f"{'damage':16s}" + "".join(f"{c:>11s}" for c in columns)]
    for kind in damage.DAMAGES:
        lines.append(f"{kind:16s}" + "".join(f"{by_kind[kind][c]:11d}" for c in columns))
    for kind in damage.DAMAGES:
        lines += [f"  {kind}: {count:3d} x {reason}" for reason, count in reasons[kind].most_common()]
    return "\n".join(lines)


def test_the_ingest_of_damaged_files_exits_0_without_a_traceback(fuzzed: Fuzzed) -> None:
    assert "Traceback" not in fuzzed.stderr + fuzzed.stdout, fuzzed.stderr[-4000:]
    assert fuzzed.code == 0, f"exit {fuzzed.code}; stderr:\n{fuzzed.stderr[-4000:]}"
    kinds = Counter(d.kind for d in fuzzed.damages.values())
    assert set(kinds) == set(damage.DAMAGES) and min(kinds.values()) >= PATIENTS // len(damage.DAMAGES)
    assert {s for s in fuzzed.syntaxes.values()} >= {*NATIVE, "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90",
                                                     "1.2.840.10008.1.2.4.80"}  # fmt: skip


def test_every_clean_original_is_decoded(fuzzed: Fuzzed) -> None:
    assert fuzzed.code == 0, f"exit {fuzzed.code}; stderr:\n{fuzzed.stderr[-4000:]}"
    clean = fuzzed.report["modalities"]["clean"]
    assert clean["patients_present"] == PATIENTS, clean
    assert clean["skipped"]["count"] == clean["failed"]["count"] == 0


def test_every_damaged_file_is_decoded_as_its_original_or_listed_with_a_reason(fuzzed: Fuzzed) -> None:
    assert fuzzed.code == 0, f"exit {fuzzed.code}; stderr:\n{fuzzed.stderr[-4000:]}"
    outcomes = _outcomes(fuzzed)
    print("\n" + _summary(fuzzed, outcomes))
    unexplained = []
    for pid, (outcome, _) in outcomes.items():
        kind = fuzzed.damages[pid].kind
        if outcome != "different" or kind == UNDETECTABLE:
            continue
        changed = damage.presentation_changes(
            fuzzed.root / "clean" / f"{pid}.dcm", fuzzed.root / "damaged" / f"{pid}.dcm"
        )
        if kind not in ("header_bytes", "wrong_vr") or not changed or changed == ["<unreadable>"]:
            unexplained.append(f"{pid} ({fuzzed.syntaxes[pid]}): {fuzzed.damages[pid].detail}; changed {changed}")
    assert not unexplained, (
        f"{len(unexplained)} damaged file(s) decoded differently from their original although the damage is "
        "detectable:\n" + "\n".join(unexplained)
    )


def test_reasons_name_the_fault_and_carry_no_header_values(fuzzed: Fuzzed) -> None:
    """A reason is read by people without access to the images: it names what is wrong, never repeats what the
    header says (a length pointing past the end makes an element swallow the names after it), and never calls a
    radiograph "not an image"."""
    assert fuzzed.code == 0, f"exit {fuzzed.code}; stderr:\n{fuzzed.stderr[-4000:]}"
    text = json.dumps(fuzzed.report)
    leaked = sorted({value for values in fuzzed.phi.values() for value in values if value in text})
    assert not leaked, f"ingest_report.json repeats header values: {leaked[:5]}"
    outcomes = _outcomes(fuzzed)
    too_long = {pid: len(reason) for pid, (_, reason) in outcomes.items() if len(reason) > MAX_REASON}
    assert not too_long, f"reasons over {MAX_REASON} characters: {too_long}"
    contradictory = {pid: r for pid, (_, r) in outcomes.items() if re.match(r"not an image: .*Image Storage", r)}
    assert not contradictory, contradictory
    frames = {
        pid: r
        for pid, (o, r) in outcomes.items()
        if fuzzed.damages[pid].kind == "frames_1a" and o in ("skipped", "failed")
    }
    assert all("frames" in r.lower() for r in frames.values()), frames
