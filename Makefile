# tiergate: `make demo` runs the main job, `make test` runs every check. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test check lint typecheck unit format

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("tiergate needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,gateway,bedrock,tracing,postgres,redis,scaling,s3,hf,sim]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/tiergate demo

test: check

check: lint typecheck unit

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup
	$(VENV)/bin/mypy src

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
unit: setup
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	exit $$rc

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench
