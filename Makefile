# moa-graph: `make run` sets everything up and answers a question on the embedded model;
# `make test` sets up and runs the tests. Both work offline except for installing packages.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUESTION ?= Why do we have seasons on Earth? Answer in a short paragraph.
STUDIO_PORT ?= 2024

.PHONY: run test unit lint docs format bench studio clean

# llama-cpp-python builds from source (about 7.5 min on 2 cores, once: pip caches the wheel).
# GGML_NATIVE=OFF: a native build crashes on the first decode on some CPUs (the AMX path).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet -e ".[local,batch,serve,ray,eval,docs,dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/moa-graph ask "$(QUESTION)"

test: $(STAMP)
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit_tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site, offline: site/ (with site/llms.txt). --strict fails on any warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# LangGraph Studio's API server for the graphs of langgraph.json, offline, on the embedded
# model. Open https://smith.langchain.com/studio/?baseUrl=http://127.0.0.1:$(STUDIO_PORT)
# and, from another terminal, save the sample assistants: $(BIN)/python studio/create_assistants.py
# umask 077: LangGraph's local store (.langgraph_api/) holds the threads' prompts and answers.
studio: $(STAMP)
	umask 077 && LANGGRAPH_CLI_NO_ANALYTICS=1 $(BIN)/langgraph dev --port $(STUDIO_PORT) --no-browser

bench: $(STAMP)
	$(BIN)/python benchmarks/critical_path.py
	$(BIN)/python benchmarks/first_k.py
	$(BIN)/python benchmarks/batch_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .langgraph_api site
