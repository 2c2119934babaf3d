"""Your own questions file's options, checked once for every command: the ``columns``
mapping (your field names) and the holdout rule that splits one file into the questions
evaluated on (split ``test``) and the rest (split ``train``), by a seeded hash of each id.

The help texts here are the fields' help in every config class that has them (``eval``,
``generate`` and its sources, ``inspect``, ``run``), so they say the same everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from medistill.errors import MedistillError

#: The fields a ``columns`` mapping may rename (ours -> the file's).
COLUMN_KEYS = ("question", "options", "answer", "id", "subject", "explanation")
#: Fewest and most options a question may have.
MIN_OPTIONS, MAX_OPTIONS = 2, 10

COLUMNS_HELP = (
    'mcq (your own file): your field / column names as a mapping, e.g. {"question": "stem", '
    '"answer": "correct", "options": ["opa", "opb", "opc"], "id": "qid"} (keys: question, '
    "options, answer, id, subject, explanation; options: a list of columns, one per option, "
    "or in JSON the one field holding them)"
)
HOLDOUT_HELP = (
    "mcq (your own file): share of its questions held out for evaluation (e.g. 0.2), chosen "
    "by a seeded hash of each id: split test reads them, split train the rest (needed when a "
    "run trains and evaluates on the same file)"
)
HOLDOUT_SEED_HELP = "mcq: seed of the holdout rule (same seed, same questions held out)"


def check_options(
    columns: Any = None, holdout: Any = None, holdout_seed: Any = 0, *, where: str = "mcq"
) -> None:
    """Refuse a ``columns`` mapping with unknown keys or bad values and a holdout share
    outside (0, 1), before any file is read (``where`` names the recipe key or command)."""
    if columns is not None:
        if not isinstance(columns, Mapping):
            raise MedistillError(f"{where}: columns must be a mapping, e.g. {{question: stem}}")
        unknown = sorted(set(columns) - set(COLUMN_KEYS))
        if unknown:
            raise MedistillError(
                f"{where}: columns.{unknown[0]}: unknown key; valid: {', '.join(COLUMN_KEYS)}"
            )
        for key, value in columns.items():
            if key == "options" and isinstance(value, list):
                if not MIN_OPTIONS <= len(value) <= MAX_OPTIONS or not all(
                    isinstance(v, str) and v.strip() for v in value
                ):
                    raise MedistillError(
                        f"{where}: columns.options: list {MIN_OPTIONS} to {MAX_OPTIONS} column "
                        f"names, got {value!r}"
                    )
            elif not isinstance(value, str) or not value.strip():
                raise MedistillError(f"{where}: columns.{key}: expected a name, got {value!r}")
    if holdout is not None:
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float)):
            raise MedistillError(f"{where}: holdout must be a share like 0.2, got {holdout!r}")
        if not 0 < holdout < 1:
            raise MedistillError(f"{where}: holdout must be between 0 and 1, got {holdout}")
    if isinstance(holdout_seed, bool) or not isinstance(holdout_seed, int):
        raise MedistillError(f"{where}: holdout_seed must be an integer, got {holdout_seed!r}")


def mcq_kwargs(
    columns: Any = None, holdout: float | None = None, holdout_seed: int = 0
) -> dict[str, Any]:
    """The loader options for your own questions file, only those set (so a run without them
    records nothing new)."""
    out: dict[str, Any] = {}
    if columns:
        out["columns"] = dict(columns)
    if holdout is not None:
        out["holdout"] = holdout
        out["holdout_seed"] = holdout_seed
    return out


def with_options(
    benchmark: str, loader_kwargs: dict[str, Any], columns: Any, holdout: Any, holdout_seed: Any
) -> dict[str, Any]:
    """``loader_kwargs`` with your own file's ``columns`` and holdout rule added (an eval
    config's: the loader reads them and a resumed run must share them); given for another
    benchmark than ``mcq``, or differing from a ``loader_kwargs`` value, a ``ValueError``."""
    given = mcq_kwargs(columns, holdout, holdout_seed)
    if not given:
        return loader_kwargs
    if benchmark != "mcq":
        raise ValueError(
            f"{next(iter(given))} is for benchmark mcq (your own file), not {benchmark!r}; "
            "remove it"
        )
    try:
        check_options(columns, holdout, holdout_seed, where="eval")
    except MedistillError as e:
        raise ValueError(str(e).removeprefix("eval: ")) from None
    clash = [k for k, v in given.items() if loader_kwargs.get(k, v) != v]
    if clash:
        raise ValueError(
            f"{clash[0]} and loader_kwargs.{clash[0]} differ: give it once (as {clash[0]})"
        )
    return {**loader_kwargs, **given}


def held_out(key: str, holdout: float, seed: int) -> bool:
    """Whether the question with ``key`` (its id, or its text) is in the held-out share:
    the first 8 bytes of ``sha256("<seed>:<key>")`` as a fraction below ``holdout``."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout
