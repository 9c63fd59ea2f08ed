# Two commands set everything up on a fresh clone (Python 3.11+):
#   make demo   install curate (with the CPU trainer) into .venv and run everything on the bundled demo:
#               pipeline, tokenizer, mixture, a short training run and the HTML report
#   make test   install curate with its test extras into .venv and run the test-suite
# torch is pinned to 2.13.0 (the `train` extra); pip takes a local CPU wheel where PIP_FIND_LINKS names one.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test venv clean

venv:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools>=77"

demo: venv
	$(PIP) install ".[train]"
	$(VENV)/bin/curate demo curate-demo

test: venv
	$(PIP) install -e ".[test,hf,train]"
	bash tests/setup_browser.sh
	$(VENV)/bin/pytest -q

clean:
	rm -rf curate-demo build *.egg-info
