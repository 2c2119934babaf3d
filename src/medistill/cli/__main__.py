"""``python -m medistill.cli`` (and ``accelerate launch -m medistill.cli``): the command line."""

from medistill.cli.app import app

if __name__ == "__main__":  # pragma: no cover
    app()
