# vqclip: `make serve` runs the service, `make test` runs the test suite.
# Both create .venv and install the project into it when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The web UI at http://127.0.0.1:7860 with the embedded SQLite queue and one local worker.
serve: $(STAMP)
	$(BIN)/vqclip serve

# PostgreSQL (Debian's package, 127.0.0.1 only) is installed and started by tests/services/postgres.sh;
# the test fixtures call the same script, so `pytest` alone works too.
test: $(STAMP)
	bash tests/services/postgres.sh start >/dev/null
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
