# dinoxfer: two commands do all set-up.
#   make book  - create .venv, install, execute every notebook on the demo profile, build the HTML book
#   make test  - create .venv, install with test extras, run pytest
# Jupyter and browser extras:
#   make notebooks  - write the paired notebooks/*.ipynb (for JupyterLab and plain papermill)
#   make lab        - JupyterLab on notebooks/, .py files open as notebooks
#   make check-lab  - run notebook 01 through JupyterLab's UI in headless Chromium (smoke profile)
#   make check-book - read every page of the built book in headless Chromium (builds the smoke book if none)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo
STAMP := $(VENV)/.installed

.PHONY: book test run notebooks lab check-lab check-book bench clean

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

notebooks: $(STAMP)
	$(BIN)/dinoxfer notebooks

# lab-settings/overrides.json: percent-format .py files open as (Jupytext) notebooks on a double click.
lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	$(BIN)/dinoxfer notebooks
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab --LabApp.app_settings_dir="$(abspath lab-settings)" notebooks

check-lab: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m dinoxfer_lib.checks.lab notebooks/01_datasets.py

check-book: $(STAMP)
	test -f _build/html/index.html || { PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dinoxfer run --profile smoke && \
		PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dinoxfer book --profile smoke; }
	$(BIN)/python -m dinoxfer_lib.checks.book _build/html

clean:
	rm -rf _build runs/smoke
