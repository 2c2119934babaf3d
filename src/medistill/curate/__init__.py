"""Stage 2: curation. Verified, filtered, deduplicated and decontaminated traces -> a dataset
with a data card. ``run_curate`` is the entry point (``medistill.store.importer`` brings public
trace sets into the store it reads)."""

from medistill.curate.config import CurateConfig
from medistill.curate.run import run_curate

__all__ = ["CurateConfig", "run_curate"]
