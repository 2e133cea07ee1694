"""INT8 tracker step for the OpenVINO backend: NNCF post-training quantization, calibrated and cached.

The step the CPU runtimes run (template tokens and uint8 search crops in, box and peak out, dynamic
batch) is exported to ONNX, read by OpenVINO and quantized by NNCF (``nncf.quantize``, transformer
preset: symmetric weights, asymmetric activations, fast bias correction) on template/search pairs
cut from a few sequences:

* :func:`calibration_set`: pairs from a LaSOT-layout folder (the template from the first visible
  frame, each search region around the target's previous ground-truth box, as the tracker would
  cut it; ``LITEVIT_INT8_CALIBRATION`` when no folder is given, else an error). The set is identified by
  its file list and the SHA-256 of every file it read (or of every generated frame).
* :data:`KEEP_FLOAT`: groups of layers that may stay in floating point (NNCF's ignored scope);
  :data:`DEFAULT_KEEP` (the box heads) chosen by measurement (``benchmarks.track_speed --int8-scopes``).
* :func:`record_verdict` / :func:`measured_int8`: what ``--dtype auto`` reads. The speed benchmark's
  agreement mode writes, next to the cached model it measured, whether int8 kept the boxes (the
  agreement rule) and ran faster than every floating-point step timed beside it on this CPU;
  ``auto`` runs that cached model only when both hold for this CPU, these threads and this graph.
* :func:`quantized_step`: the quantized OpenVINO model, read from the cache when its key matches
  (checkpoint digest, exported graph digest, export settings, calibration digest, ignored scope,
  openvino and nncf versions)
  and re-quantized otherwise, with a warning naming what changed; never a model from another key.
  The cache lives under ``$LITEVIT_CACHE/track_int8/<checkpoint digest>/`` and is written atomically.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from fileio import atomic_dir, atomic_write_json

from .processing import crop_and_resize

__all__ = ["KEEP_FLOAT", "CalibrationSet", "any_verdict", "calibration_sequences", "calibration_set",
           "check_int8_packages", "cpu_identity", "default_cache_dir", "measured_int8", "quantized_step",
           "record_verdict", "weights_digest"]

RECIPE = 1   # bump when the quantization recipe below changes (invalidates every cached model)
# Groups of layers that may stay in floating point, as regular expressions over the node names of the
# exported graph (NNCF's ignored scope; names as OpenVINO reads the ONNX export):
# * heads_last: the last convolution of each head branch (its outputs are the score map, the box
#   offsets and sizes themselves); heads: every head convolution;
# * ce_scores: the candidate-elimination scores (the template centre's attention to the search
#   tokens, which decides the tokens kept) and the gathers / scatter of kept tokens;
# * attn_scores: every block's query-key product (the softmax's input).
KEEP_FLOAT: dict[str, tuple[str, ...]] = {
    "heads_last": (r".*/(score|offset|size)\.\d+/Conv/WithoutBiases$",),
    "heads": (r".*/(score|offset|size)[./].*Conv/WithoutBiases$", r"/Conv_\d+/WithoutBiases$"),
    "ce_scores": (r"/MatMul(_\d+)?$", r"/Gather_\d+$", r"/ScatterElements(_\d+)?$"),
    "attn_scores": (r".*/attn/MatMul$",),
}
# Measured (``--int8-scopes`` on a briefly trained ViT-Tiny tracker, 137 crops of the demo sequences,
# same-input box IoU against OpenVINO fp32): nothing kept float 0.827 mean IoU (62% of crops below 0.9),
# heads_last 0.938 (15%), every head convolution 0.990 (0.7%, peak error 10x smaller); ce_scores and
# attn_scores change nothing measurable (0.827). So the heads stay float (bf16 where native).
# Speed (2-core AMX Xeon, ViT-Tiny step, OpenVINO profile): the transformer preset already quantizes the
# query-key product (both inputs), which OpenVINO fuses with softmax and the value product into one int8
# attention subgraph (35% of the int8 step; the softmax, not the products, bounds it); keeping it float
# (attn_scores) ran within noise of it (33.6 vs 35.2 CPU-ms per frame), so it stays quantized.
DEFAULT_KEEP = ("heads",)
VERDICT_FILE = "verdict.json"
_KEY_FIELDS = ("weights", "graph", "export", "calibration", "ignored_scope", "openvino", "nncf", "recipe")


def check_int8_packages() -> None:
    """Raise ValueError naming what is missing when int8 cannot run (OpenVINO or NNCF not installed)."""
    missing = [name for name in ("openvino", "nncf") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"dtype='int8' needs {' and '.join(missing)} (pip install {' '.join(missing)}): "
                         "the step is quantized by NNCF and run by OpenVINO")


def default_cache_dir() -> Path:
    """``$LITEVIT_CACHE/track_int8`` (default ``~/.cache/litevit/track_int8``)."""
    return Path(os.environ.get("LITEVIT_CACHE", Path.home() / ".cache" / "litevit")) / "track_int8"


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and values): the checkpoint's identity."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CalibrationSet:
    """Template/search crop pairs (uint8 RGB) and what they were cut from.

    ``files``: (name, SHA-256 of the content) of every file read (or generated frame), the set's identity."""

    templates: list[np.ndarray] = field(repr=False)
    searches: list[np.ndarray] = field(repr=False)
    source: str
    files: list[tuple[str, str]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.searches)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.source, self.files]).encode()).hexdigest()


def _pairs_from_sequence(frames: Callable[[int], np.ndarray], boxes: np.ndarray, visible: np.ndarray, pairs: int,
                         sizes: tuple[int, int], factors: tuple[float, float]) -> tuple[list, list, list[int]]:
    """One template (first visible frame) and up to ``pairs`` search crops around the previous frame's
    box, on frames spread evenly over the visible ones; returns (templates, searches, frames read)."""
    shown = np.flatnonzero(visible)
    if len(shown) < 2:
        return [], [], []
    first = int(shown[0])
    later = shown[shown > first]
    picks = sorted({int(later[i]) for i in np.linspace(0, len(later) - 1, min(pairs, len(later))).round().astype(int)})
    template = crop_and_resize(frames(first), boxes[first], factors[0], sizes[0]).image
    searches = []
    for index in picks:
        previous = index - 1 if visible[index - 1] else index
        searches.append(crop_and_resize(frames(index), boxes[previous], factors[1], sizes[1]).image)
    return [template] * len(searches), searches, [first, *picks]


def calibration_sequences(root: str | Path | None) -> tuple[Path, list[str]]:
    """The calibration folder (``root``, else ``LITEVIT_INT8_CALIBRATION``) and its sequence names, checked
    before any work: raises FileNotFoundError / ValueError naming the folder when none is given, it is
    missing, or it holds no ``<class>/<class>-<id>/groundtruth.txt`` sequence."""
    from .datasets.lasot import list_sequences

    if root is None:
        root = os.environ.get("LITEVIT_INT8_CALIBRATION") or None
    if root is None:
        raise ValueError("int8 quantization needs calibration sequences: calibration=<LaSOT-layout folder> or the "
                         "LITEVIT_INT8_CALIBRATION environment variable (python tools/make_lasot_demo.py --out DIR "
                         "writes a small generated one)")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {root}")
    names = list_sequences(root)
    if not names:
        raise ValueError(f"calibration folder {root} holds no LaSOT-layout sequence: expected "
                         "<class>/<class>-<id>/groundtruth.txt with img/00000001.jpg ... beside it")
    return root, names


def calibration_set(root: str | Path | None, template_size: int, search_size: int, template_factor: float = 2.0,
                    search_factor: float = 4.0, sequences: int = 4, pairs_per_sequence: int = 8) -> CalibrationSet:
    """Calibration pairs from ``sequences`` sequences of a LaSOT-layout folder (spread over its sorted
    sequence list); ``root`` None reads the folder from ``LITEVIT_INT8_CALIBRATION``.

    Raises FileNotFoundError / ValueError naming the folder when it is missing, holds no
    ``<class>/<class>-<id>/groundtruth.txt`` sequence, or no sequence with two visible frames."""
    from .datasets.lasot import load_sequence, sequence_class

    sizes, factors = (template_size, search_size), (template_factor, search_factor)
    templates: list[np.ndarray] = []
    searches: list[np.ndarray] = []
    files: list[tuple[str, str]] = []
    root, names = calibration_sequences(root)
    chosen = [names[int(i)] for i in np.unique(np.linspace(0, len(names) - 1, min(sequences, len(names))).round())]
    for name in chosen:
        sequence = load_sequence(root / sequence_class(name) / name)
        t, s, used = _pairs_from_sequence(sequence.image, sequence.gt_boxes, sequence.visible, pairs_per_sequence,
                                          sizes, factors)
        templates += t
        searches += s
        folder = sequence.path.relative_to(root)
        files.append((str(folder / "groundtruth.txt"), _sha256_file(sequence.path / "groundtruth.txt")))
        files += [(str(folder / "img" / sequence.frames[i].name), _sha256_file(sequence.frames[i])) for i in used]
    if not searches:
        raise ValueError(f"calibration folder {root}: none of {', '.join(chosen)} has two frames with the target "
                         "visible, so no template/search pair can be cut")
    return CalibrationSet(templates, searches, str(root.resolve()), files)


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("openvino", "nncf")}


def _ignored_scope(keep: Sequence[str]) -> Any:
    import nncf

    unknown = [name for name in keep if name not in KEEP_FLOAT]
    if unknown:
        raise ValueError(f"int8 keep-float groups {unknown}: expected names from {list(KEEP_FLOAT)}")
    patterns = [pattern for name in keep for pattern in KEEP_FLOAT[name]]
    return nncf.IgnoredScope(patterns=patterns, validate=False) if patterns else nncf.IgnoredScope()


def quantize(graph: bytes, samples: Sequence[Mapping[str, np.ndarray]], keep: Sequence[str] = DEFAULT_KEEP) -> Any:
    """The ONNX step ``graph`` read by OpenVINO and quantized by NNCF on ``samples`` (input dicts)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(graph)
    return nncf.quantize(model, nncf.Dataset(list(samples)), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(samples), ignored_scope=_ignored_scope(keep))


def _stale_reason(found: Mapping[str, Any], key: Mapping[str, Any]) -> str | None:
    changed = [name for name in _KEY_FIELDS if found.get(name) != key[name]]
    if not changed:
        return None
    what = {"weights": "the checkpoint", "graph": "the exported graph (the tracker's code or the exporter)",
            "export": "the export settings", "calibration": "the calibration set",
            "ignored_scope": "the layers kept in floating point", "openvino": "the openvino version",
            "nncf": "the nncf version", "recipe": "the quantization recipe"}
    return ", ".join(f"{what[name]} ({found.get(name)!r} -> {key[name]!r})" if name in ("openvino", "nncf") else what[name]
                     for name in changed)


def quantized_step(graph: bytes, weights: str, export: Mapping[str, Any], calibration: CalibrationSet,
                   samples: Callable[[], Sequence[Mapping[str, np.ndarray]]], keep: Sequence[str] = DEFAULT_KEEP,
                   cache_dir: str | Path | None = None) -> tuple[Any, str]:
    """The int8 OpenVINO model of ``graph``; returns (model, where it came from: cache or quantized and why).

    ``weights``: :func:`weights_digest` of the checkpoint; ``export``: the settings that shape the graph;
    ``samples``: builds the calibration inputs (called only when quantizing). The cache slot is
    ``cache_dir/<weights[:16]>``; its ``key.json`` (which also holds the SHA-256 of ``graph``, so a change
    of the tracker's code re-quantizes) must equal this key in full, else the model is
    quantized again (a RuntimeWarning names what changed) and the slot replaced atomically."""
    import openvino as ov

    check_int8_packages()
    key = {"weights": weights, "graph": hashlib.sha256(graph).hexdigest(), "export": dict(export),
           "calibration": calibration.digest,
           "calibration_files": len(calibration.files), "ignored_scope": list(keep), **_versions(), "recipe": RECIPE}
    key = json.loads(json.dumps(key))
    slot = Path(cache_dir or default_cache_dir()) / weights[:16]
    found = None
    if (slot / "key.json").is_file():
        try:
            found = json.loads((slot / "key.json").read_text())
        except (OSError, ValueError) as error:
            warnings.warn(f"int8 cache {slot / 'key.json'} unreadable ({error}): quantizing again", RuntimeWarning,
                          stacklevel=2)
    if found is not None:
        reason = _stale_reason(found, key)
        if reason is None and (slot / "model.xml").is_file() and (slot / "model.bin").is_file():
            return ov.Core().read_model(slot / "model.xml"), f"int8 model from the cache {slot}"
        warnings.warn(f"int8 cache {slot} is stale ({reason + ' changed' if reason else 'its files are missing'}): "
                      "quantizing again", RuntimeWarning, stacklevel=2)
    model = quantize(graph, samples(), keep)
    with atomic_dir(slot) as temp:
        ov.save_model(model, temp / "model.xml", compress_to_fp16=False)
        (temp / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True))
    why = "re-quantized" if found is not None else "quantized"
    return model, f"int8 model {why} on {len(calibration)} pairs from {calibration.source}, cached in {slot}"


def cpu_identity() -> dict[str, Any]:
    """What a measured speed ranking holds for: the CPU's instruction-set flags (digest), oneDNN's ISA
    limit and torch's thread count (OpenVINO's threads follow it)."""
    from engine.precision import cpu_flags, onednn_isa_limit

    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16]
    return {"cpu_flags": flags, "isa_limit": onednn_isa_limit(), "threads": torch.get_num_threads()}


def record_verdict(weights: str, agreements: Sequence[Mapping[str, Any]], int8_fps: float,
                   float_fps: Mapping[str, float], cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Write ``verdict.json`` next to the cached int8 model of ``weights`` (which must be there: it is the
    model measured): ``usable`` when every agreement (``benchmarks.track_speed.agreement_from_boxes`` with
    ground truth) meets the rule, ``faster`` when ``int8_fps`` beats every ``float_fps`` (name -> frames/s
    timed in the same run), for :func:`cpu_identity`. A re-quantization replaces the slot, verdict included."""
    slot = Path(cache_dir or default_cache_dir()) / weights[:16]
    if not (slot / "key.json").is_file():
        raise FileNotFoundError(f"no int8 model cached in {slot}: measure with --dtype int8 first")
    missing = [a.get("source", "?") for a in agreements if "usable" not in a]
    if not agreements or missing:
        raise ValueError(f"an int8 verdict needs agreements against ground truth (none for {missing or 'any'})")
    best = max(float_fps, key=float_fps.get)
    verdict = {"key": json.loads((slot / "key.json").read_text()), "cpu": cpu_identity(),
               "usable": all(bool(a["usable"]) for a in agreements),
               "mean_iou_per_frame": min(float(a["mean_iou_per_frame"]) for a in agreements),
               "auc_diff_points": max((float(a["auc_diff_points"]) for a in agreements), key=abs),
               "int8_fps": float(int8_fps), "best_float": best, "best_float_fps": float(float_fps[best]),
               "faster": bool(int8_fps > float_fps[best])}
    atomic_write_json(slot / VERDICT_FILE, verdict)
    return verdict


def any_verdict(cache_dir: str | Path | None = None) -> bool:
    """Whether any cached int8 model has a verdict (a glob, so that ``auto`` skips hashing the checkpoint
    where nothing was ever measured)."""
    return any(Path(cache_dir or default_cache_dir()).glob(f"*/{VERDICT_FILE}"))


def measured_int8(graph: bytes, weights: str, export: Mapping[str, Any],
                  cache_dir: str | Path | None = None) -> tuple[Any, str] | None:
    """The cached int8 model for ``--dtype auto``, with a line saying why, or None: only when its verdict
    (:func:`record_verdict`) was measured on this CPU (:func:`cpu_identity`) for the model now in the slot,
    that model was quantized from this ``graph`` / ``weights`` / ``export`` with this OpenVINO, and it
    was both usable and faster."""
    slot = Path(cache_dir or default_cache_dir()) / weights[:16]
    try:
        key = json.loads((slot / "key.json").read_text())
        verdict = json.loads((slot / VERDICT_FILE).read_text())
    except (OSError, ValueError):
        return None
    import openvino as ov

    current = {"weights": weights, "graph": hashlib.sha256(graph).hexdigest(), "export": json.loads(json.dumps(export)),
               "openvino": importlib.metadata.version("openvino"), "recipe": RECIPE}
    if (verdict.get("key") != key or any(key.get(name) != value for name, value in current.items())
            or verdict.get("cpu") != cpu_identity() or not (verdict.get("usable") and verdict.get("faster"))
            or not (slot / "model.xml").is_file()):
        return None
    return ov.Core().read_model(slot / "model.xml"), (
        f"int8 chosen by --dtype auto: measured on this CPU at {verdict['int8_fps']:.1f} frames/s against "
        f"{verdict['best_float']} {verdict['best_float_fps']:.1f}, boxes kept (mean IoU "
        f"{verdict['mean_iou_per_frame']:.3f}, AUC {verdict['auc_diff_points']:+.2f} points); model {slot}")
