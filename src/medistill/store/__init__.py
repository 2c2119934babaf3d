"""The trace store (stage 1's file) and what writes it: ``traces.py`` holds the SQLite store of
finished teacher calls and rubrics, ``importer.py`` brings existing reasoning-trace datasets
into it (``medistill import-traces``, its field mappings in ``import_mapping.py``)."""

from medistill.store.traces import (
    COLUMNS,
    CONTRAST_PREFIX,
    RUBRIC_COLUMNS,
    SCHEMA_VERSION,
    RubricRecord,
    TraceRecord,
    TraceStore,
    contrast_source,
    export_store,
    is_contrast,
    trace_key,
)

__all__ = [
    "COLUMNS",
    "CONTRAST_PREFIX",
    "RUBRIC_COLUMNS",
    "SCHEMA_VERSION",
    "RubricRecord",
    "TraceRecord",
    "TraceStore",
    "contrast_source",
    "export_store",
    "is_contrast",
    "trace_key",
]
