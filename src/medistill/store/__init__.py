"""The trace store (stage 1's file) and what writes it: ``traces.py`` holds the SQLite store of
finished teacher calls and rubrics, ``importer.py`` brings existing reasoning-trace datasets
into it (``medistill import-traces``, its field mappings in ``import_mapping.py``)."""

from medistill.store.traces import (
    COLUMNS,
    RUBRIC_COLUMNS,
    SCHEMA_VERSION,
    RubricRecord,
    TraceRecord,
    TraceStore,
    export_store,
    trace_key,
)

__all__ = [
    "COLUMNS",
    "RUBRIC_COLUMNS",
    "SCHEMA_VERSION",
    "RubricRecord",
    "TraceRecord",
    "TraceStore",
    "export_store",
    "trace_key",
]
