# make demo: set up .venv, write the built-in sample (coco.py --sample) and run the demo on it (train.py --demo).
# make test: set up .venv with the test tools, lint, and run the tests.
# make model REALDATA=folder: reproduce the shipped model from the public releases in folder (MODEL.md).
# make web: build the browser page in web/ (the model exported to ONNX, onnxruntime-web from npm); make serve-web serves it.
# make serve: the HTTP service (serve.py) on http://127.0.0.1:7000, the page at / once built.
# Each target creates .venv and installs the pinned requirements the first time.

PYTHON ?= python3
REQUIREMENTS ?= requirements.txt
VENV := .venv
BIN := $(VENV)/bin
MODEL ?= models/person_unet.keras
WEB_PORT ?= 8000

.PHONY: demo test model lint summary clean web serve-web serve

$(VENV)/.installed: $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-export.txt requirements-serve.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

$(VENV)/.installed-export: $(VENV)/.installed requirements-export.txt
	$(BIN)/python -m pip install --quiet -r requirements-export.txt
	touch $@

$(VENV)/.installed-serve: $(VENV)/.installed requirements-serve.txt
	$(BIN)/python -m pip install --quiet -r requirements-serve.txt
	touch $@

# onnxruntime-web at the version package-lock.json pins (Node.js and npm).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
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

# The page exports MODEL each time (export.py's check against results.py included), then serve-web serves the folder.
web: $(VENV)/.installed-export node_modules/.installed
	$(BIN)/python webpage.py --model $(MODEL) --overwrite

serve-web:
	@test -f web/model/person.onnx || { echo "make serve-web: error: the page is not built: run make web first" >&2; exit 2; }
	@echo "the page: http://127.0.0.1:$(WEB_PORT)/ (Ctrl-C stops)"
	$(PYTHON) -m http.server --bind 127.0.0.1 --directory web $(WEB_PORT)

serve: $(VENV)/.installed-serve
	$(BIN)/python serve.py --model $(MODEL)

summary: $(VENV)/.installed
	$(BIN)/python model.py

clean:
	rm -rf $(VENV) data-sample runs cutouts node_modules web/model web/ort
