# dinoxfer: two commands do all set-up.
#   make book  - create .venv, install, execute every notebook on the demo profile, build the HTML book
#   make test  - create .venv, install with test extras, run pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo
STAMP := $(VENV)/.installed

.PHONY: book test run lab bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

book: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dinoxfer run --profile $(PROFILE)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dinoxfer book --profile $(PROFILE)

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dinoxfer run --profile $(PROFILE)

lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	$(BIN)/jupytext --sync notebooks/*.py
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab notebooks

clean:
	rm -rf _build runs/smoke
