"""Preflight: what a recipe's settings need from the machine that will run it, checked first.

Work in progress (issue 25): the full checks land in later commits.
"""

from __future__ import annotations

from pathlib import Path


def recipe_problems(recipe_path: str | Path) -> list[str]:
    """Every problem that stops the recipe as written on this machine, one line each naming
    the recipe key and the fix (empty when it can run here)."""
    return []
