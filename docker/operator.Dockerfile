# syntax=docker/dockerfile:1
# The Kondukt operator image (`kondukt operator`). Build it with `make images` (hack/images/build.sh), which
# first makes a wheelhouse on the host from constraints.txt and then runs, with that wheelhouse as the context:
#   podman build --network=none --build-arg BASE_IMAGE=... -f docker/operator.Dockerfile <context>
# The build itself needs no network and no registry besides the base image's.
#
# Base image: a build argument. The default, the official image pinned by its full patch-version tag, is what
# users get; machines that reach no registry pass a local Debian bookworm image with python3 and python3-venv
# (`make images IMAGES_BASE=debootstrap`). To pin the digest as well (recommended for releases), resolve it
# once and pass it, e.g. --build-arg BASE_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>.
# Multi-stage: the builder installs the project's wheel, kondukt-workers' (a distribution of its own, in
# ./workers; the wheelhouse has both) and their pinned dependencies from the wheelhouse into a virtual
# environment; the runtime stage copies only that environment: no pip, no wheels, no sources.
# Runs as the non-root user 65532 (the chart's restricted profile).
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY constraints.txt /src/constraints.txt
COPY wheels /wheels
# A throw-away venv provides pip (a Debian base has no global pip); the image's venv gets none.
RUN python3 -m venv /opt/pip \
 && python3 -m venv --without-pip /opt/kondukt \
 && /opt/pip/bin/pip --python /opt/kondukt/bin/python install --no-index --find-links /wheels \
        -c /src/constraints.txt kondukt
# (pip compiles the .pyc files here: the runtime's root filesystem is read-only, so they are kept.)

FROM ${BASE_IMAGE}
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
