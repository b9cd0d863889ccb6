# Two set-up commands work on a fresh machine with Python 3.10+ and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/estinet demo --overwrite

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# `make data`: Debian packages with clean photographs and sample clips for on-the-fly training (docs/data.md); about
# 500 MB installed. Idempotent: apt runs only while a package is missing. Never run by `make test`.
DATA_PACKAGES := opencv-doc mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

data: $(STAMP)
	@missing=$$(for p in $(DATA_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	else echo "data packages already installed: $(DATA_PACKAGES)"; fi
	$(BIN)/python -m estinet.data.sources

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rain.py --threads 1
	$(BIN)/python benchmarks/bench_motion.py --threads 1

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
