# tomolearn developer entry points. Everything runs inside .venv, created on demand.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# The CPU wheel of this release lies on the development machines; install it before anything
# else so that no dependency pulls a multi-GB CUDA build of a newer torch.
TORCH_VERSION := 2.13.0

.PHONY: venv run demo test test-slow bench docs lint clean

venv: $(VENV)/.installed

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VPY)
	$(VPY) -m pip install "torch==$(TORCH_VERSION)"
	$(VPY) -m pip install -e ".[dev,cluster,sweep,docs]"
	touch $@

run: venv
	$(VPY) -m recon.cli.quickstart

# A one-minute CT demo: Shepp-Logan sinogram, CGLS, PNG.
demo: venv
	$(VPY) -m recon.cli.demo

test: venv
	$(VPY) -m pytest -m "not slow" -q

# pytest exits 5 when no test is collected; that alone is not a failure here.
test-slow: venv
	$(VPY) -m pytest -m slow -q || [ $$? -eq 5 ]

bench: venv
	$(VPY) -m benchmarks.operators

# The API reference from the docstrings (Sphinx, warnings as errors) into build/docs/html.
docs: venv
	$(VPY) -c "import sphinx" 2>/dev/null || $(VPY) -m pip install -e ".[docs]"
	$(VPY) -m sphinx -b html -W --keep-going -q docs/api build/docs/html
	@echo "API reference: build/docs/html/index.html"

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
