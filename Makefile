# One command each for the demo and the tests; both set themselves up on a fresh machine
# (Python venv + packages; Apache Kafka broker jars via Maven on first use).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/engage-stream demo

test: $(STAMP)
	$(BIN)/ruff check engage_stream tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check engage_stream tests bench
	$(BIN)/ruff format --check engage_stream tests bench

clean:
	rm -rf var .pytest_cache
