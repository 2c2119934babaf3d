"""Questions: one schema, loaders per format, the benchmark registry, the embedded sample."""

from medistill.data.formats import (
    load_mcq_jsonl,
    load_medmcqa,
    load_medqa,
    load_mmlu,
    load_pubmedqa,
)
from medistill.data.loading import LoadReport, LoadResult, Skipped
from medistill.data.registry import (
    BENCHMARKS,
    BenchmarkSpec,
    get_spec,
    load_benchmark,
    load_questions,
    sample_path,
)
from medistill.data.sampling import allocate, sample_questions
from medistill.data.schema import LETTERS, Question

__all__ = [
    "BENCHMARKS",
    "LETTERS",
    "BenchmarkSpec",
    "LoadReport",
    "LoadResult",
    "Question",
    "Skipped",
    "allocate",
    "get_spec",
    "load_benchmark",
    "load_mcq_jsonl",
    "load_medmcqa",
    "load_medqa",
    "load_mmlu",
    "load_pubmedqa",
    "load_questions",
    "sample_path",
    "sample_questions",
]
