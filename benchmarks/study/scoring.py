"""The study's statistics and the sentences written from them (numpy only).

A difference is called a difference only beyond the noise: when it exceeds :data:`Z` times its
standard error. Over seeds the standard error of a difference of two means is Welch's
``sqrt(s_a² / n_a + s_b² / n_b)``; over test sequences (the same sequences for every tracker) it is
that of the paired per-sequence differences, ``std(d) / sqrt(n)``; against a fixed baseline
number, that of the row's mean. Nothing here is typed in: every sentence is built from the numbers
it is given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Z", "Estimate", "Comparison", "compare_means", "compare_paired", "compare_to_value", "fmt",
           "baseline_sentence", "ordered_steps", "ranking_sentence"]

Z = 2.0  # a difference is called one when it exceeds Z standard errors


def fmt(value: float | None, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None or NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


@dataclass(frozen=True)
class Estimate:
    """Repeated measurements of one quantity (one value per seed)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> "Estimate":
        return cls(tuple(float(v) for v in values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof 1); NaN below two values."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def cell(self, digits: int = 1) -> str:
        """``mean ± std`` (``mean`` alone for one value)."""
        if self.n > 1:
            return f"{fmt(self.mean, digits)} ± {fmt(self.std, digits)}"
        return fmt(self.mean, digits)


@dataclass(frozen=True)
class Comparison:
    """``a`` minus ``b`` with its standard error and what it amounts to."""

    a: str
    b: str
    difference: float
    se: float

    @property
    def verdict(self) -> str:
        """``above`` / ``below`` (beyond :data:`Z` standard errors), ``within noise``, or ``no noise
        estimate`` (fewer than two values on a side)."""
        if not math.isfinite(self.se):
            return "no noise estimate"
        if self.difference > Z * self.se:
            return "above"
        if self.difference < -Z * self.se:
            return "below"
        return "within noise"

    def text(self, digits: int = 1) -> str:
        """``+1.2 ± 0.4`` (difference ± its standard error)."""
        se = f" ± {fmt(self.se, digits)}" if math.isfinite(self.se) else ""
        return f"{self.difference:+.{digits}f}{se}"


def compare_means(a: str, ea: Estimate, b: str, eb: Estimate) -> Comparison:
    """Difference of two means over independent seeds (Welch's standard error)."""
    se = math.sqrt(ea.std ** 2 / ea.n + eb.std ** 2 / eb.n) if ea.n > 1 and eb.n > 1 else math.nan
    return Comparison(a, b, ea.mean - eb.mean, se)


def compare_paired(a: str, va: Sequence[float], b: str, vb: Sequence[float]) -> Comparison:
    """Mean of the paired differences ``va - vb`` (the same items, e.g. test sequences) and its
    standard error."""
    if len(va) != len(vb):
        raise ValueError(f"paired comparison of {a} and {b}: {len(va)} against {len(vb)} values")
    d = np.asarray(va, dtype=float) - np.asarray(vb, dtype=float)
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
    return Comparison(a, b, float(d.mean()), se)


def compare_to_value(a: str, ea: Estimate, b: str, value: float) -> Comparison:
    """A row's mean against a fixed number (a baseline computed once): the mean's standard error."""
    return Comparison(a, b, ea.mean - value, ea.se)


def ranking_sentence(comparisons: Sequence[Comparison], first: tuple[str, float], what: str, noise: str,
                     digits: int = 1) -> str:
    """The rows in order with each step to the next: ``A 48.2 > B 47.0 (+1.2 ± 0.9, within noise) ...``.

    ``comparisons`` are the adjacent pairs in order (``a`` above ``b`` by mean); ``first`` is the
    top row's name and value; ``noise`` says what the standard errors are over."""
    if not comparisons:
        return ""
    parts = [f"{first[0]} {fmt(first[1], digits)}"]
    values = {first[0]: first[1]}
    for c in comparisons:
        values[c.b] = values[c.a] - c.difference
        verdict = {"above": "beyond the noise"}.get(c.verdict, c.verdict)
        parts.append(f"{c.b} {fmt(values[c.b], digits)} ({c.text(digits)}, {verdict})")
    return (f"{what} in order: " + " > ".join(parts) + f". A step is beyond the noise when it exceeds {Z:g} "
            f"standard errors of the difference ({noise}).")


def baseline_sentence(comparisons: Sequence[Comparison], baseline: str, value: float, noise: str,
                      digits: int = 1) -> str:
    """Which rows beat ``baseline`` (``value``) beyond the noise, which are within it, which fall below."""
    groups: dict[str, list[str]] = {"above": [], "within noise": [], "below": [], "no noise estimate": []}
    for c in comparisons:
        groups[c.verdict].append(f"{c.a} ({c.text(digits)})")
    head = f"Against {baseline} ({fmt(value, digits)})"
    if groups["above"] and len(groups["above"]) == len(comparisons):
        return f"{head}: every row is above it beyond the noise: " + ", ".join(groups["above"]) + f" (noise: {noise})."
    parts = []
    for key, label in (("above", "above it beyond the noise"), ("within noise", "within the noise"),
                       ("below", "below it beyond the noise"), ("no noise estimate", "one value, no noise estimate")):
        if groups[key]:
            parts.append(f"{label}: " + ", ".join(groups[key]))
    return f"{head}: " + "; ".join(parts) + f" (noise: {noise})."


def ordered_steps(estimates: Mapping[str, Estimate]) -> list[Comparison]:
    """Adjacent comparisons of the rows sorted by mean, best first (Welch over seeds)."""
    order = sorted(estimates, key=lambda k: -estimates[k].mean)
    return [compare_means(a, estimates[a], b, estimates[b]) for a, b in zip(order, order[1:])]
