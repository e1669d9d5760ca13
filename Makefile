# The two commands a newcomer needs: `make run` and `make test`.
# Everything (virtualenv, Python packages, Kafka jars) is installed by these targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install run test bench kafka-start kafka-stop kafka-status clean

help:
	@echo "make run    - install, start local Kafka, the worker (http://127.0.0.1:6066) and the traffic simulator; Ctrl-C stops all"
	@echo "make test   - install, start local Kafka if none answers, run unit + integration tests, stop what was started"
	@echo "make bench  - the benchmark report (docs/benchmarks.md and docs/benchmarks.json); not part of make test"
	@echo "make kafka-start|kafka-stop|kafka-status - the local broker alone (deploy/local-kafka)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) deploy/run_local.py

test: install
	bash deploy/system-packages
	bash deploy/run-tests

bench: install
	.venv/bin/tokenplan bench

kafka-start:
	deploy/local-kafka start
kafka-stop:
	deploy/local-kafka stop
kafka-status:
	deploy/local-kafka status

clean:
	rm -rf $(VENV) .data .pytest_cache .hypothesis
