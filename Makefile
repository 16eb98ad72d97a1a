# Tributary: `make help` lists the targets. The two a new user needs are
# `make run` and `make test`; both install whatever they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# systemd only for `systemd-analyze verify` of deploy/ (tests/test_deploy.py): a fresh Debian container
# lacks it, and installing it there starts nothing (its scripts need no running systemd).
DEB_PACKAGES := dovecot-imapd dovecot-pop3d chromium openssl spamassassin spamc spamd systemd
BENCH_PACKAGES := isync getmail6 fetchmail offlineimap time util-linux
BENCH_ARGS ?=
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: help install install-runtime system-deps bench-deps bench run migrate lint typecheck imports pytest test clean

# $(call apt_install,PACKAGES): install those of the Debian packages that are missing
# (through sudo when not root; without either, say what to install and go on).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; \
	else echo "Missing Debian packages:$$missing (install them with: sudo apt-get install$$missing)"; exit 0; fi; \
	echo "Installing Debian packages:$$missing"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing
endef

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Debian's python3.11 has no ensurepip (so no `-m venv` with pip) without python3-venv: install it first.
$(UV):
	$(if $(shell $(PYTHON) -c 'import ensurepip' 2>/dev/null && echo yes),,$(call apt_install,python3-venv))
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# The project's own modules are byte-compiled as pip does for an installed wheel (UV_COMPILE_BYTECODE
# covers the dependencies only): every `tributary` command would otherwise compile them at each start
# where PYTHONDONTWRITEBYTECODE is set.
install: $(UV) ## Create .venv with the pinned dependencies (uv.lock), the development tools included
	$(UV) sync --frozen --python $(PYTHON)
	$(BIN)/python -m compileall -q service web

install-runtime: $(UV) ## Create .venv with the runtime dependencies only (no test browser, no linters)
	$(UV) sync --frozen --no-dev --inexact --python $(PYTHON)
	$(BIN)/python -m compileall -q service web

system-deps: ## Install the Debian packages the tests use (Dovecot, Chromium, systemd-analyze) when missing
	$(call apt_install,$(DEB_PACKAGES))

bench-deps: ## Install the Debian packages of the benchmark's peers (mbsync, getmail6, fetchmail, offlineimap, time)
	$(call apt_install,$(BENCH_PACKAGES))

bench: install system-deps bench-deps ## Tributary against mbsync, getmail6, fetchmail, offlineimap (BENCH_ARGS="--messages 2000 --only imap")
	$(BIN)/python -m bench $(BENCH_ARGS)

migrate: install-runtime ## Apply database migrations (TRIBUTARY_DATABASE_URL, default SQLite in ./data)
	$(BIN)/tributary db upgrade

run: migrate ## Install, migrate and serve on http://127.0.0.1:8000 with the scheduler
	$(BIN)/tributary serve --host 127.0.0.1 --port 8000

lint: install ## ruff (lint and format check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install ## mypy --strict
	$(BIN)/mypy

imports: install ## import-linter: service never imports web or litestar
	$(BIN)/lint-imports

pytest: install system-deps ## The whole pytest suite (PostgreSQL too when TRIBUTARY_TEST_DATABASE_URL is set)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck imports pytest ## Everything CI runs: lint, types, import contract, tests

clean: ## Remove the virtualenvs and caches (keeps ./data)
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
