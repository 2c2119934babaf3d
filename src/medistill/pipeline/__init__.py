"""``medistill run recipe.yaml``: generate -> curate -> sft -> grpo -> eval -> export ->
eval-deployed -> report (the last trained student as an HF folder and GGUF files, each GGUF
evaluated with llama.cpp on the CPU: :mod:`medistill.pipeline.deploy_plan`,
:mod:`medistill.pipeline.deploy_run`).

The pipeline composes the stages' own functions through the files they write (stages never
import each other). Every stage writes into ``<root>/<name>/<stage>/`` and leaves a
``pipeline.json`` manifest there: its resolved config and that config's hash, the hashes of
its inputs (the outputs of the stages it reads), package versions, timings and token counts.

A finished stage whose config hash and input hashes are unchanged is skipped on a rerun; a
change re-runs that stage and, as their inputs then change, the stages after it. A killed
stage resumes (each stage resumes on its own: the trace store, training checkpoints, eval
predictions). The whole recipe is validated before any stage starts.
"""

from medistill.pipeline.plan import DEFAULT_STAGES, MANIFEST, STAGES, Plan, RunConfig, plan
from medistill.pipeline.runner import decide, run_pipeline
from medistill.pipeline.stages import read_manifest

__all__ = [
    "DEFAULT_STAGES",
    "MANIFEST",
    "STAGES",
    "Plan",
    "RunConfig",
    "decide",
    "plan",
    "read_manifest",
    "run_pipeline",
]
