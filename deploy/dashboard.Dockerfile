# syntax=docker/dockerfile:1.7
# ClinFuse dashboard image: the Streamlit app started by `clinfuse dashboard`, on a slim Python base with PyTorch's
# CPU wheels (the app loads the registered model for on-demand explanations; it needs no GPU). Build from the
# repository root (BuildKit reads dashboard.Dockerfile.dockerignore):
#
#   docker build -f deploy/dashboard.Dockerfile -t clinfuse/dashboard:0.1.0 .
#
# No key, password or credential is ever copied or set here: the pseudonymisation key and the users file arrive
# at run time as mounted files (Kubernetes Secrets, compose secrets); see deploy/README.md.

ARG PYTHON_IMAGE=python:3.12-slim-trixie

FROM ${PYTHON_IMAGE} AS base
# libgomp1 for XGBoost's OpenMP; tini as PID 1 (forwards SIGTERM to Streamlit, reaps children).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/*

FROM base AS builder
# PyTorch's CPU-only wheels: a fraction of the CUDA build's size.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
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
LABEL org.opencontainers.image.title="clinfuse-dashboard" \
      org.opencontainers.image.description="ClinFuse Streamlit dashboard (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The same fixed, unprivileged UID/GID (10001) as the GPU image. /var/lib/clinfuse-dashboard holds the dashboard's
# own state (users, lockout state, audit log); /data and CLINFUSE_HOME are the jobs' volumes, mounted read-only.
# All are owned by 10001, so fresh volumes are writable.
RUN groupadd --gid 10001 clinfuse \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/clinfuse --shell /usr/sbin/nologin clinfuse \
    && mkdir -p /data /var/lib/clinfuse /var/lib/clinfuse-dashboard \
    && chown 10001:10001 /data /var/lib/clinfuse /var/lib/clinfuse-dashboard
COPY --from=builder /opt/venv /opt/venv
# Headless Streamlit, no usage statistics, no file watcher (the app is installed, not edited); caches in /tmp so
# the root filesystem can be mounted read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLINFUSE_HOME=/var/lib/clinfuse \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    XDG_CACHE_HOME=/tmp/cache \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none
# Fail the build, not the first start, when an entry point or a native library is missing.
RUN clinfuse --help >/dev/null \
    && python -c "import torch, xgboost, streamlit, mlflow, clinfuse.pipelines.cli"
USER 10001:10001
WORKDIR /home/clinfuse
EXPOSE 8501
# Streamlit's own health endpoint: 200 once the server accepts browser connections.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["clinfuse", "dashboard", "--scores", "/data/scores/scores.parquet", "--host", "0.0.0.0", "--port", "8501"]
