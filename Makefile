# Two commands on a fresh machine: `make demo` (the main demo on a local cluster) and `make test`.
# Both install what they need into .venv first (pinned by constraints.txt).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: install
	$(PY) -m raysched.demo

lint: install
	$(PY) -m ruff check .

test-unit: install
	$(PY) -m pytest -q tests/unit

test-integration: install
	$(PY) -m pytest -q tests/integration

# The integration tier is mostly Ray job start-up, and it leaves a core idle while jobs sleep
# out their emulated slow steps: the unit tier runs beside it at the lowest priority (Ray's
# workers run at nice 15), its output printed after; either tier failing fails the target.
test: install lint
	@unit_log=$$(mktemp); \
	nice -n 19 $(PY) -m pytest -q -p no:cacheprovider tests/unit > $$unit_log 2>&1 & unit_pid=$$!; \
	$(PY) -m pytest -q --durations=12 tests/integration; integration=$$?; \
	wait $$unit_pid; unit=$$?; \
	echo "== tests/unit (ran beside the integration tier) =="; cat $$unit_log; rm -f $$unit_log; \
	test $$integration -eq 0 && test $$unit -eq 0

clean:
	rm -rf .raysched telemetry_export
