"""Frozen compilation of inference-only modules (the tracker's per-frame step, a distillation teacher).

``compile_frozen(module)`` returns a callable running ``module`` as a ``torch.compile`` graph in
which inductor treats the weights as constants ("freezing"): linear and conv weights are prepacked
once for oneDNN / MKL with bias and activation fused, and the elementwise work between them is
fused. Only for modules whose weights no longer change: a later change of the weights is not seen.
"""
from __future__ import annotations

import itertools
import types
from typing import Any, Callable

import torch
import torch._inductor.config
import torch.nn as nn

__all__ = ["compile_frozen"]

_OWN_CODE = itertools.count()


def _with_own_forward_code(module: nn.Module) -> nn.Module:
    """Give ``module`` a forward with a code object of its own.

    dynamo keeps compiled graphs per code object, and ``compile_frozen`` skips the guards on module
    attributes that would tell two instances of one class apart: without this, a second compiled
    instance (other weights, other precision) would replay the first one's frozen graph.
    """
    if "forward" in module.__dict__:  # given before (compiled again for another shape)
        return module
    function = type(module).forward
    code = function.__code__.replace(co_name=f"{function.__code__.co_name}_{next(_OWN_CODE)}")
    own = types.FunctionType(code, function.__globals__, code.co_name, function.__defaults__, function.__closure__)
    module.forward = types.MethodType(own, module)
    return module


def compile_frozen(module: nn.Module, max_autotune: bool = False) -> Callable[..., Any]:
    """``module`` compiled with frozen weights and static shapes; the graph is built at the first call.

    Freezing is switched on around every call through inductor's config: torch 2.14 does not apply
    ``torch.compile(options={"freezing": True})`` (the graph keeps unpacked ``aten::addmm``).
    Guards on the module's attributes are skipped (the module is frozen), so every call gives the
    module a forward code object of its own: two instances of a class with its own ``forward`` never
    share a graph (a bare torch layer such as ``nn.Linear`` is traced through torch's shared code: wrap
    it in a module of your own). ``max_autotune`` lets
    inductor time its own GEMM kernels against the library ones (longer to compile).
    """
    compiled = torch.compile(_with_own_forward_code(module), dynamic=False, options={
        "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe, "max_autotune": max_autotune})

    def run(*args: Any) -> Any:
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args)

    return run
