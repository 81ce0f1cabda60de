# edgekit: two commands for a new user.
#   make demo   set up .venv and run the main job on the real dog-breed model and real photos
#   make test   set up .venv and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgekit-installed
# Test files run on this many pytest-xdist workers, a whole file per worker (so module fixtures such as
# the emulated board are made once): QEMU, debootstrap, TF conversion and torch.export are mostly
# single-threaded, so two workers overlap them on 2 cores. More workers need more memory (each loads
# TF and torch: about 3 GiB).
TEST_WORKERS ?= 2

.PHONY: setup demo test test-zoo lint bench-convert bench-quantize bench-quantize-avx2 bench-prune bench-run bench-overhead bench-int8-ops bench-tflite-bias bench-board bench-zoo soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing later pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	bash scripts/demo.sh

test: setup
	$(PY) -m ruff check edgekit tests benchmarks scripts
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -m "not heavy" -n $(TEST_WORKERS) --dist loadfile

# The large Keras applications of the model zoo (DenseNet121, NASNetMobile, ResNet50V2, ConvNeXtTiny).
test-zoo: setup
	$(PY) -m pytest -q -p no:cacheprovider -m heavy

lint: setup
	$(PY) -m ruff check edgekit tests benchmarks scripts
	$(PY) -m ruff format --check edgekit tests benchmarks scripts

bench-convert: setup
	$(PY) benchmarks/conversion.py

clean:
	rm -rf $(VENV) demo-out

bench-quantize: setup
	# NNCF is a peer to compare with, not a dependency of edgekit: installed for this benchmark only
	$(PY) -m pip install -q "nncf>=3.4,<4" "ai-edge-quantizer>=0.10,<0.11"
	$(PY) benchmarks/quantize.py

# The same run on this machine's AVX2 kernels: x86-64 Linux with CPUID faulting and a C compiler.
bench-quantize-avx2: setup
	$(PY) -m pip install -q "nncf>=3.4,<4" "ai-edge-quantizer>=0.10,<0.11"
	cc -O2 -shared -fPIC -o $(VENV)/cpuid_avx2.so benchmarks/cpuid_avx2.c
	LD_PRELOAD=$(abspath $(VENV))/cpuid_avx2.so $(PY) benchmarks/quantize.py

bench-int8-ops: setup
	$(PY) benchmarks/int8_ops.py

# TFLite bias correction measured on the reference kernels (until 2026-12-06) against XNNPACK (now).
bench-tflite-bias: setup
	$(PY) benchmarks/tflite_bias_kernels.py

# Needs root, debootstrap and QEMU's binfmt registration (README: "On the device's own kernels").
bench-board: setup
	$(PY) benchmarks/board_drift.py

bench-zoo: setup
	$(PY) benchmarks/zoo.py

bench-prune: setup
	$(PY) benchmarks/prune.py

soak: setup
	$(PY) benchmarks/soak.py

bench-run: setup
	$(PY) benchmarks/run_loop.py

bench-overhead: setup
	$(PY) benchmarks/bench_overhead.py
