# make demo: set up and run the main job on the shipped default model.
# make test: set up and pass the tests.
# Both do all set-up on a fresh Debian machine as root: apt packages, a virtualenv, torch==2.13.0, the package.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rtperformer-installed
APT_PACKAGES := jackd2 libportaudio2 fluidsynth libfluidsynth3 libsndfile1 \
	fluid-soundfont-gm musescore-general-soundfont timgm6mb-soundfont

.PHONY: setup system test demo bench corpus clean

setup: system $(STAMP)

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "apt: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,bench,dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m rtperformer.live.demo

bench: setup
	$(PY) -m rtperformer bench all

corpus: setup
	$(PY) -m rtperformer data build

clean:
	rm -rf $(VENV) out build *.egg-info
