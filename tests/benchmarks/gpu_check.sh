#!/usr/bin/env bash
# GPU check for the lent device machine (H100/H200, Python 3.12 with torch and pytorch-lightning preinstalled,
# no network): installs ClinFuse's missing runtime packages offline from the wheels carried in .whl/ (fetched
# here by tests/benchmarks/fetch_gpu_wheels.sh), then runs the real job end to end on the GPU and the training
# throughput benchmark, printing everything:
#
#   1. environment: GPU, python, torch and the preinstalled packages ClinFuse uses
#   2. pip install --no-index of the carried wheels, and of ClinFuse itself (--no-deps, built from a copy of the
#      working tree with the carried setuptools), into a --target folder put first on PYTHONPATH. A venv made
#      with --system-site-packages would not see torch there: the image's python3 is itself a venv, whose
#      packages are not the base interpreter's site-packages.
#   3. `clinfuse demo-data` (1000 patients)
#   4. `clinfuse ingest` of a cohort.yaml variant with only the imaging (image_size 224) and genomics
#      modalities: the EHR modality needs PyHealth, which the machine lacks and the GPU check does not need
#   5. `clinfuse train --accelerator gpu --image-encoder densenet121` for a few epochs (bf16-mixed, channels_last)
#   6. `clinfuse evaluate`
#   7. tests/benchmarks/train_throughput.py on that cache (pipeline vs raw step images/s, bf16 vs fp32)
#   8. 3D: a `--ct` demo cohort (300 patients) ingested as volumes (the CT modality alone), then `clinfuse train`
#      with the same --image-encoder, which builds DenseNet121 in 3D for volumes (bf16-mixed, channels_last_3d):
#      the GPU default for volumes, which the CPU tests cannot afford (no fast CPU kernel for bf16 3D convolutions)
#
# Everything runs under a scratch folder (default: a new /tmp/clinfuse-gpu-check.*); the log, metrics,
# report and throughput JSON are also copied to $OUT (the device tool brings that folder back) when it is set.
# Planned to finish in about 6 minutes on an H100 (the 3D steps about one of them); the device call's limit is 10.
#
# Device call:  command "bash tests/benchmarks/gpu_check.sh", carry [".whl"], timeout_s 540
#
# Dry run on a machine without GPU (tests this script's logic with the project's .venv, CPU, tiny sizes; the
# wheels are still installed offline into the scratch folder and imported from there):
#   CLINFUSE_GPU_CHECK_DRY=1 bash tests/benchmarks/gpu_check.sh     (or: bash tests/benchmarks/gpu_check.sh --cpu)
# Overrides: CLINFUSE_GPU_CHECK_{PATIENTS,PATIENTS_3D,IMAGE_SIZE,EPOCHS,ENCODER,WORK}, CLINFUSE_WHEELS (wheels),
# CLINFUSE_PYTHON (interpreter).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

DRY="${CLINFUSE_GPU_CHECK_DRY:-0}"
for arg in "$@"; do
  case "$arg" in
    --cpu | --dry) DRY=1 ;;
    *) echo "usage: $0 [--cpu]" >&2; exit 2 ;;
  esac
done

if [[ "$DRY" == 1 ]]; then
  PY="${CLINFUSE_PYTHON:-$REPO/.venv/bin/python}"
  ACCELERATOR=cpu
  PATIENTS="${CLINFUSE_GPU_CHECK_PATIENTS:-120}"
  IMAGE_SIZE="${CLINFUSE_GPU_CHECK_IMAGE_SIZE:-64}"
  EPOCHS="${CLINFUSE_GPU_CHECK_EPOCHS:-1}"
  ENCODER="${CLINFUSE_GPU_CHECK_ENCODER:-small_cnn}"
  RESAMPLES=100
  THROUGHPUT_ARGS=(--batch-size 32 --steps 5 --warmup 2)
  PATIENTS_3D="${CLINFUSE_GPU_CHECK_PATIENTS_3D:-40}"
  VOLUME_SHAPE=(32 32 32)  # the smallest a DenseNet121 takes, should ENCODER name it
else
  PY="${CLINFUSE_PYTHON:-python3}"
  ACCELERATOR=gpu
  PATIENTS="${CLINFUSE_GPU_CHECK_PATIENTS:-1000}"
  IMAGE_SIZE="${CLINFUSE_GPU_CHECK_IMAGE_SIZE:-224}"
  EPOCHS="${CLINFUSE_GPU_CHECK_EPOCHS:-3}"
  ENCODER="${CLINFUSE_GPU_CHECK_ENCODER:-densenet121}"
  RESAMPLES=1000
  THROUGHPUT_ARGS=(--batch-size 64 --steps 30 --warmup 5)
  PATIENTS_3D="${CLINFUSE_GPU_CHECK_PATIENTS_3D:-300}"
  VOLUME_SHAPE=(64 64 48)  # the dicom kind's default volume
fi
WHEELS="${CLINFUSE_WHEELS:-$REPO/.whl}"
WORK="${CLINFUSE_GPU_CHECK_WORK:-$(mktemp -d /tmp/clinfuse-gpu-check.XXXXXX)}"
RESULTS="${OUT:-$WORK/out}"
SITE="$WORK/site"
mkdir -p "$WORK" "$RESULTS"
LOG="$RESULTS/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export CLINFUSE_HOME="$WORK/home"  # a throw-away pseudonymisation key, never ~/.clinfuse

CURRENT=setup
STEP_STARTED=$SECONDS
TIMES=()
step() {
  TIMES+=("$(printf '%-20s %4ds' "$CURRENT" $((SECONDS - STEP_STARTED)))")
  CURRENT="$1"
  STEP_STARTED=$SECONDS
  echo
  echo "=== [$(date +%H:%M:%S), +${SECONDS}s] $1"
}
# the CLI run as a module from the scratch folder (the repository root would put platform/ etc. on sys.path)
clinfuse() { (cd "$WORK" && "$PY" -m clinfuse.pipelines.cli "$@"); }
on_exit() {
  local code=$?
  if ((code != 0)); then echo "=== FAILED (exit $code) during step: $CURRENT; log: $LOG"; fi
  exec >&- 2>&-  # let tee write the last lines before the script ends
  wait "$TEE_PID" 2>/dev/null || true
}
trap on_exit EXIT

echo "gpu_check: mode $([[ "$DRY" == 1 ]] && echo "DRY (cpu)" || echo gpu), python $PY, wheels $WHEELS"
echo "scratch $WORK, results $RESULTS; patients $PATIENTS, image ${IMAGE_SIZE}px, $EPOCHS epoch(s), encoder $ENCODER"

step "environment"
if [[ "$ACCELERATOR" == gpu ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
fi
"$PY" - "$ACCELERATOR" <<'EOF'
import os, sys
from importlib.metadata import PackageNotFoundError, version

import torch

print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} CPU cores")
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}, bf16 supported: {torch.cuda.is_bf16_supported()}"
         if torch.cuda.is_available() else ""))
names = ["pytorch-lightning", "torchmetrics", "numpy", "pandas", "scipy", "scikit-learn", "pyarrow", "matplotlib",
         "PyYAML", "typer", "click", "rich", "tqdm", "safetensors", "typing-extensions", "setuptools"]
have = []
for name in names:
    try:
        have.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        have.append(f"{name} MISSING")
print("preinstalled: " + ", ".join(have))
if sys.argv[1] == "gpu" and not torch.cuda.is_available():
    sys.exit("error: no CUDA device visible")
EOF

step "install (offline)"
shopt -s nullglob
wheels=()
for whl in "$WHEELS"/*.whl; do
  case "$(basename "$whl")" in setuptools-* | wheel-* | packaging-*) ;; *) wheels+=("$whl") ;; esac  # build-only
done
if ((${#wheels[@]} == 0)); then
  echo "error: no wheels in $WHEELS: run tests/benchmarks/fetch_gpu_wheels.sh here and pass carry [\".whl\"]" >&2
  exit 1
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check --upgrade \
  --target "$SITE" "${wheels[@]}"
# ClinFuse itself, built from a copy of the working tree (so no build/ or egg-info lands in the repository)
rm -rf "$WORK/src"
mkdir -p "$WORK/src"
mapfile -t sources < <("$PY" -c 'import tomllib
config = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]
print("\n".join(sorted(set(config["package-dir"].values()))))')
((${#sources[@]} > 0)) || { echo "error: no [tool.setuptools] package-dir in pyproject.toml" >&2; exit 1; }
tar -C "$REPO" --exclude=__pycache__ -cf - pyproject.toml README.md "${sources[@]}" | tar -C "$WORK/src" -xf -
"$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile --no-cache-dir \
  --disable-pip-version-check --upgrade --target "$SITE" "$WORK/src"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
(cd "$WORK" && "$PY" - "$SITE" <<'EOF'
import sys
from importlib.metadata import version
from pathlib import Path

import clinfuse.pipelines.cli  # the CLI and the modules each command imports
import clinfuse.pipelines.evaluation.evaluate
import clinfuse.pipelines.training.train
import clinfuse.platform.ingest
import monai
import monai.networks.nets
import polars
import pydantic
import pydicom
import xgboost

site = Path(sys.argv[1]).resolve()
where = Path(clinfuse.pipelines.training.train.__file__).resolve()
print(f"clinfuse imported from {where}")
assert site in where.parents, f"clinfuse is not the one installed into {site}"
for name in ("monai", "pydicom", "pydantic", "polars", "xgboost-cpu", "pylibjpeg", "pyjpegls"):
    print(f"  {name} {version(name)}")
EOF
)

step "demo cohort"
clinfuse demo-data --out "$WORK/demo" --patients "$PATIENTS" --seed 7

step "cohort.yaml variant"
"$PY" - "$WORK/demo/cohort.yaml" "$WORK/demo/cohort_gpu.yaml" "$IMAGE_SIZE" <<'EOF'
import sys

import yaml

source, target, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = yaml.safe_load(open(source))
config["modalities"] = [m for m in config["modalities"] if m["kind"] in ("dicom", "table")]
for modality in config["modalities"]:
    if modality["kind"] == "dicom":
        modality["image_size"] = size
with open(target, "w") as handle:
    yaml.safe_dump(config, handle, sort_keys=False)
EOF
cat "$WORK/demo/cohort_gpu.yaml"

step "ingest"
clinfuse ingest --config "$WORK/demo/cohort_gpu.yaml" --out "$WORK/cache"
cp "$WORK/cache/ingest_report.json" "$RESULTS/"

step "train"
clinfuse train --cache "$WORK/cache" --out "$WORK/run" --accelerator "$ACCELERATOR" --max-epochs "$EPOCHS" \
  --image-encoder "$ENCODER"
cp "$WORK/run/run.json" "$RESULTS/"
"$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({k: r.get(k) for k in
  ("settings", "best_epoch_val_auroc", "epochs_run", "duration_s", "versions")}, indent=1))' "$WORK/run/run.json"

step "evaluate"
clinfuse evaluate "$WORK/run" --resamples "$RESAMPLES"
cp "$WORK/run/metrics.json" "$WORK/run/report.md" "$RESULTS/"

step "train throughput"
"$PY" "$REPO/tests/benchmarks/train_throughput.py" --cache "$WORK/cache" --accelerator "$ACCELERATOR" \
  --image-encoder "$ENCODER" "${THROUGHPUT_ARGS[@]}" --json "$RESULTS/throughput.json"

step "3D demo cohort"
clinfuse demo-data --out "$WORK/demo3d" --patients "$PATIENTS_3D" --seed 7 --ct
"$PY" - "$WORK/demo3d/cohort.yaml" "$WORK/demo3d/cohort_3d.yaml" "${VOLUME_SHAPE[@]}" <<'EOF'
import sys

import yaml

source, target, shape = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3:6]]
config = yaml.safe_load(open(source))
config["modalities"] = [m for m in config["modalities"] if m.get("volume")]
for modality in config["modalities"]:
    modality["volume_shape"] = shape
with open(target, "w") as handle:
    yaml.safe_dump(config, handle, sort_keys=False)
EOF
cat "$WORK/demo3d/cohort_3d.yaml"

step "3D ingest"
clinfuse ingest --config "$WORK/demo3d/cohort_3d.yaml" --out "$WORK/cache3d"

step "3D train"
# --split: under 1,000 patients training would otherwise cross-validate (5 folds and a refit)
clinfuse train --cache "$WORK/cache3d" --out "$WORK/run3d" --accelerator "$ACCELERATOR" --max-epochs "$EPOCHS" \
  --image-encoder "$ENCODER" --split
cp "$WORK/run3d/run.json" "$RESULTS/run3d.json"
"$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({k: r.get(k) for k in
  ("architectures", "best_epoch_val_auroc", "epochs_run", "duration_s")}, indent=1))' "$WORK/run3d/run.json"

step "done"
echo "step durations (s):"
printf '  %s\n' "${TIMES[@]}"
echo "total ${SECONDS}s; results in $RESULTS: $(cd "$RESULTS" && echo *)"
