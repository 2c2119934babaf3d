"""The not-for-clinical-use notice: one wording for model cards, reports and the explain page."""

from __future__ import annotations

#: Plain text, for HTML pages (escaped where shown) and logs.
NOT_FOR_CLINICAL_USE_TEXT = (
    "Not for clinical use. This is a research model distilled for medical question "
    "answering. It makes mistakes, including confident and harmful ones; it must not be used to "
    "diagnose, treat or advise patients."
)

#: Markdown, for model and dataset cards.
NOT_FOR_CLINICAL_USE = "**Not for clinical use.**" + NOT_FOR_CLINICAL_USE_TEXT.removeprefix(
    "Not for clinical use."
)
