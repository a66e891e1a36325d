# Entry points a newcomer needs; each bootstraps the virtualenv itself.
STACK ?= a10
PYTHON := .venv/bin/python

.PHONY: venv plan test unit e2e lint

venv:
	@scripts/dev/ensure-venv.sh

## make plan STACK=a10 — everything the stack would create, offline (no backend, CLI or host)
plan: venv
	@$(PYTHON) -m ollama_gpu.stack_render $(STACK)

## make test — the whole suite: unit tests, then integration tests against real Docker/Ollama/SSH
test: venv
	@$(PYTHON) -m pytest -p no:cacheprovider

## make unit — only the fast tests that need nothing but Python
unit: venv
	@$(PYTHON) -m pytest -p no:cacheprovider tests/unit

## make e2e — the user's pulumi commands with the real engine against a fresh-VM stand-in
e2e: venv
	@$(PYTHON) -m pytest -p no:cacheprovider tests/e2e

## make lint — shellcheck over every shell script (the unit tests run the same check)
lint:
	@shellcheck -x .ci/run $$(grep -rlE '^#!.*\b(ba)?sh\b' scripts)
