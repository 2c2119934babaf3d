"""Reports from ``medistill eval`` run folders: a results table (Markdown, JSON), a chart and
one self-contained HTML page, with the safety runs' table (refusal of harmful requests beside
over-refusal of benign ones) after the accuracy table.

:mod:`~medistill.report.tables` reads the runs into table data, :mod:`~medistill.report.markdown`,
:mod:`~medistill.report.html` and :mod:`~medistill.report.plots` draw it,
:mod:`~medistill.report.explanations` is the Explanations table (does the reasoning support the
answer), :mod:`~medistill.report.samples` the HTML's sample answers (student beside teacher on
the same question, per benchmark),
:mod:`~medistill.report.safety` and :mod:`~medistill.report.safety_render` are the safety part,
and :mod:`~medistill.report.build` writes them all (:func:`build_report`).
"""

from medistill.report.build import Report, ReportConfig, build_report
from medistill.report.tables import (
    BENCHMARK_NAMES,
    METRICS,
    NO_ANSWER_WARN,
    TRUNCATION_WARN,
    benchmark_order,
    load_runs,
)

__all__ = [
    "BENCHMARK_NAMES",
    "METRICS",
    "NO_ANSWER_WARN",
    "TRUNCATION_WARN",
    "Report",
    "ReportConfig",
    "benchmark_order",
    "build_report",
    "load_runs",
]
