# Set-up is scripted here so that a fresh clone needs nothing else:
#   make demo   - create .venv, install everything, answer a question with MoA offline
#   make test   - the same set-up, then lint, type checks and the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
QUESTION ?= What are three good reasons to learn a second language?

.PHONY: install demo test lint unit integration clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# llama-cpp-python compiles from source (minutes on 2 cores); pip caches the wheel.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[eval,examples,test,lint]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/moa chat --show-layers "$(QUESTION)"

lint: install
	$(BIN)/ruff check langchain_moa tests examples
	$(BIN)/ruff format --check langchain_moa tests examples
	$(BIN)/mypy langchain_moa

unit: install
	$(BIN)/pytest tests/unit_tests --disable-socket --allow-unix-socket

integration: install
	$(BIN)/pytest tests/integration_tests

test: lint unit integration

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
