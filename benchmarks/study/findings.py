"""The paper's claims against this run's numbers: one row per piece of evidence, each with a computed verdict.

The paper (MAE-Lite) observes, for tiny ViTs:

* **(a)** masked image modelling (MAE) ends above contrastive pre-training (MoCo-v3) where downstream
  data is plentiful (fine-tune, probe, segmentation, tracking with all of the training data);
* **(b)** MAE falls below the contrastive and the supervised models where it is scarce (here: the
  10% data scale);
* **(c)** MAE's higher layers are unlike those of the supervised / contrastive models while its lower
  layers are alike (layer CKA: the mean same-layer CKA of the last layers below that of the first);
* **(d)** distillation closes the gap where data is scarce (D²-MAE above MAE at the 10% scale).

Each row compares two numbers with the project's one noise rule (:mod:`.scoring`: a difference counts
beyond :data:`.scoring.Z` standard errors) and turns the result into ``agrees`` / ``disagrees`` /
``within noise`` (``no noise estimate`` where a side has one value, ``not run`` where a recipe or a
result is missing). Nothing is typed in: the published column is read from
:mod:`benchmarks.published` as well.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .scoring import Z, Comparison, Estimate, compare_means, compare_paired
from .settings import RECIPES

__all__ = ["CLAIMS", "Evidence", "cka_layer_comparison", "findings", "findings_table", "published_cell"]

# claim key -> what the paper says
CLAIMS = {
    "a": "MIM (MAE) above contrastive (MoCo-v3) with enough data",
    "b": "MIM (MAE) below contrastive / supervised with little data",
    "c": "MIM's higher layers unlike those of the supervised / contrastive models (lower layers alike)",
    "d": "distillation closes MIM's gap with little data (D²-MAE above MAE)",
}
# (claim, model A, model B, metric) of benchmarks.published: the published figures next to a claim
PUBLISHED_PAIRS = {
    "a": ("MAE-Tiny", "MoCov3-Tiny", "ImageNet-1k top-1"),
    "b": ("MAE-Tiny", "MoCov3-Tiny", "transfer top-1, small data"),
    "d": ("D²-MAE-Tiny", "MAE-Tiny", "ImageNet-1k top-1"),
}
VERDICTS = ("agrees", "disagrees", "within noise", "no noise estimate", "not run")


@dataclass(frozen=True)
class Evidence:
    """One comparison behind a claim: ``comparison`` is A minus B, ``expect`` the sign the claim
    predicts (``above`` / ``below``), ``noise`` what its standard error is over."""

    claim: str
    what: str
    comparison: Comparison | None
    expect: str
    noise: str
    published: str = "-"
    missing: str = ""

    @property
    def verdict(self) -> str:
        if self.comparison is None:
            return "not run"
        v = self.comparison.verdict
        if v in ("within noise", "no noise estimate"):
            return v
        return "agrees" if v == self.expect else "disagrees"

    def cell(self) -> str:
        if self.comparison is None:
            return f"- ({self.missing})"
        c = self.comparison
        return f"{c.a} − {c.b} = {c.text(2)}"


def published_cell(claim: str, rows: Sequence[Any] | None = None) -> str:
    """The published figures of a claim's two models (``benchmarks.published`` rows), or why there are none."""
    if claim not in PUBLISHED_PAIRS:
        return "- (the paper shows this as a figure, no number)"
    if rows is None:
        from benchmarks.published import PUBLISHED as rows
    a, b, metric = PUBLISHED_PAIRS[claim]
    found = {r.model: r for r in rows if r.metric == metric and r.model in (a, b)}
    if len(found) < 2:
        return f"- (no checked {metric} figure of both in benchmarks/published.py)"
    return f"{a} {found[a].value:.1f} vs {b} {found[b].value:.1f} ({metric}; {found[a].source})"


def _label(recipe: str) -> str:
    return RECIPES[recipe].label


def _seed_rows(claim: str, a: str, b: str, expect: str, classification: Mapping[str, Mapping[str, Any]],
               scale: str, scale_label: str, published: str) -> list[Evidence]:
    """One row per classification task: recipe ``a`` against ``b`` at ``scale`` (Welch over seeds)."""
    rows = []
    for task, by_model in classification.items():
        what = f"{task} top-1, {scale_label}"
        ea, eb = (by_model.get(_label(r), {}).get(scale) for r in (a, b))
        if not ea or not eb or not ea["top1"] or not eb["top1"]:
            absent = [_label(r) for r, e in ((a, ea), (b, eb)) if not e or not e["top1"]]
            rows.append(Evidence(claim, what, None, expect, "", published, f"{', '.join(absent)} not run"))
            continue
        comparison = compare_means(_label(a), Estimate.of(ea["top1"]), _label(b), Estimate.of(eb["top1"]))
        rows.append(Evidence(claim, what, comparison, expect, "Welch, over seeds", published))
    return rows


def cka_layer_comparison(pair: Mapping[str, Any], layers: int | None = None) -> Comparison:
    """Same-layer CKA of a model pair (the diagonal of its CKA matrix): the mean over the last
    ``layers`` layers minus the mean over the first ``layers`` (default: half of them, rounded down),
    with Welch's standard error over those layers (the spread along the depth stands in for the noise)."""
    matrix = pair["matrix"]
    if len(matrix) != len(matrix[0]):
        raise ValueError(f"CKA of {pair['a']} vs {pair['b']}: {len(matrix)}x{len(matrix[0])} layers, the "
                         "same-layer comparison needs as many layers on both sides")
    diagonal = [math.nan if matrix[i][i] is None else float(matrix[i][i]) for i in range(len(matrix))]
    k = layers or max(1, len(diagonal) // 2)
    return compare_means("last layers", Estimate.of(diagonal[-k:]), "first layers", Estimate.of(diagonal[:k]))


def findings(classification: Mapping[str, Mapping[str, Any]], scales: Mapping[str, str],
             seg: Mapping[str, Mapping[str, Any]] | None = None,
             track_per_sequence: Mapping[str, Sequence[float]] | None = None,
             cka_pairs: Sequence[Mapping[str, Any]] = (), little: str = "10pct", enough: str = "all",
             published_rows: Sequence[Any] | None = None) -> list[Evidence]:
    """Every piece of evidence for the four claims (:data:`CLAIMS`), from the study's results.

    ``classification``: task -> model label -> scale -> ``{"top1": [one value a seed]}`` (as
    :func:`.tables.classification_table` returns); ``scales``: scale -> label; ``seg``: model label
    -> ``{"mIoU"}`` (one seed); ``track_per_sequence``: model label -> AUC per test sequence (the
    same sequences for every model); ``cka_pairs``: :func:`analysis.cka_summary`'s pairs.
    """
    seg, track_per_sequence = seg or {}, track_per_sequence or {}
    published = {c: published_cell(c, published_rows) for c in CLAIMS}
    rows: list[Evidence] = []
    enough_label = scales.get(enough, enough)
    little_label = scales.get(little, little)

    rows += _seed_rows("a", "mae", "mocov3", "above", classification, enough, enough_label, published["a"])
    mae, moco = _label("mae"), _label("mocov3")
    if mae in seg and moco in seg:
        rows.append(Evidence("a", "segmentation mIoU", Comparison(mae, moco, seg[mae]["mIoU"] - seg[moco]["mIoU"],
                                                                  math.nan), "above", "one seed", published["a"]))
    else:
        rows.append(Evidence("a", "segmentation mIoU", None, "above", "", published["a"],
                             "MAE or MoCo-v3 not run"))
    if mae in track_per_sequence and moco in track_per_sequence:
        rows.append(Evidence("a", "tracking AUC", compare_paired(mae, track_per_sequence[mae], moco,
                                                                 track_per_sequence[moco]),
                             "above", "paired, over test sequences", published["a"]))
    else:
        rows.append(Evidence("a", "tracking AUC", None, "above", "", published["a"], "MAE or MoCo-v3 not run"))

    for other in ("mocov3", "supervised"):
        rows += _seed_rows("b", "mae", other, "below", classification, little, little_label, published["b"])

    names = {(p["a"], p["b"]): p for p in cka_pairs}
    for other in ("mocov3", "supervised"):
        pair = names.get((mae, _label(other))) or names.get((_label(other), mae))
        what = f"same-layer CKA, MAE vs {_label(other)}: last layers − first layers"
        if pair is None:
            rows.append(Evidence("c", what, None, "below", "", published["c"], f"no CKA of MAE and {_label(other)}"))
        else:
            rows.append(Evidence("c", what, cka_layer_comparison(pair), "below", "Welch, over layers", published["c"]))

    rows += _seed_rows("d", "d2mae", "mae", "above", classification, little, little_label, published["d"])
    return rows


def findings_table(rows: Sequence[Evidence]) -> tuple[str, dict]:
    """The Markdown table (claim, evidence, this run, verdict, published) with one computed
    sentence per claim, and the JSON data."""
    lines = [f"**Findings: the paper's claims against this run's numbers** (a difference counts beyond {Z:g} "
             "standard errors; verdicts computed, published figures from benchmarks/published.py)", "",
             "| claim | evidence | this run (A − B ± s.e.) | noise over | verdict | published |",
             "|---|---|---|---|---|---|"]
    data: dict[str, Any] = {}
    for key, text in CLAIMS.items():
        mine = [r for r in rows if r.claim == key]
        for i, r in enumerate(mine):
            lines.append(f"| {f'({key}) {text}' if i == 0 else ''} | {r.what} | {r.cell()} | {r.noise or '-'} | "
                         f"**{r.verdict}** | {r.published if i == 0 else ''} |")
        counts = {v: sum(r.verdict == v for r in mine) for v in VERDICTS}
        data[key] = {"claim": text, "counts": counts, "rows": [
            {"what": r.what, "verdict": r.verdict, "noise": r.noise, "published": r.published,
             **({"a": r.comparison.a, "b": r.comparison.b, "difference": r.comparison.difference,
                 "se": None if not math.isfinite(r.comparison.se) else r.comparison.se}
                if r.comparison else {"missing": r.missing})} for r in mine]}
    sentences = []
    for key, entry in data.items():
        parts = [f"{n} {v}" for v, n in entry["counts"].items() if n]
        sentences.append(f"({key}) of {sum(entry['counts'].values())} comparison(s): " + ", ".join(parts) + ".")
    return "\n".join(lines) + "\n\n" + " ".join(sentences), data

