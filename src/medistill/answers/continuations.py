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
from collections import Counter

#: A line that carries no prose: a code fence, a placeholder, a bracket, an ellipsis, an
#: assignment or a call (a comment counts only inside a fence: outside, ``#`` is a header).
_CODE_LINE = re.compile(
    r"^\s*(?:```[\w+-]*|~~~\w*|def\s+\w+\s*\([^)]*\)\s*(?:->\s*[\w\[\], ]+)?:|class\s+\w+.*:"
    r"|pass|return\b.*|import\s+[\w.]+.*|from\s+[\w.]+\s+import\b.*|print\(.*\)"
    r"|\.\.\.|…|[{}()\[\]<>;,]+|</?\w+[^>]*>|[-=*_~`]{3,}|[`\s]+|\$\$|\|[\s|:-]*\|"
    r"|[A-Za-z_]\w*(?:\.\w+)*(?:\[[^\]]*\])?\s*=\s*\S.*|[A-Za-z_][\w.]*\(.*\)\s*)\s*$"
)
#: A line written this many times is junk wherever it stands (its first time included).
_REPEATED = 3
#: The smallest tail called degenerate: fewer lines are left alone.
MIN_LINES = 6


def degenerate_start(text: str, after: int) -> int | None:
    """The offset where a degenerate tail starts, searching after offset ``after`` (the
    first commitment), or ``None``.

    The tail is the run of junk lines that ends the text: non-empty lines inside a code
    fence, non-prose lines (:data:`_CODE_LINE`: placeholders, brackets, assignments) and
    lines written again and again (:data:`_REPEATED` times or more). The run stops at the
    first line, read backwards, that is prose written once, so a final answer line before
    pages of junk is never part of the tail, however long the junk. A run of fewer than
    :data:`MIN_LINES` lines is left alone. Linear in the text's length.
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
    counts = Counter(line for _, line in lines)
    fenced: list[bool] = []  # inside a code fence (or the fence line itself): code
    inside = False
    for _, line in lines:
        fence = line.startswith(("```", "~~~"))
        fenced.append(inside or fence)
        inside = inside != fence
    start = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i][1]
        if not (fenced[i] or _CODE_LINE.match(line) or counts[line] >= _REPEATED):
            break
        start = i
    if len(lines) - start < MIN_LINES:
        return None
    return lines[start][0]
