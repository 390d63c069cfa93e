"""Small text helpers shared by the validator, the importer and the generators."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")
# Words that never make a good identifier on their own (bib keys, file names).
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "of",
        "on",
        "or",
        "over",
        "the",
        "to",
        "toward",
        "towards",
        "via",
        "vs",
        "with",
        "without",
    ]
)


def normalise_title(title: str) -> str:
    """A title reduced to its words, so case, spacing and punctuation differences do not matter."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", title).casefold()))


def ascii_words(text: str) -> list[str]:
    """The lowercase ASCII words of `text`, accents dropped (Rücklé -> ruckle)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _WORD.findall(folded.lower())


def significant_words(text: str) -> list[str]:
    return [word for word in ascii_words(text) if word not in STOPWORDS]
