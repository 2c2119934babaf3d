"""Stage 2: curation. Verified, filtered, deduplicated and decontaminated traces -> a dataset
with a data card. ``run_curate`` is the entry point; ``import_traces`` brings in public sets."""

from medistill.curate.config import CurateConfig
from medistill.curate.importer import PRESETS, import_traces, parse_mapping
from medistill.curate.run import run_curate

__all__ = ["PRESETS", "CurateConfig", "import_traces", "parse_mapping", "run_curate"]
