"""The ``medistill`` command line (``[project.scripts] medistill = "medistill.cli:app"``).

:mod:`~medistill.cli.app` holds the application and its command table,
:mod:`~medistill.cli.stages` the pipeline's stage commands, :mod:`~medistill.cli.tools` the
commands around them, and :mod:`~medistill.cli.args` derives every command's options from its
config class.
"""

from medistill.cli.app import app

__all__ = ["app"]
