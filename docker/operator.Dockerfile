# syntax=docker/dockerfile:1
# The Kondukt operator image (`kondukt operator`). Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t kondukt/operator:0.1.0 .
#
# Base image: pinned by its full patch-version tag. To pin the digest as well (recommended for releases),
# resolve it once and append it to both FROM lines, e.g.
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm --format '{{json .Manifest.Digest}}'
#   FROM python:3.11.13-slim-bookworm@sha256:<digest> AS builder
# Multi-stage: the builder turns the project and its pinned dependencies (constraints.txt) into wheels and
# installs them into a virtual environment; the runtime stage copies only that environment: no compiler,
# no pip cache, no wheels, no sources. Runs as the non-root user 65532 (the chart's restricted profile).

FROM python:3.11.13-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
COPY workers ./workers
# kondukt depends on kondukt-workers, a distribution of its own in ./workers: both are built in one pip
# command, so the dependency is taken from there.
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels ./workers . \
 && python -m venv --without-pip /opt/kondukt \
 && pip --python /opt/kondukt/bin/python install --no-cache-dir --no-index --find-links /wheels \
        -c constraints.txt kondukt
# (pip compiles the .pyc files here: the runtime's root filesystem is read-only, so they are kept.)

FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="kondukt-operator" \
      org.opencontainers.image.description="Kondukt: Conductor-style workflows on Kubernetes (the operator)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 kondukt \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kondukt
COPY --from=builder /opt/kondukt /opt/kondukt
ENV PATH=/opt/kondukt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["kondukt"]
CMD ["operator"]
