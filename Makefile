# The two commands of the README. Each bootstraps what it needs (uv, then the locked environment).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export REIDKIT_PROGRESS ?= 1

.PHONY: setup demo test bench clean

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

demo: setup
	$(UV) run --frozen reidkit demo --out runs/demo

test: setup
	$(UV) run --frozen pytest -q -n 2 --dist loadfile

clean:
	rm -rf runs .pytest_cache
