# Kondukt's developer entry points. Every target works on a fresh clone: `setup` is a dependency.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup ui-static demo test unit e2e realnode lint bench crds cluster-up cluster-down control-plane kstatus images node-images node-packages postgres clean

setup: $(VENV)/.installed ui-static

# The web UI's front end (ui/: TypeScript, @dagrejs/dagre, bundled by esbuild) built into the package's
# operator/kondukt/cli/ui/static/ (not in git). npm packages go to the cache, never into the repository;
# the script does nothing when the built files are newer than their sources (hack/ui/build.sh).
ui-static:
	bash hack/ui/build.sh

# Two distributions, both editable: kondukt-workers (workers/, the worker SDK) and kondukt (the operator and
# `kondukt run`, which depends on kondukt-workers[builtin]). One pip command, so pip takes kondukt-workers
# from ./workers instead of looking for it on an index.
$(VENV)/.installed: pyproject.toml workers/pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@rm -rf kondukt.egg-info  # stale metadata of the one-distribution layout (before workers/pyproject.toml)
	$(BIN)/pip install -q --upgrade pip
	@# An older kondukt install owned bin/kondukt-worker: remove it first, or replacing it would delete the
	@# script kondukt-workers just installed.
	$(BIN)/pip uninstall -q -y kondukt
	$(BIN)/pip install -q -c constraints.txt -e './workers[builtin]' -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/python examples/demo.py

unit: setup postgres
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

# The e2e tests share two cores with a whole control plane; a test that fails is run once more on its own
# (--last-failed) and must pass then, so a timing flake under load does not hide the rest of the run's verdict.
# Both runs' failures are printed; a test that fails twice fails the target.
e2e: setup control-plane postgres kstatus
	$(BIN)/pytest -m "e2e and not realnode" $(PYTEST_ARGS) || { echo "e2e: running the failed tests once more"; \
	  $(BIN)/pytest -m "e2e and not realnode" --last-failed --last-failed-no-failures none $(PYTEST_ARGS); }

# The real-node tier (pytest marker `realnode`): real pods on this machine's kubelet (tests/e2e/realnode.py).
# Needs root, the Debian packages (node-packages) and the images (node-images); same rerun rule as e2e.
realnode: setup control-plane node-packages node-images
	$(BIN)/pytest -m realnode $(PYTEST_ARGS) || { echo "realnode: running the failed tests once more"; \
	  $(BIN)/pytest -m realnode --last-failed --last-failed-no-failures none $(PYTEST_ARGS); }

lint: setup control-plane
	$(BIN)/ruff check operator workers tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	bash hack/helm-check.sh

test: lint unit e2e realnode

# Every bench/bench_*.py, including `peers` (the race with Argo Workflows; it builds Argo's controller once).
bench: setup control-plane
	$(BIN)/python -m bench

crds: setup
	$(BIN)/python -m kondukt.kube.crdgen crds
	rm -f charts/kondukt/files/crds/*.yaml && cp crds/*.yaml charts/kondukt/files/crds/

control-plane:
	bash hack/control-plane/build.sh

# What Flux's health computation (the kstatus library of sigs.k8s.io/cli-utils) says of Kondukt's resources,
# for the e2e tests (tests/e2e/test_gitops_health.py); built once, cached like the control plane.
kstatus:
	bash hack/kstatus/build.sh

# The operator and workers images from docker/*.Dockerfile, built with no network from a wheelhouse made here.
# IMAGES_BASE=debootstrap builds on a local Debian bookworm base instead of the official python image (for
# machines that reach no registry); IMAGES_TOOL=docker for kind (then `kind load docker-image ...`).
IMAGES_TOOL ?= podman
IMAGES_BASE ?= python:3.11.13-slim-bookworm
images: setup
	bash hack/images/build.sh --tool $(IMAGES_TOOL) --base $(IMAGES_BASE) --tag-release

# The real node's images (and its pause image) as archives, cached under ~/.cache/kondukt/images/.
node-images: setup node-packages
	bash hack/images/build.sh --base debootstrap --archives

node-packages:
	bash .ci/install-node-packages

# The PostgreSQL server of the workflow archive's tests (tests/postgres.py makes a throwaway cluster of it).
postgres:
	bash .ci/install-postgres

# REAL_NODE=1: a real node too (containerd + kubelet running real pods; needs root, see tests/e2e/realnode.py).
cluster-up: setup control-plane $(if $(REAL_NODE),node-images)
	$(BIN)/python -m tests.e2e.controlplane up $(if $(REAL_NODE),--real-node)

cluster-down: setup
	$(BIN)/python -m tests.e2e.controlplane down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
