"""Cheap request-time features of a prompt, beside its embedding: length, numbers, symbols, form.

Each is computed from the text alone in microseconds (no model), so it costs nothing at serving
time. `prompt_features` returns raw values; `FeatureScaler` standardises them with statistics
learned in `fit` (log1p first for the counts, whose spread is heavy-tailed), so they can sit beside
a unit-length embedding in a linear model. `source_onehot` encodes a request's source key (a
tenant, an API key, a system prompt's hash) for per-source calibration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from core.errors import NotFittedError

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_MATH = re.compile(r"[=+\-*/^%<>√∑∫π]|\\frac|\\sqrt")
_OPTION = re.compile(r"^\s*\(?[A-D][.)]\s", re.MULTILINE)
_QUESTION_START = re.compile(r"^\s*(what|which|who|whom|whose|when|where|why|how|is|are|does|do|can|should)\b", re.I)
_IMPERATIVE = re.compile(r"\b(prove|show that|derive|explain|compute|calculate|find|solve|write|implement)\b", re.I)
_CURRENCY = re.compile(r"[$€£%]")

FEATURE_NAMES = (
    "chars",
    "words",
    "lines",
    "numbers",
    "digit_share",
    "math_symbols",
    "currency_or_percent",
    "question_marks",
    "options",
    "starts_as_question",
    "imperative_verbs",
    "upper_share",
    "mean_word_length",
)
# Counts get log1p before standardising; shares and flags do not.
_COUNTS = frozenset({"chars", "words", "lines", "numbers", "math_symbols", "currency_or_percent",
                     "question_marks", "options", "imperative_verbs"})


def prompt_features(texts: Sequence[str]) -> np.ndarray:
    """Raw features, shape (len(texts), len(FEATURE_NAMES)), in FEATURE_NAMES order."""
    out = np.zeros((len(texts), len(FEATURE_NAMES)), dtype=np.float64)
    for row, text in enumerate(texts):
        chars = len(text)
        words = text.split()
        letters = sum(c.isalpha() for c in text)
        out[row] = (
            chars,
            len(words),
            text.count("\n") + 1,
            len(_NUMBER.findall(text)),
            sum(c.isdigit() for c in text) / max(chars, 1),
            len(_MATH.findall(text)),
            len(_CURRENCY.findall(text)),
            text.count("?"),
            len(_OPTION.findall(text)),
            float(bool(_QUESTION_START.match(text))),
            len(_IMPERATIVE.findall(text)),
            sum(c.isupper() for c in text) / max(letters, 1),
            (sum(len(w) for w in words) / len(words)) if words else 0.0,
        )
    return out


class FeatureScaler:
    """log1p on the counts, then standardisation with the training rows' mean and spread."""

    mean_: np.ndarray
    scale_: np.ndarray

    def fit(self, raw: np.ndarray) -> FeatureScaler:
        """Learn each feature's mean and standard deviation (a constant feature keeps scale 1)."""
        logged = self._log(raw)
        self.mean_ = logged.mean(axis=0)
        spread = logged.std(axis=0)
        self.scale_ = np.where(spread > 1e-12, spread, 1.0)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Standardised features of `raw` rows."""
        if not hasattr(self, "mean_"):
            raise NotFittedError("This FeatureScaler is not fitted yet: call fit() first.")
        return np.asarray((self._log(raw) - self.mean_) / self.scale_, dtype=np.float64)

    @staticmethod
    def _log(raw: np.ndarray) -> np.ndarray:
        logged = np.array(raw, dtype=np.float64, copy=True)
        for column, name in enumerate(FEATURE_NAMES):
            if name in _COUNTS:
                logged[:, column] = np.log1p(logged[:, column])
        return logged


def source_onehot(sources: Sequence[str], known: Sequence[str]) -> np.ndarray:
    """One column per known source group (the part before "/"); an unknown source is all zeros."""
    index = {name: column for column, name in enumerate(known)}
    out = np.zeros((len(sources), len(known)))
    for row, source in enumerate(sources):
        column = index.get(source.split("/", 1)[0])
        if column is not None:
            out[row, column] = 1.0
    return out
