# One command each for the demo and the tests; both set themselves up on a fresh machine
# (Python venv + packages; Apache Kafka broker jars via Maven on first use).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean js chromium prometheus

# The native evaluation core (native/, Rust via maturin; pip fetches maturin, cargo the
# crates): optional — without it the Python engine runs, and the worker says so.
$(STAMP): pyproject.toml native/Cargo.toml native/pyproject.toml $(wildcard native/src/*.rs)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q ./native || echo "native core not built: the Python engine will be used"
	touch $(STAMP)

setup: $(STAMP)

# Segment's JavaScript SDKs for the collector's tests (npm, from the committed lock file),
# analytics-next bundled locally for the browser page, and Debian's Chromium to run it
# (installed when root with apt-get; elsewhere the browser test says it is skipped).
JS := tests/collector/js
JS_STAMP := $(JS)/node_modules/.installed

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(JS)/build/analytics-next.js: $(JS_STAMP) $(JS)/build.mjs $(JS)/browser/entry.js
	cd $(JS) && node build.mjs

js: $(JS)/build/analytics-next.js chromium

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium not installed (needs root and apt-get): the browser test will be skipped"; fi; }

# Debian's Prometheus (prometheus, promtool) for the tests of deploy/: installed when root
# with apt-get, without the recommended node exporter, and its service stopped and disabled
# (the tests start their own on a free port; nothing holds 9090); elsewhere they are skipped.
prometheus:
	@{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; \
	    { systemctl disable --now prometheus || service prometheus stop; } >/dev/null 2>&1 || true; \
	  else echo "prometheus not installed (needs root and apt-get): the Prometheus tests of deploy/ will be skipped"; fi; }

demo: $(STAMP)
	$(BIN)/engage-stream demo

test: $(STAMP) js prometheus
	$(BIN)/ruff check engage_stream tests bench
	@# the core's own unit tests (compact text, sums), where cargo is
	if command -v cargo >/dev/null; then cd native && cargo test --release --quiet; fi
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check engage_stream tests bench
	$(BIN)/ruff format --check engage_stream tests bench

clean:
	rm -rf var .pytest_cache
