# make demo: set up .venv and run the demo on the built-in sample (train.py --demo).
# make test: set up .venv with the test tools, lint, and run the tests.
# Each target creates .venv and installs the pinned requirements the first time.

PYTHON ?= python3
REQUIREMENTS ?= requirements.txt
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint summary clean

$(VENV)/.installed: $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python train.py --demo

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

summary: $(VENV)/.installed
	$(BIN)/python model.py

clean:
	rm -rf $(VENV) data-sample runs cutouts results.png
