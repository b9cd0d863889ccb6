# Two set-up commands work on a fresh machine with Python 3.10+ and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean data browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/estinet demo --overwrite

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	ESTINET_REQUIRE_BROWSER=$(HAVE_APT) $(BIN)/python -m pytest -q

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

# `make browser`: the Chromium that the end-to-end test of `estinet serve` drives through Playwright (Debian's package;
# Playwright's own browser download is never used). apt runs only while no Chromium or Chrome is on the PATH, and only
# where apt-get exists (about 20 s and 300 MB on Debian bookworm); there `make test` requires the browser test to run,
# elsewhere it is skipped with the reason when no browser is found.
BROWSER_PACKAGES := chromium
BROWSERS := chromium chromium-browser google-chrome google-chrome-stable
HAVE_APT := $(shell command -v apt-get >/dev/null 2>&1 && echo 1)

browser:
	@found=$$(for b in $(BROWSERS); do command -v $$b; done | head -n 1); \
	if [ -n "$$found" ]; then echo "browser for the serve test: $$found"; \
	elif [ -n "$(HAVE_APT)" ]; then \
		echo "installing: $(BROWSER_PACKAGES)"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(BROWSER_PACKAGES); \
	else echo "no Chromium and no apt-get: install Chromium or Chrome to run the browser test (skipped without)"; fi

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rain.py --threads 1
	$(BIN)/python benchmarks/bench_motion.py --threads 1

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
