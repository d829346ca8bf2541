# The two set-up commands of the README:
#   make demo   -> installs viewfinder into .venv and runs the main job (viewfinder demo)
#   make test   -> installs viewfinder + test tools into .venv and runs the test suite
# .ci/run calls `make test`. Override PYTHON to pick the interpreter (Python >= 3.10; 3.11 tested).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean

$(STAMP): pyproject.toml
	@# caption metrics (pycocoevalcap's PTB tokenizer and METEOR) run on Java 17: found on PATH,
	@# else installed from Debian's packages where we are root, else a one-line note
	@command -v java >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq >/dev/null 2>&1 \
	  && apt-get install -y -qq openjdk-17-jre-headless >/dev/null 2>&1; } \
	  || echo "note: no Java runtime: caption scores will be Java-free (no METEOR); install Java 17"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/viewfinder demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) viewfinder-demo runs .pytest_cache
