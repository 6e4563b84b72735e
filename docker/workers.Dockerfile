# syntax=docker/dockerfile:1
# The Kondukt workers image: the built-in workers (`kondukt-worker NAME`) that TaskDefs run as Jobs.
# The chart's `workers.image` names it. Build from the repository root:
#   docker build -f docker/workers.Dockerfile -t kondukt/workers:0.1.0 .
#
# Base image: pinned by its full patch-version tag. To pin the digest as well (recommended for releases),
# resolve it once and append it to both FROM lines, e.g.
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm --format '{{json .Manifest.Digest}}'
#   FROM python:3.11.13-slim-bookworm@sha256:<digest> AS builder
# Multi-stage: the builder turns the kondukt-workers distribution (workers/pyproject.toml) with its `builtin`
# extra (boto3, Pillow) and their pinned versions (constraints.txt) into wheels and installs them into a
# virtual environment; the runtime stage copies only that environment: no compiler, no pip cache, no wheels,
# no sources, and none of the operator's dependencies (kondukt-workers does not depend on kondukt;
# tests/unit/test_chart.py checks the extra against the workers' imports).
# Runs as the non-root user 65532 (the chart's restricted profile).

FROM python:3.11.13-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY constraints.txt ./
COPY workers ./workers
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels './workers[builtin]' \
 && python -m venv --without-pip /opt/kondukt \
 && pip --python /opt/kondukt/bin/python install --no-cache-dir --no-index --find-links /wheels \
        -c constraints.txt 'kondukt-workers[builtin]'
# (pip compiles the .pyc files here: the runtime's root filesystem is read-only, so they are kept.)

FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="kondukt-workers" \
      org.opencontainers.image.description="Kondukt: Conductor-style workflows on Kubernetes (the built-in workers)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 kondukt \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kondukt
COPY --from=builder /opt/kondukt /opt/kondukt
ENV PATH=/opt/kondukt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A task attempt writes its result to KONDUKT_OUTPUT_FILE (the container's termination-message path) and
# needs no writable root filesystem. TaskDefs set `command: [kondukt-worker, <name>]`.
USER 65532:65532
ENTRYPOINT ["kondukt-worker"]
