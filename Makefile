# modelpack development tasks. Everything installs into .venv; nothing is needed beforehand
# but Python 3.10+ (and Java 8+ for the PMML parts, which skip without it).
#
#   make demo      set up a small environment and run examples/quickstart.py (package kept in build/demo)
#   make test      set up the full environment and run the default test suite
#   make test-all  everything, including slow tests (GPU tests skip without a GPU)
#   make bench     run the benchmarks and rewrite docs/benchmarks.md
#   make docs      serve the documentation site at http://127.0.0.1:8000 (MODELPACK_DOCS_EXECUTE=true
#                  runs the notebooks to show their outputs)
#   make test-plugins  each converter plugin alone: its own environment with the core, the
#                  plugin and its framework only, running the plugin's tests

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# faulthandler from the start, not pytest's plugin (off in pyproject.toml: it removes the PMML
# runtime's JVM signal handler at the end of a run).
PYTEST := -X faulthandler -m pytest

PLUGINS := converters/sklearn converters/xgboost converters/lightgbm converters/catboost \
           converters/torch converters/keras
# Training frameworks for the converter tests. torch is pinned to the CPU build: a looser
# requirement pulls a multi-GB CUDA build. sklearn2pmml refuses scikit-learn 1.9.1.
FRAMEWORKS := "scikit-learn==1.9.0" "torch==2.13.0" onnxscript xgboost-cpu lightgbm catboost \
              tensorflow-cpu tf2onnx onnxmltools sklearn2pmml
EXTRAS := cpu,trees,pandas,pmml,sign,remote,s3,deploy,batch,serve,grpc,metrics,spark,mlflow,ray,dask,polars,test,card,docs

# onnxruntime-openvino and onnxruntime share the onnxruntime/ folder, so the OpenVINO provider
# gets its own environment, with modelpack installed --no-deps; `make test` runs the device
# tests there a second time, on a real second execution provider.
OV_VENV ?= .venv-openvino
OV_PIP := $(OV_VENV)/bin/python -m pip --disable-pip-version-check -q
# The kserve package pins pandas<3 and protobuf<7, so its REST client, used unchanged against
# `modelpack serve`, gets an environment of its own as well.
KS_VENV ?= .venv-kserve
KS_PIP := $(KS_VENV)/bin/python -m pip --disable-pip-version-check -q
# Seldon MLServer, which benchmarks/bench_serve.py runs beside `modelpack serve`, pins FastAPI
# and protobuf versions of its own: an environment used only by `make bench`.
MLS_VENV ?= .venv-mlserver

.PHONY: install demo test test-all test-openvino test-kserve test-plugins bench mlserver-env docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: $(BIN)/python pyproject.toml converters/sklearn/pyproject.toml
	$(PIP) install -e ".[cpu,trees,pandas]" -e converters/sklearn
	touch $@

$(VENV)/.dev-installed: $(BIN)/python pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PIP) install -e ".[$(EXTRAS)]" $(addprefix -e ,$(PLUGINS)) $(FRAMEWORKS)
	touch $(VENV)/.demo-installed $@

$(OV_VENV)/bin/python:
	$(PYTHON) -m venv $(OV_VENV)

$(OV_VENV)/.installed: $(OV_VENV)/bin/python pyproject.toml
	$(OV_PIP) install numpy onnx onnxruntime-openvino pytest scikit-learn skl2onnx
	$(OV_PIP) install --no-deps -e .
	touch $@

$(KS_VENV)/bin/python:
	$(PYTHON) -m venv $(KS_VENV)

$(KS_VENV)/.installed: $(KS_VENV)/bin/python pyproject.toml
	$(KS_PIP) install kserve pytest -e ".[cpu,serve]"
	touch $@

install: $(VENV)/.dev-installed

demo: $(VENV)/.demo-installed
	$(BIN)/python examples/quickstart.py build/demo

test: $(VENV)/.dev-installed $(OV_VENV)/.installed $(KS_VENV)/.installed
	$(BIN)/python -m ruff check src converters tests benchmarks examples
	$(BIN)/python -m mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet
	$(BIN)/python $(PYTEST) --doctest-modules src/modelpack
	$(BIN)/python $(PYTEST)
	$(OV_VENV)/bin/python $(PYTEST) tests/devices/test_devices.py tests/runtime/test_onnx.py \
		tests/runtime/trees/test_tensor_form.py
	$(KS_VENV)/bin/python $(PYTEST) tests/serve/test_clients.py -k kserve

test-openvino: $(OV_VENV)/.installed
	$(OV_VENV)/bin/python $(PYTEST) tests/devices/test_devices.py tests/runtime/test_onnx.py \
		tests/runtime/trees/test_tensor_form.py

test-kserve: $(KS_VENV)/.installed
	$(KS_VENV)/bin/python $(PYTEST) tests/serve/test_clients.py -k kserve

test-all: $(VENV)/.dev-installed $(OV_VENV)/.installed $(KS_VENV)/.installed
	$(BIN)/python -m ruff check src converters tests benchmarks examples
	$(BIN)/python -m mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet
	$(BIN)/python $(PYTEST) -m "" --doctest-modules src/modelpack
	$(BIN)/python $(PYTEST) -m ""
	$(OV_VENV)/bin/python $(PYTEST) -m "" tests/devices/test_devices.py tests/runtime/test_onnx.py \
		tests/runtime/trees/test_tensor_form.py
	$(KS_VENV)/bin/python $(PYTEST) -m "" tests/serve/test_clients.py -k kserve

# plugin:frameworks (comma-separated); a plugin whose requirements bring its framework names
# none. XGBoost's and LightGBM's estimator classes need scikit-learn; pandas comes with the
# core's [pandas] extra, as DataFrames carry the feature names.
ALONE := sklearn: xgboost:xgboost-cpu,scikit-learn lightgbm:scikit-learn catboost: \
         torch:torch==2.13.0 keras:tensorflow-cpu

test-plugins:
	@set -e; for spec in $(ALONE); do \
	    name=$${spec%%:*}; frameworks=$$(echo $${spec#*:} | tr , ' '); env=.venv-plugin-$$name; \
	    echo "== $$name alone ($$env)"; \
	    [ -x $$env/bin/python ] || $(PYTHON) -m venv $$env; \
	    $$env/bin/python -m pip --disable-pip-version-check -q install pytest -e ".[cpu,pandas]" \
	        -e converters/$$name $$frameworks; \
	    $$env/bin/python $(PYTEST) -q converters/$$name/tests; \
	done

docs: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve

bench: $(VENV)/.dev-installed $(OV_VENV)/.installed $(MLS_VENV)/.installed
	$(BIN)/python benchmarks/run.py

# mlserver-xgboost asks for the `xgboost` distribution (with CUDA and NCCL, ~700 MB): it goes in
# without dependencies, beside xgboost-cpu, which provides the same module.
$(MLS_VENV)/.installed:
	$(PYTHON) -m venv $(MLS_VENV)
	$(MLS_VENV)/bin/python -m pip --disable-pip-version-check -q install mlserver==1.7.1 mlserver-sklearn==1.7.1 \
	    "scikit-learn==1.9.0" xgboost-cpu
	$(MLS_VENV)/bin/python -m pip --disable-pip-version-check -q install --no-deps mlserver-xgboost==1.7.1
	touch $@

mlserver-env: $(MLS_VENV)/.installed

clean:
	rm -rf $(VENV) $(OV_VENV) $(KS_VENV) $(MLS_VENV) .venv-plugin-* .pytest_cache .hypothesis build dist
