# agentmesh: `make run` starts the mesh locally; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Tools that are not Python packages are cached outside the repository.
TOOLS ?= $(HOME)/.cache/agentmesh/tools
BUF_VERSION := 1.75.0
BUF := $(TOOLS)/buf-$(BUF_VERSION)/node_modules/.bin/buf
PYTEST_ARGS ?=

.PHONY: run test lint protos install clean prometheus

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/.installed

$(BUF):
	mkdir -p $(TOOLS)/buf-$(BUF_VERSION)
	npm install --silent --no-audit --no-fund --prefix $(TOOLS)/buf-$(BUF_VERSION) @bufbuild/buf@$(BUF_VERSION)

# promtool and prometheus, for tests/integration/test_prometheus.py (CI: Debian, as root).
prometheus:
	command -v promtool >/dev/null && command -v prometheus >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus)

run: install
	$(BIN)/agentmesh run

test: install $(BUF) prometheus
	AGENTMESH_BUF=$(abspath $(BUF)) $(BIN)/python -m pytest $(PYTEST_ARGS)

protos: install
	$(BIN)/python scripts/gen_protos.py

lint: install $(BUF)
	$(BIN)/ruff check src tests scripts
	cd protos && $(abspath $(BUF)) lint

clean:
	rm -rf $(VENV) .pytest_cache
