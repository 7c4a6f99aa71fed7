# The README's two commands: `make run` and `make test`. Both set up everything first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the platform needs: the sandbox (bubblewrap, overlay and loop tools, cgroups),
# image building (debootstrap), and oathtool (an independent TOTP implementation for tests).
DEBIAN_PACKAGES := bubblewrap debootstrap xfsprogs e2fsprogs iproute2 procps util-linux oathtool openssh-client ca-certificates nftables
STAMP := $(VENV)/.installed
TS_SDK := sdk/typescript
TS_STAMP := $(TS_SDK)/node_modules/.installed

.PHONY: install run test lint fmt openapi docs migration bench clean

install: $(STAMP) $(TS_STAMP)

$(STAMP): requirements.lock pyproject.toml sdk/python/pyproject.toml scripts/install-debian-packages.sh
	@bash scripts/install-debian-packages.sh $(DEBIAN_PACKAGES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q uv==0.13.9
	@$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e sdk/python
	@touch $(STAMP)

# The TypeScript SDK's build and test tools (typescript, openapi-typescript), where npm exists.
$(TS_STAMP): $(TS_SDK)/package.json $(TS_SDK)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(TS_SDK) && npm ci -s --no-audit --no-fund && touch node_modules/.installed; \
	else echo "npm not found: the TypeScript SDK's tests will be skipped"; fi

run: install
	$(BIN)/forkyard serve

test: install
	$(BIN)/ruff check src tests bench scripts sdk/python
	$(BIN)/ruff format --check src tests bench scripts sdk/python
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo
	$(BIN)/pytest

lint fmt: install
	$(BIN)/ruff check --fix src tests bench scripts sdk/python
	$(BIN)/ruff format src tests bench scripts sdk/python

# The snapshot and everything generated from it: the TS SDK's types, the Python SDK's layer and
# the reference (commit the first three together; drift tests compare them).
openapi: install
	$(BIN)/forkyard openapi > docs/openapi.snapshot.json
	@if command -v npm >/dev/null; then cd $(TS_SDK) && npm run -s generate; fi
	$(BIN)/python -m forkyard.reference

# The API reference (docs/build/reference, served at /reference) and the Python SDK's typed layer.
docs: install
	$(BIN)/python -m forkyard.reference

migration: install
	PATH=$(BIN):$$PATH $(BIN)/python scripts/make_migration.py

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -q -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(TS_SDK)/node_modules $(TS_SDK)/dist
