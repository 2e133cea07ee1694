"""Frozen compilation of inference-only modules (the tracker's per-frame step, a distillation teacher).

``compile_frozen(module)`` returns a callable running ``module`` as a ``torch.compile`` graph in
which inductor treats the weights as constants ("freezing"): linear and conv weights are prepacked
once for oneDNN / MKL with bias and activation fused, and the elementwise work between them is
fused. Only for modules whose weights no longer change: a later change of the weights is not seen.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch._inductor.config
import torch.nn as nn

__all__ = ["compile_frozen"]


def compile_frozen(module: nn.Module, max_autotune: bool = False) -> Callable[..., Any]:
    """``module`` compiled with frozen weights and static shapes; the graph is built at the first call.

    Freezing is switched on around every call through inductor's config: torch 2.14 does not apply
    ``torch.compile(options={"freezing": True})`` (the graph keeps unpacked ``aten::addmm``).
    Guards on the module's attributes are skipped (the module is frozen). ``max_autotune`` lets
    inductor time its own GEMM kernels against the library ones (longer to compile).
    """
    compiled = torch.compile(module, dynamic=False, options={
        "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe, "max_autotune": max_autotune})

    def run(*args: Any) -> Any:
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args)

    return run
