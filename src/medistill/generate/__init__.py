"""Stage 1: teacher traces -> the durable trace store.

``run_generate`` builds one request per (question, sample index), skips every key already in
the store, and runs the rest through the teacher backend: concurrently over HTTP (bounded,
paced, retried) or in batches for local models. Each finished call is committed on arrival, so
a killed run resumes where it stopped and no finished call is ever paid for twice.

:mod:`~medistill.generate.config` is what a run reads (the recipe's ``generate:`` section),
:mod:`~medistill.generate.requests` the calls it wants (the seeded option shuffle included, and
with ``contrast`` the teacher's answers to benign open requests for curation's safety mix),
:mod:`~medistill.generate.run` the run itself.
"""

from __future__ import annotations

from medistill.generate.config import (
    CONTRAST_SETS,
    SINGLE_SOURCE_KEYS,
    GenerateConfig,
    SampleConfig,
    SourceConfig,
)
from medistill.generate.requests import (
    Request,
    build_requests,
    contrast_requests,
    shuffle_question,
    source_requests,
)
from medistill.generate.run import run_generate

__all__ = [
    "CONTRAST_SETS",
    "SINGLE_SOURCE_KEYS",
    "GenerateConfig",
    "Request",
    "SampleConfig",
    "SourceConfig",
    "build_requests",
    "contrast_requests",
    "run_generate",
    "shuffle_question",
    "source_requests",
]
