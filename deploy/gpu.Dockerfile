# syntax=docker/dockerfile:1.7
# ClinFuse GPU image: training (`clinfuse train --accelerator gpu`), batch scoring (`clinfuse score`) and the Dask
# scheduler and workers that scoring fans out to (one image, so client, scheduler and workers run the same
# Python, dask and clinfuse versions). Build from the repository root (BuildKit reads gpu.Dockerfile.dockerignore):
#
#   docker build -f deploy/gpu.Dockerfile -t clinfuse/gpu:0.1.0 .
#
# No key, password or credential is ever copied or set here: the pseudonymisation key, the dashboard users and
# the MLflow address arrive at run time as mounted files, Secrets and environment variables (deploy/README.md).

# CUDA runtime base. PyTorch's Linux wheels bring their own CUDA, cuDNN and NCCL libraries; the base provides the
# NVIDIA container environment and forward-compatibility libraries. Keep its CUDA major equal to torch's.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04's own Python 3.12; libgomp1 for XGBoost's OpenMP; tini as PID 1 (reaps Dask's and DataLoader's
# worker processes and forwards SIGTERM so Kubernetes can stop a job cleanly).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv libgomp1 tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM base AS builder
# Where torch and torchvision come from. PyPI's Linux x86_64 wheels are the CUDA build matching the base image;
# a PyTorch index (e.g. https://download.pytorch.org/whl/cu130) pins a CUDA flavour explicitly.
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3.12 -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip setuptools wheel
WORKDIR /src
# Dependencies first (a layer that survives source edits): torch's requirement and the rest, read from pyproject.
COPY pyproject.toml README.md ./
RUN /opt/venv/bin/python -c 'import re, tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; torch = [d for d in deps if re.match(r"torch\s*[<>=!~]", d)]; open("/tmp/torch.txt", "w").write("\n".join(torch) + "\n"); open("/tmp/requirements.txt", "w").write("\n".join(d for d in deps if d not in torch) + "\n")' \
    && /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" -r /tmp/torch.txt torchvision \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY platform/ platform/
COPY models/ models/
COPY kinds/ kinds/
COPY pipelines/ pipelines/
COPY dashboards/ dashboards/
# A regular (not editable) install: the runtime stage gets the venv only, never the source folders.
RUN /opt/venv/bin/pip install --no-deps /src && /opt/venv/bin/pip check

FROM base AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="clinfuse-gpu" \
      org.opencontainers.image.description="ClinFuse training, batch scoring and Dask workers (CUDA)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged UID/GID (10001), matched by runAsUser/fsGroup in deploy/k8s and user: in compose.
# /data (cohort, feature cache, runs, scores) and CLINFUSE_HOME are owned by it, so fresh volumes are writable.
RUN groupadd --gid 10001 clinfuse \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/clinfuse --shell /usr/sbin/nologin clinfuse \
    && mkdir -p /data /var/lib/clinfuse \
    && chown 10001:10001 /data /var/lib/clinfuse
COPY --from=builder /opt/venv /opt/venv
# Caches go to /tmp so the root filesystem can be mounted read-only (numba is used by shap, matplotlib by evaluate).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLINFUSE_HOME=/var/lib/clinfuse \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    XDG_CACHE_HOME=/tmp/cache
# Fail the build, not the first job, when an entry point or a native library is missing.
RUN clinfuse --help >/dev/null \
    && dask --version \
    && python -c "import torch, xgboost, monai, pydicom, mlflow, distributed, clinfuse.pipelines.cli"
USER 10001:10001
WORKDIR /home/clinfuse
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["clinfuse", "--help"]
