"""Attention distillation during MAE pre-training (MAE-Lite's D-MAE / D²-MAE, Hiera distillation).

:class:`AttentionDistillation` owns a frozen teacher (always in eval mode, never trained, left out
of training checkpoints) and a 1x1 conv adapter over the head axis; given the student's
pre-softmax attention logits and the visible patches the student saw, it runs the teacher on the
*same* visible patches (same shuffle) up to the distilled block only, under ``torch.no_grad``,
and returns ``{"loss_attn": weight * MSE(adapter(student logits), teacher logits)}``.

:class:`DistilledMAE` puts an MAE student and the distillation together and returns a dict of
named loss terms plus their sum under ``"loss"``.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from backbones import CheckpointError, Hiera, VisionTransformer, build_backbone, compile_frozen, load_pretrained
from engine import autocast

from .mae import MaskedAutoencoderViT, embed_visible_patches
from .mae_hiera import MaskedAutoencoderHiera

__all__ = ["AttentionDistillation", "DistilledMAE", "build_teacher", "teacher_attention_logits",
           "RANDOM_TEACHER"]

RANDOM_TEACHER = "random"


def build_teacher(arch: str, ckpt: str | os.PathLike | None, img_size: int, allow_random: bool = False,
                  **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build a teacher backbone and load its official checkpoint with ``backbones.load_pretrained``.

    ``ckpt="random"`` (or ``allow_random=True`` with no file) keeps the random initialisation,
    meant for smoke runs and timing only; the returned info says so (``random_teacher``).
    A missing file or a checkpoint that leaves teacher weights unset is an error.
    """
    kwargs: dict[str, Any] = {"num_classes": 0, "img_size": img_size, **overrides}
    if arch.startswith("vit"):
        kwargs.setdefault("pos_embed", "sincos")
    elif arch.startswith("hiera"):
        kwargs.setdefault("q_pool", 2)  # the student's MAE pooling, so both end on the same tokens
    teacher = build_backbone(arch, **kwargs)
    random_teacher = ckpt is None or str(ckpt) == RANDOM_TEACHER
    if random_teacher:
        if not (allow_random or str(ckpt) == RANDOM_TEACHER):
            raise ValueError("distillation needs a teacher checkpoint: set distill.teacher_ckpt to the official "
                             "MAE ViT-B (or Hiera-B) file, or to 'random' for a smoke run")
        info = {"teacher_arch": arch, "teacher_ckpt": None, "random_teacher": True}
    else:
        path = os.fspath(ckpt)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher checkpoint not found: {path} (set distill.teacher_ckpt, "
                                    f"or 'random' for a smoke run)")
        result = load_pretrained(teacher, path)
        needed = [k for k in result.missing if not k.startswith(("head.", "norm.", "fc_norm."))]
        if needed:
            raise CheckpointError(f"{path}: teacher weights missing from the checkpoint: {needed[:8]}")
        info = {"teacher_arch": arch, "teacher_ckpt": path, "random_teacher": False,
                "teacher_load": str(result)}
    teacher.requires_grad_(False)
    return teacher.eval(), info


class AttentionDistillation(nn.Module):
    """Frozen teacher + head-axis adapter + MSE on pre-softmax attention logits.

    Args:
        teacher: a :class:`backbones.VisionTransformer` or :class:`backbones.Hiera`.
        student_heads: heads of the student block whose logits are distilled.
        teacher_block: index of the teacher block whose logits are the target.
        weight: loss weight (1.0).
        compile_teacher: run the teacher as a frozen ``torch.compile`` graph (see
            :meth:`_run_teacher`; same logits, ~1.1x (fp32) to 1.2x (bf16) faster D²-MAE steps on CPU).
    """

    def __init__(self, teacher: nn.Module, student_heads: int, teacher_block: int, weight: float = 1.0,
                 compile_teacher: bool = False) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher_block = teacher_block % len(teacher.blocks)
        blk = teacher.blocks[self.teacher_block]
        teacher_heads = blk.attn.num_heads if isinstance(teacher, VisionTransformer) else blk.attn.heads
        self.adapter = nn.Conv2d(student_heads, teacher_heads, kernel_size=1, bias=False)
        self.weight = weight
        self.teacher_compute_dtype: torch.dtype | None = None
        self.compile_teacher = compile_teacher
        self._drop_compiled_teacher()
        # Training checkpoints hold the adapter only: the teacher comes from its own file.
        self.register_state_dict_post_hook(self._drop_teacher_keys)
        self.register_load_state_dict_post_hook(self._teacher_keys_not_expected)

    def train(self, mode: bool = True) -> "AttentionDistillation":
        super().train(mode)
        self.teacher.eval()  # dropout / drop path of the teacher stay off
        return self

    @staticmethod
    def _drop_teacher_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + "teacher.")]:
            del state_dict[key]

    @staticmethod
    def _teacher_keys_not_expected(module: nn.Module, incompatible) -> None:
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if ".teacher." not in f".{k}"]

    def store_teacher_matmul_weights(self, dtype: torch.dtype) -> None:
        """Keep the teacher's linear / conv weights in ``dtype`` (bf16 or fp16 training).

        Autocast casts those weights to ``dtype`` before every use anyway, so the teacher computes
        exactly the same, without re-casting its ~86M parameters every step.  From then on the
        teacher always runs under autocast to ``dtype``.
        """
        for m in self.teacher.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.to(dtype)
        self.teacher_compute_dtype = dtype
        self._drop_compiled_teacher()

    def _drop_compiled_teacher(self) -> None:
        # a plain attribute, not a submodule: it holds the teacher's weights as frozen constants and
        # must neither enter state dicts nor outlive a change of the teacher's dtype or device
        object.__setattr__(self, "_compiled_teacher", None)

    def _apply(self, fn, *args, **kwargs):
        self._drop_compiled_teacher()
        return super()._apply(fn, *args, **kwargs)

    def _run_teacher(self, imgs: torch.Tensor, visible: torch.Tensor, patches: torch.Tensor | None) -> torch.Tensor:
        """The teacher's logits, from a frozen ``torch.compile`` graph when ``compile_teacher``.

        The teacher never trains, so inductor may treat its weights as constants ("freezing"):
        linear layers get prepacked weights with bias and GELU fused in, and the casts, layer
        norms and residual additions between them are fused. The graph is built at the first call
        (~10 s); if that fails (no C++ compiler, unsupported platform) the eager teacher is used,
        with a warning.
        """
        if not self.compile_teacher:
            return self._teacher_logits(imgs, visible, patches)
        if self._compiled_teacher is None:
            object.__setattr__(self, "_compiled_teacher",
                               compile_frozen(_TeacherLogits(self.teacher, self.teacher_block)))
        try:
            return self._compiled_teacher(imgs, visible, patches)
        except Exception as error:  # compiling is an optimisation: never fail a run because of it
            warnings.warn(f"compiling the teacher failed ({type(error).__name__}: {str(error)[:200]}); "
                          "running it eagerly", RuntimeWarning, stacklevel=2)
            self.compile_teacher = False
            self._drop_compiled_teacher()
            return self._teacher_logits(imgs, visible, patches)

    def teacher_logits(self, imgs: torch.Tensor, visible: torch.Tensor,
                       patches: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher logits for the visible patches the student saw (see :meth:`_teacher_logits`)."""
        with torch.no_grad(), autocast(imgs.device.type, self.teacher_compute_dtype):
            return self._run_teacher(imgs, visible, patches)

    def _teacher_logits(self, imgs: torch.Tensor, visible: torch.Tensor,
                        patches: torch.Tensor | None = None) -> torch.Tensor:
        return teacher_attention_logits(self.teacher, self.teacher_block, imgs, visible, patches)

    def forward(self, student_logits: torch.Tensor, imgs: torch.Tensor, visible: torch.Tensor,
                patches: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        target = self.teacher_logits(imgs, visible, patches)
        student = self.adapter(_squeeze_windows(student_logits))
        if student.shape != target.shape:
            raise ValueError(f"adapted student logits {list(student.shape)} do not match the teacher's "
                             f"{list(target.shape)}")
        return {"loss_attn": self.weight * F.mse_loss(student.float(), target.float())}


def teacher_attention_logits(teacher: nn.Module, block: int, imgs: torch.Tensor, visible: torch.Tensor,
                             patches: torch.Tensor | None = None) -> torch.Tensor:
    """Pre-softmax logits of teacher block ``block`` for the visible patches the student saw.

    ViT: ``visible`` = ids_keep [B, K] (shuffle order) -> [B, heads, 1 + K, 1 + K]; only the blocks
    up to ``block`` run, and of that block only norm1 and the q / k projections.
    Hiera: ``visible`` = kept mask units [B, units] -> [B, heads, N, N] (window axis squeezed).
    """
    if isinstance(teacher, VisionTransformer):
        x = embed_visible_patches(teacher, imgs, visible, patches)
        for blk in teacher.blocks[:block]:
            x = blk(x)
        blk = teacher.blocks[block]
        return blk.attn.logits(blk.norm1(x))
    if isinstance(teacher, Hiera):
        _, _, logits = teacher.forward_features_with_logits(imgs, visible, logits_from=(block,))
        return _squeeze_windows(logits[block])
    raise TypeError(f"unsupported teacher type {type(teacher).__name__}")


class _TeacherLogits(nn.Module):
    """``teacher_attention_logits`` as a module of its own: what ``torch.compile`` freezes."""

    def __init__(self, teacher: nn.Module, block: int) -> None:
        super().__init__()
        self.teacher, self.block = teacher, block

    def forward(self, imgs: torch.Tensor, visible: torch.Tensor, patches: torch.Tensor | None) -> torch.Tensor:
        return teacher_attention_logits(self.teacher, self.block, imgs, visible, patches)


def _squeeze_windows(logits: torch.Tensor) -> torch.Tensor:
    """Hiera global attention may carry a window axis of size 1: [B, H, 1, N, N] -> [B, H, N, N]."""
    if logits.ndim == 5:
        if logits.shape[2] != 1:
            raise ValueError(f"cannot distil windowed (mask-unit) attention logits {list(logits.shape)}")
        logits = logits[:, :, 0]
    return logits


class DistilledMAE(nn.Module):
    """An MAE student, optionally with attention distillation; ``forward`` returns loss terms.

    Args:
        student: :class:`MaskedAutoencoderViT` or :class:`MaskedAutoencoderHiera`.
        distill: :class:`AttentionDistillation` or None (plain MAE).
        student_block: student block whose logits are distilled; -1 = the last block, i.e. block 12
            for D-MAE, the attention-only 13th block for D²-MAE, block 12 (index 11) for Hiera-Tiny.
    """

    def __init__(self, student: nn.Module, distill: AttentionDistillation | None = None,
                 student_block: int = -1) -> None:
        super().__init__()
        self.student = student
        self.distill = distill
        self.student_block = student_block % len(student.blocks)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"student.{n}" for n in self.student.no_weight_decay()}

    def forward(self, imgs: torch.Tensor, labels: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits_from = (self.student_block,) if self.distill is not None else ()
        if isinstance(self.student, MaskedAutoencoderViT):
            patches = self.student.patchify(imgs)  # shared by the student's embedding, its target and the teacher
            out = self.student(imgs, noise, logits_from, patches=patches)
            visible = out.encoding.ids_keep
        elif isinstance(self.student, MaskedAutoencoderHiera):
            patches = None
            out = self.student(imgs, noise, logits_from)
            visible = out.encoding.keep
        else:
            raise TypeError(f"unsupported student type {type(self.student).__name__}")
        terms = {"loss_mae": out.loss}
        enc = out.encoding
        if self.distill is not None:
            terms.update(self.distill(enc.attn_logits[self.student_block], imgs, visible, patches))
        terms["loss"] = sum(terms.values())
        return terms
