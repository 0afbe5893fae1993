#!/usr/bin/env bash
# Download, here (where PyPI is reachable), the wheels that tests/benchmarks/gpu_check.sh installs offline on the
# lent GPU machine. That machine's image has Python 3.12 with torch, pytorch-lightning, torchmetrics, numpy,
# pandas, scipy, scikit-learn, pyarrow, matplotlib, pyyaml, typer, rich, tqdm and safetensors, but not what is
# listed below; it reaches no registry, so the wheels travel with the working tree.
#
# Where they go: .whl/ in the repository root, ignored through .git/info/exclude (this script adds the line
# '/.whl/' there once; no tracked file changes, .gitignore is not touched). An ignored folder travels only when
# the device call names it in `carry`, so that call passes carry [".whl"]. The folder is rebuilt from scratch on
# each run, so it holds exactly one version of each package (two versions of one package stop an install).
#
# Size: the working tree that travels (tracked + untracked-not-ignored files + carried paths) must stay under
# 64 MiB; the wheels are about 61 MiB, two thirds of it polars' runtime (imported by the ingest code even when
# the cohort has no EHR modality). The script prints the total and fails above the limit.
#
# Versions are the ones the project's .venv was tested with; the script warns where .venv now differs.
#
# Usage (from anywhere):  bash tests/benchmarks/fetch_gpu_wheels.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
DEST="$REPO/.whl"
LIMIT_MIB=64

# Runtime imports of `clinfuse ingest` (dicom + table modalities), `train`, `evaluate` that the image lacks.
RUNTIME=(
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
  monai==1.6.1
  pydicom==3.0.2 pylibjpeg==2.1.0 pylibjpeg-libjpeg==2.5.0 pylibjpeg-openjpeg==2.6.0 pyjpegls==1.5.1
  pylibjpeg-rle==2.2.0
  polars==1.35.2 polars-runtime-32==1.35.2
  # the CPU-only build of XGBoost (module `xgboost`, 6 MB); the `xgboost` wheel bundles CUDA and is far larger
  xgboost-cpu==3.4.1
)
# Build backend for installing ClinFuse itself from the working tree (pip's isolated build, offline); gpu_check.sh
# uses these for the build only and does not install them.
BUILD=(setuptools==84.2.1 wheel==0.48.0 packaging==26.4)

PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || PY=python3
PLATFORMS=()
for n in 39 35 34 31 28 27 17; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)

# .venv versions that differ from the pins (xgboost-cpu is `xgboost` there)
"$PY" - "${RUNTIME[@]}" "${BUILD[@]}" <<'EOF' || true
import sys
from importlib.metadata import PackageNotFoundError, version

for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        have = version("xgboost" if name == "xgboost-cpu" else name)
    except PackageNotFoundError:
        continue
    if have != wanted:
        print(f"warning: .venv has {name} {have}, the pin is {wanted}", file=sys.stderr)
EOF

# once: ignore .whl/ locally (git's own exclude file, not a tracked file)
EXCLUDE="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$EXCLUDE")"
grep -qxF '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >>"$EXCLUDE"

NEW="$(mktemp -d /tmp/clinfuse-wheels.XXXXXX)"  # outside the tree: a failed run leaves nothing that would travel
trap 'rm -rf "$NEW"' EXIT
FIND_LINKS=()
[[ -d "$DEST" ]] && FIND_LINKS=(--find-links "$DEST")  # reuse what an earlier run fetched
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" "${FIND_LINKS[@]}" -d "$NEW" "${RUNTIME[@]}" "${BUILD[@]}"
rm -rf "$DEST"
mv "$NEW" "$DEST"

ls -l "$DEST"
wheels_kib=$(du -sk "$DEST" | cut -f1)
tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total_kib=$((wheels_kib + tree_kib))
fetched=("$DEST"/*.whl)
echo "wheels: ${#fetched[@]} files, $((wheels_kib / 1024)) MiB in $DEST"
echo "travels with carry [\".whl\"]: working tree ${tree_kib} KiB + wheels ${wheels_kib} KiB" \
  "= $((total_kib / 1024)) MiB (limit ${LIMIT_MIB} MiB)"
if ((total_kib > LIMIT_MIB * 1024)); then
  echo "error: over the ${LIMIT_MIB} MiB the device call carries" >&2
  exit 1
fi
