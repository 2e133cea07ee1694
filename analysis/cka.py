"""Linear CKA between the layers of two models, over minibatches (Nguyen et al., 2021).

For a batch of ``n`` examples with linear Gram matrices ``K = X X^T`` and ``L = Y Y^T``,
HSIC_1 (Song et al., 2012) is the unbiased estimator of HSIC.  The minibatch CKA of Nguyen et al.
("Do wide and deep networks learn the same things?", 2021) averages it over ``k`` batches::

    CKA = mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) * mean_i HSIC_1(L_i, L_i))

so memory depends on the batch size only.  On a single batch holding all the data it is the
full-data unbiased CKA; over several batches it estimates the same quantity (exactly what the
paper computes, not the full-data value).  MAE-Lite's analyzer (``RepCmpAnalyzer``) does the same:
it sums the three HSIC_1 values of every layer pair over the minibatches, divides by the number of
batches and forms CKA once from those means; it never averages per-batch CKA values.

The paper's representations are whole token maps (``pool="tokens"``, the default; see
:mod:`analysis.models`): each image's map of a layer flattened to one vector, so the linear Gram
matrix of a batch is ``K[a, b] = sum over tokens t of <x_a,t, x_b,t>``.

HSIC_1 is computed as an inner product of U-centred Gram matrices (Székely & Rizzo, 2014),
which equals Song et al.'s formula: ``HSIC_1(K, L) = <U(K), U(L)> / (n (n - 3))`` where ``U``
zeroes the diagonal and removes row, column and grand means with the unbiased weights.  One
U-centred matrix per layer then gives all layer pairs with one matrix product.  Everything is
accumulated in float64.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from fileio.progress import progress as progress_bar

from .images import ImageBatch
from .models import HieraLayers, Pool, input_size, layer_features, layer_names

__all__ = ["REPRESENTATIONS", "MinibatchCKA", "cka_summary", "linear_cka", "u_center"]

REPRESENTATIONS = {
    "tokens": "token maps, flattened per image (class token removed): ViT layer i = input of block i after its "
              "norm1 (layer 0 = embedding), last layer = final norm of the last block's output; Hiera: block "
              "(or stage) output maps",
    "mean": "block outputs, mean of the patch tokens",
    "cls": "block outputs, class token",
}

MIN_BATCH = 4  # HSIC_1 divides by n (n - 3) (n - 2) (n - 1)


def u_center(gram: torch.Tensor) -> torch.Tensor:
    """U-centre Gram matrices [..., n, n] (n >= 4): zero diagonal, unbiased row/column/grand means removed."""
    n = gram.shape[-1]
    if n < MIN_BATCH:
        raise ValueError(f"unbiased HSIC needs at least {MIN_BATCH} examples per batch, got {n}")
    g = gram.clone()
    g.diagonal(dim1=-2, dim2=-1).zero_()
    row = g.sum(dim=-1, keepdim=True) / (n - 2)
    col = g.sum(dim=-2, keepdim=True) / (n - 2)
    grand = g.sum(dim=(-2, -1), keepdim=True) / ((n - 1) * (n - 2))
    u = g - row - col + grand
    u.diagonal(dim1=-2, dim2=-1).zero_()
    return u


def _gram(feature: torch.Tensor) -> torch.Tensor:
    flat = feature.flatten(1).double()
    return flat @ flat.T


def _centred_grams(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Layer features, each [n, D_l] -> flattened U-centred linear Grams [layers, n * n] (float64; one
    layer's float64 copy at a time, token maps of a large batch are big)."""
    return u_center(torch.stack([_gram(f) for f in features])).flatten(1)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased linear CKA of two representations [n, C_x], [n, C_y] of the same n examples."""
    cka = MinibatchCKA([("x", "y")])
    cka.update({"x": [x], "y": [y]})
    return cka.result()[("x", "y")][0, 0]


class MinibatchCKA:
    """Accumulates the minibatch CKA of every layer pair for chosen pairs of models.

    ``update({model: [layer features [n, C] ...]})`` once per batch (same n images for all
    models), then ``result()`` gives ``{(a, b): [layers_a, layers_b]}`` CKA matrices.  A pair
    ``(a, a)`` compares a model's layers with each other.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = list(dict.fromkeys(tuple(p) for p in pairs))
        if not self.pairs:
            raise ValueError("MinibatchCKA needs at least one pair of models")
        self.models = list(dict.fromkeys(m for p in self.pairs for m in p))
        self.cross: dict[tuple[str, str], torch.Tensor] = {}
        self.self_terms: dict[str, torch.Tensor] = {}
        self.batches = 0
        self.examples = 0

    def update(self, features: Mapping[str, Sequence[torch.Tensor]]) -> None:
        missing = [m for m in self.models if m not in features]
        if missing:
            raise KeyError(f"features of {missing} missing from the batch")
        counts = {m: {f.shape[0] for f in features[m]} for m in self.models}
        n_values = set().union(*counts.values())
        if len(n_values) != 1:
            raise ValueError(f"every layer must see the same examples; batch sizes {counts}")
        n = n_values.pop()
        centred = {m: _centred_grams(features[m]) for m in self.models}
        scale = 1.0 / (n * (n - 3))
        for m, u in centred.items():
            term = (u * u).sum(dim=1) * scale
            self.self_terms[m] = self.self_terms.get(m, 0) + term
        for a, b in self.pairs:
            term = (centred[a] @ centred[b].T) * scale
            self.cross[(a, b)] = self.cross.get((a, b), 0) + term
        self.batches += 1
        self.examples += n

    def result(self) -> dict[tuple[str, str], torch.Tensor]:
        """CKA matrices [layers_a, layers_b] (float64, CPU); NaN where a layer is constant over the data."""
        if not self.batches:
            raise ValueError("no batch was accumulated")
        out = {}
        for a, b in self.pairs:
            denom = (self.self_terms[a][:, None] * self.self_terms[b][None, :]).sqrt()
            out[(a, b)] = torch.where(denom > 0, self.cross[(a, b)] / denom, torch.nan).cpu()
        return out


@torch.inference_mode()
def cka_summary(models: Mapping[str, nn.Module], batches: Iterable[ImageBatch], pairs: Sequence[tuple[str, str]],
                pool: Pool = "tokens", hiera_layers: HieraLayers = "blocks", total: int | None = None,
                progress: bool = True) -> dict:
    """Minibatch CKA of every layer pair of each model pair over the images of ``batches``.

    Batches with fewer than 4 decodable images are left out (counted in ``images_left_out``).
    ``pool``: the layer representations (:func:`analysis.models.layer_features`).
    Returns ``{"pairs": [{"a", "b", "layers_a", "layers_b", "matrix"}], "images", "batches", ...}``.
    """
    cka = MinibatchCKA(pairs)
    used = {m: models[m] for m in cka.models}
    left_out = 0
    bar = progress_bar(total=total, unit="img", desc="cka", enabled=progress)
    for batch in batches:
        n = len(batch.indices)
        if n >= MIN_BATCH:
            features = {}
            for name, model in used.items():
                x = batch.images[input_size(model)].to(next(model.parameters()).device)
                features[name] = layer_features(model, x, pool, hiera_layers)
            cka.update(features)
        else:
            left_out += n
        bar.update(n + len(batch.skipped))
    bar.close()
    if not cka.batches:
        raise ValueError(f"no batch had {MIN_BATCH} or more decodable images: minibatch CKA needs at least "
                         f"{MIN_BATCH} images per batch")
    matrices = cka.result()
    return {
        "estimator": "minibatch linear CKA with unbiased HSIC_1 (Nguyen et al. 2021)",
        "pool": pool, "representation": REPRESENTATIONS[pool], "images": cka.examples, "batches": cka.batches,
        "images_left_out": left_out,
        "pairs": [{"a": a, "b": b, "layers_a": layer_names(models[a], hiera_layers, pool),
                   "layers_b": layer_names(models[b], hiera_layers, pool),
                   "matrix": [[None if v != v else v for v in row] for row in matrices[(a, b)].tolist()]}
                  for a, b in cka.pairs],
    }
