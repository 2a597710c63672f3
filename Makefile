# mmlgc set-up and the two entry points of the README.
#   make demo      install if needed, then the CPU demo: MSGC Faster R-CNN vs dense
#                  (data, pretrain, detector, COCO mAP, MACs, deployed speed-up)
#   make demo-all  the same for every method with Faster R-CNN and RetinaNet
#   make test      install if needed, then the test suite
# WHEELHOUSE=DIR takes a prebuilt mmcv 2.1.0 wheel from DIR instead of building it.
# Every step is skipped when its inputs have not changed, so repeats are fast.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
WHEELHOUSE ?=
PYTEST_ARGS ?=

DEPS_STAMP := $(VENV)/.mmlgc-deps
# Beside the extension it marks (the editable install builds it in the
# tree): whatever removes the one (git clean -x) removes the other.
EXT_STAMP := mmlgc/.ext-built
EXT_SOURCES := setup.py $(shell find mmlgc/ops/csrc -type f 2>/dev/null)

.PHONY: install demo demo-all test clean-ext

install: $(EXT_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# torch first (from local disk where present), then the build tools mmcv's and
# mmlgc's builds import, then mmcv with ops, then the rest of the stack.
$(DEPS_STAMP): requirements/torch.txt requirements/build.txt requirements/runtime.txt requirements/tests.txt tools/install_mmcv.sh | $(PY)
	$(PIP) install -r requirements/torch.txt -r requirements/build.txt
	PYTHON=$(PY) WHEELHOUSE=$(WHEELHOUSE) bash tools/install_mmcv.sh
	$(PIP) install -r requirements/runtime.txt -r requirements/tests.txt
	touch $@

$(EXT_STAMP): $(DEPS_STAMP) $(EXT_SOURCES)
	$(PIP) install --no-build-isolation --no-deps -e .
	touch $@

demo: install
	$(PY) tools/demo.py

demo-all: install
	$(PY) tools/demo.py --all

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean-ext:
	rm -rf build mmlgc/_ext*.so $(EXT_STAMP)
