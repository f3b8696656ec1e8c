# tomolearn developer entry points. Everything runs inside .venv, created on demand.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# The CPU wheel of this release lies on the development machines; install it before anything
# else so that no dependency pulls a multi-GB CUDA build of a newer torch.
TORCH_VERSION := 2.13.0

.PHONY: venv run demo test test-slow bench lint clean

venv: $(VENV)/.installed

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VPY)
	$(VPY) -m pip install "torch==$(TORCH_VERSION)"
	$(VPY) -m pip install -e ".[dev,cluster,sweep]"
	touch $@

run: venv
	$(VPY) -m recon.quickstart

# A one-minute CT demo: Shepp-Logan sinogram, CGLS, PNG, quick operator benchmark.
demo: venv
	$(VPY) -m recon.demo

test: venv
	$(VPY) -m pytest -m "not slow" -q

# pytest exits 5 when no test is collected; that alone is not a failure here.
test-slow: venv
	$(VPY) -m pytest -m slow -q || [ $$? -eq 5 ]

bench: venv
	$(VPY) -m operators.bench

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info bench_results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
