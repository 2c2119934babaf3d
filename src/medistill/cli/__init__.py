"""The ``medistill`` command line (``[project.scripts] medistill = "medistill.cli:app"``).

:mod:`~medistill.cli.app` holds the application and its command table,
:mod:`~medistill.cli.stages` the pipeline's stage commands, :mod:`~medistill.cli.tools` the
commands around them. Every command's options are derived from its config class by
:mod:`medistill.flags` (outside this package, so that ``python -m medistill.deploy.gguf`` derives
its options the same way without importing the application).
"""

from medistill.cli.app import app

__all__ = ["app"]
