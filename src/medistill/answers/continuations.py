"""Degenerate continuations: what a small model writes after it has answered.

A model that states its answer and then cannot stop fills the rest of its budget with junk:
hundreds of empty code fences, placeholder functions, the same line again and again. The
answer it stated is still its answer, however long the junk; but the junk can hold letters,
fences and stray "answer" lines that the cascade would otherwise read as later (and so
winning) commitments. :func:`degenerate_start` finds where such a tail begins, so
preparation can cut it, as it cuts a runaway next question.
"""

from __future__ import annotations

import re

#: A line that carries no prose: a code fence, a placeholder, a bracket, an ellipsis.
_CODE_LINE = re.compile(
    r"^\s*(?:```[\w+-]*|~~~\w*|def\s+\w+\s*\([^)]*\)\s*(?:->\s*[\w\[\], ]+)?:|class\s+\w+.*:"
    r"|pass|return\b.*|#.*|//.*|import\s+[\w.]+.*|from\s+[\w.]+\s+import\b.*|print\(.*\)"
    r"|\.\.\.|…|[{}()\[\]<>;,]+|</?\w+[^>]*>|[-=*_~`]{3,})\s*$"
)
#: The smallest tail called degenerate: fewer lines are left alone.
MIN_LINES = 6


def degenerate_start(text: str, after: int) -> int | None:
    """The offset where a degenerate tail starts, searching after offset ``after`` (the
    first commitment), or ``None``.

    A tail is degenerate when it holds at least :data:`MIN_LINES` non-empty lines and either
    nearly all of them are non-prose (:data:`_CODE_LINE`: fences, placeholders, brackets) or
    they repeat: at most a quarter of them distinct. The earliest such start wins, so the
    whole junk goes, never the answer before it. Linear in the text's length.
    """
    line_end = text.find("\n", after)
    if line_end == -1:
        return None
    lines: list[tuple[int, str]] = []
    pos = line_end + 1
    for raw in text[pos:].split("\n"):
        if raw.strip():
            lines.append((pos, raw.strip()))
        pos += len(raw) + 1
    if len(lines) < MIN_LINES:
        return None
    seen: set[str] = set()
    code = 0
    start = None
    for i in range(len(lines) - 1, -1, -1):
        offset, line = lines[i]
        seen.add(line)
        code += bool(_CODE_LINE.match(line))
        n = len(lines) - i
        if n >= MIN_LINES and (code >= 0.9 * n or len(seen) <= n // 4):
            start = offset
    return start
