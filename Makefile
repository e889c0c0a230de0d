# make demo: set up .venv, write the built-in sample (coco.py --sample) and run the demo on it (train.py --demo).
# make test: set up .venv with the test tools, lint, and run the tests.
# make model REALDATA=folder: reproduce the shipped model from the public releases in folder (MODEL.md).
# Each target creates .venv and installs the pinned requirements the first time.

PYTHON ?= python3
REQUIREMENTS ?= requirements.txt
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test model lint summary clean

$(VENV)/.installed: $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-export.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# coco.py skips what an earlier run wrote, so a rerun of the demo rebuilds nothing.
demo: $(VENV)/.installed
	$(BIN)/python coco.py --sample --out data-sample
	$(BIN)/python train.py --demo

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 --dist worksteal  # an idle worker takes queued tests from the busy one

model: $(VENV)/.installed
	@test -n "$(REALDATA)" || { echo "make model: error: give the folder of the public releases (MODEL.md), e.g. make model REALDATA=realdata" >&2; exit 2; }
	REALDATA="$(REALDATA)" bash benchmarks/real_photos.sh shipped

summary: $(VENV)/.installed
	$(BIN)/python model.py

clean:
	rm -rf $(VENV) data-sample runs cutouts
