# Set-up is scripted here so that a fresh clone needs nothing else:
#   make demo   - create .venv, install everything, answer a question with MoA offline
#   make test   - the same set-up, then lint, type checks and the whole test suite
#                 (its browser tests need Debian's chromium, its durable tests Debian's
#                 PostgreSQL: `make browser` and `make postgres`, which it runs)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
QUESTION ?= What are three good reasons to learn a second language?
EXTRAS := local,eval,examples,studio,bench,serve,agreement,durable,together,test,lint

# llama-cpp-python compiles from source (minutes on 2 cores). It is built once
# per machine into WHEELS and installed from there. The build is portable:
# llama.cpp's default native build uses every extension the CPU reports, and
# on a virtual machine that reports AMX without enabling it the server dies of
# SIGILL on its first chat request. pip's own wheel cache ignores CMAKE_ARGS,
# so it could hand back a native build: hence a folder of our own.
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python\[server\]==\([0-9.]*\)".*/\1/p' pyproject.toml)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
WHEELS ?= $(HOME)/.cache/langchain-moa/wheels/portable
LLAMA_WHEEL := $(WHEELS)/.llama-cpp-python-$(LLAMA_CPP_VERSION)

.PHONY: install browser postgres demo test lint unit integration figures clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(LLAMA_WHEEL): | $(BIN)/python
	mkdir -p $(WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-deps --no-cache-dir \
		--wheel-dir $(WHEELS) "llama-cpp-python==$(LLAMA_CPP_VERSION)"
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEEL) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --find-links $(WHEELS) -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

# The live page's browser tests drive Debian's Chromium through Playwright
# (Playwright's own browser download reaches a host these machines cannot).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

# The durable tests run a real PostgreSQL server of their own (a cluster in a
# temporary folder, on 127.0.0.1, started and stopped by the tests): they need
# Debian's server binaries, under /usr/lib/postgresql/<version>/bin.
POSTGRES_CTL := $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl))

postgres:
ifeq ($(POSTGRES_CTL),)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql
endif

demo: install
	$(BIN)/moa chat --show-layers "$(QUESTION)"

lint: install
	$(BIN)/ruff check langchain_moa tests examples
	$(BIN)/ruff format --check langchain_moa tests examples
	$(BIN)/mypy langchain_moa

unit: install
	$(BIN)/pytest tests/unit_tests

integration: install browser postgres
	$(BIN)/pytest tests/integration_tests

test: lint unit integration

# Every figure table in the README and docs/, rewritten from the committed results
# under docs/results/ (each written by its benchmark's --out; tests/unit_tests/
# test_figures.py fails when a table and its results disagree).
figures: install
	$(BIN)/python -m benchmarks.figures

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
