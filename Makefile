# Two commands set everything up on a fresh clone (Python 3.11+):
#   make demo   install curate into .venv and run the whole pipeline on the bundled demo
#   make test   install curate with its test extras into .venv and run the test-suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test venv clean

venv:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools>=68"

demo: venv
	$(PIP) install .
	$(VENV)/bin/curate demo curate-demo

test: venv
	$(PIP) install -e ".[test,hf]"
	bash tests/setup_browser.sh
	$(VENV)/bin/pytest -q

clean:
	rm -rf curate-demo build *.egg-info
