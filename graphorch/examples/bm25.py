"""A small, correct Okapi BM25 ranker in pure Python (used by the research example).

Tokenization lowercases, splits on anything that is not a letter or digit, drops
English stop words and strips common suffixes (a light stemmer), so "checkpoints" and
"checkpointed" meet "checkpoint". Scores follow Robertson's BM25 with the
non-negative IDF of Lucene::

    idf(t)   = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))
    score(d) = sum over query terms t of
               idf(t) * f(t,d) * (k1 + 1) / (f(t,d) + k1 * (1 - b + b * |d| / avgdl))
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BM25", "STOP_WORDS", "stem", "tokenize"]

STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "after",
        "again",
        "all",
        "also",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)

_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = (
    "ations",
    "ation",
    "ments",
    "ment",
    "ing",
    "ers",
    "ies",
    "ied",
    "ed",
    "es",
    "er",
    "ly",
    "s",
)


def stem(word: str) -> str:
    """A light suffix-stripping stemmer: ``"checkpointed"`` -> ``"checkpoint"``.

    Words of four letters or fewer are kept as they are; a stem keeps at least three.
    """
    if len(word) <= 4 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                return base + "y"
            if suffix in ("ing", "ed", "er", "ers") and len(base) > 3 and base[-1] == base[-2]:
                return base[:-1]  # "committed" -> "commit", "mapping" -> "map"
            return base
    return word


def tokenize(text: str) -> list[str]:
    """Lowercase words and numbers without stop words, each stemmed."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


@dataclass(frozen=True)
class _Doc:
    terms: Counter[str]
    length: int


class BM25:
    """An Okapi BM25 index over a fixed list of texts.

    Args:
        texts: the documents (or passages) to rank, in order; results name them by index.
        k1: term-frequency saturation (1.2 to 2.0 is usual).
        b: length normalisation, 0 (none) to 1 (full).

    Example::

        index = BM25(["the cat sat", "a dog barked", "cats and dogs"])
        index.rank("cat")  # [(0, 0.87...), (2, 0.87...)]
    """

    def __init__(self, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError("BM25 needs k1 >= 0 and 0 <= b <= 1")
        self.k1 = k1
        self.b = b
        self._docs = [_Doc(Counter(t), len(t)) for t in (tokenize(x) for x in texts)]
        self.size = len(self._docs)
        total = sum(d.length for d in self._docs)
        self.avgdl = total / self.size if self.size else 0.0
        df: Counter[str] = Counter()
        for d in self._docs:
            df.update(d.terms.keys())
        self._idf = {
            term: math.log(1 + (self.size - n + 0.5) / (n + 0.5)) for term, n in df.items()
        }

    def idf(self, term: str) -> float:
        """The IDF of an already tokenized term (0 for a term no document has)."""
        return self._idf.get(term, 0.0)

    def score(self, query: str, index: int) -> float:
        """The BM25 score of text ``index`` for ``query``."""
        doc = self._docs[index]
        if not doc.length:
            return 0.0
        norm = self.k1 * (1 - self.b + self.b * doc.length / self.avgdl)
        total = 0.0
        for term in tokenize(query):
            f = doc.terms.get(term, 0)
            if f:
                total += self.idf(term) * f * (self.k1 + 1) / (f + norm)
        return total

    def rank(self, query: str, k: int | None = None) -> list[tuple[int, float]]:
        """``(index, score)`` of the texts matching ``query``, best first (ties by index).

        Texts scoring 0 (no query term in common) are left out.
        """
        scored = [(i, self.score(query, i)) for i in range(self.size)]
        hits = sorted((h for h in scored if h[1] > 0), key=lambda h: (-h[1], h[0]))
        return hits if k is None else hits[:k]
