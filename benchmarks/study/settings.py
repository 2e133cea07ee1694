"""What the study runs: its recipes, downstream tasks and data scales, sizes, seeds, budgets.

Everything the study compares is an entry of a table here, with its config:

* :data:`RECIPES`: how the backbone's encoder is obtained. A recipe with a ``config`` is one run of
  ``pretrain.engine.run`` on the photo set that ends with ``backbone.pth`` in its folder
  (pre-training exports; a supervised recipe fine-tunes from scratch on the photo labels and exports
  its encoder); ``teacher=True`` hands it the study teacher's export as ``distill.teacher_ckpt``.
  Adding a recipe is adding an entry; one whose config is not in the tree yet is listed as not run.
* :data:`DOWNSTREAM`: what is trained on each encoder for classification (linear probe, short
  fine-tune), each a ``pretrain.engine`` config; :data:`SCALES`: how much of the training data
  it sees (all of it, or the class-stratified fraction ``data.subset`` keeps).
* segmentation (UperNet through mmseg's runner) and tracking on every recipe, one seed each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "study"
DEMO_DATA = REPO / "benchmarks" / "demo_data"
TEACHER_CONFIG = CONFIGS / "pretrain" / "mae_vit_small-d4_teacher_photos-64px.py"
PROBE_CONFIG = CONFIGS / "linprobe_vit_tiny-d4_photos-64px.py"
FINETUNE_CONFIG = CONFIGS / "finetune_vit_tiny-d4_photos-64px.py"
SEG_CONFIG = CONFIGS / "seg" / "upernet_vit-tiny-d4_photos-64x64.py"
TRACK_CONFIG = CONFIGS / "track" / "vit_tiny-d4_probe_photos.py"  # the tracking probe: frozen backbone
BACKBONE = dict(arch="vit_tiny", depth=4, img_size=64)  # what every recipe trains and every task starts from


@dataclass(frozen=True)
class Recipe:
    """One way of obtaining the encoder.

    Attributes:
        name: folder-safe key (``mae``); stages are named after it.
        label: the row name in every table.
        config: the ``pretrain.engine`` config whose run writes ``backbone.pth``; None = random init.
        teacher: distillation: the run gets the study teacher's export as ``distill.teacher_ckpt``.
        estimate_s: expected seconds of the run on a quiet 2-core CPU (the progress bar's ETA).
        family: ``mim`` (masked image modelling), ``contrastive``, ``supervised`` or ``none``: the
            groups the paper's claims compare.
    """

    name: str
    label: str
    config: Path | None = None
    teacher: bool = False
    estimate_s: float = 0.0
    family: str = "mim"

    def available(self) -> bool:
        return not self.missing()

    def missing(self) -> str:
        """Why the recipe cannot run in this tree ('' when it can): its config is absent, or the
        pre-training model it names is not registered (a recipe whose code is still on its way)."""
        if self.config is None:
            return ""
        shown = self.config.relative_to(REPO) if self.config.is_relative_to(REPO) else self.config
        if not self.config.is_file():
            return f"`{shown}` not in the tree yet"
        from mmengine.config import Config

        from pretrain import list_pretrain_models

        try:
            cfg = Config.fromfile(str(self.config))
        except FileNotFoundError as e:  # a _base_ config of code still on its way
            return f"`{shown}` reads a config not in the tree yet ({Path(e.filename).name})"
        name = cfg.get("model", {}).get("name") if cfg.get("task", "pretrain") == "pretrain" else None
        if name is not None and name not in list_pretrain_models():
            return f"its model `{name}` is not registered in pretrain/ yet"
        return ""


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("none", "none (random init)", family="none"),
    Recipe("supervised", "supervised", CONFIGS / "pretrain" / "supervised_vit_tiny-d4_photos-64px.py", estimate_s=12,
           family="supervised"),
    Recipe("mocov3", "MoCo-v3", CONFIGS / "pretrain" / "mocov3_vit_tiny-d4_photos-64px.py", estimate_s=11,
           family="contrastive"),
    Recipe("mae", "MAE", CONFIGS / "pretrain" / "mae_vit_tiny-d4_photos-64px.py", estimate_s=12),
    Recipe("dmae", "D-MAE", CONFIGS / "pretrain" / "dmae_vit_tiny-d4_photos-64px.py", teacher=True, estimate_s=20),
    Recipe("d2mae", "D²-MAE", CONFIGS / "pretrain" / "d2mae_vit_tiny-d4_photos-64px.py", teacher=True,
           estimate_s=20),
)}
# The layer-CKA pairs the paper shows (recipe names): MAE against the contrastive, the supervised and
# the distilled model.
CKA_PAIRS = (("mae", "mocov3"), ("mae", "supervised"), ("mae", "d2mae"))
TEACHER = Recipe("teacher", "MAE teacher (ViT-Small width, 4 blocks)", TEACHER_CONFIG, estimate_s=35)


@dataclass(frozen=True)
class Downstream:
    """A classification task trained on each encoder (``pretrain.engine`` config, ``top1`` out)."""

    name: str
    label: str
    config: Path
    estimate_s: float


DOWNSTREAM: dict[str, Downstream] = {d.name: d for d in (
    Downstream("probe", "linear probe", PROBE_CONFIG, 4),
    Downstream("finetune", "fine-tune", FINETUNE_CONFIG, 5),  # 3.8 s measured on a loaded 2-core Xeon
)}


@dataclass(frozen=True)
class DataScale:
    """How much of a downstream task's training split it trains on (options merged into its config)."""

    name: str
    label: str
    options: Mapping[str, Any]
    cost: float  # share of the full scale's time (the ETA)


SCALES: dict[str, DataScale] = {s.name: s for s in (
    DataScale("all", "all training images", {}, 1.0),
    # 10% of the probe split is 45 images: batches of 16, as the loader drops an incomplete last batch
    DataScale("10pct", "10% of the training images (class-stratified, fixed subset)",
              {"data.subset": {"fraction": 0.1, "seed": 0}, "data.batch_size": 16}, 0.25),
)}


def available_recipes() -> tuple[str, ...]:
    """The recipes whose config is in the tree, in :data:`RECIPES` order."""
    return tuple(name for name, recipe in RECIPES.items() if recipe.available())


@dataclass(frozen=True)
class StudySettings:
    """What the embedded study runs.

    ``options`` holds config overrides per kind of run (mmengine ``--cfg-options`` style, applied
    on top of ``configs/study``): ``pretrain`` (every recipe and the teacher), one per
    :data:`DOWNSTREAM` name, ``seg``, ``track``. ``estimates`` are seconds on a quiet 2-core AVX2
    CPU for the stages that are not a recipe or a downstream task (the progress bar's ETA);
    ``speed`` scales every estimate (a shortened run).
    """

    recipes: tuple[str, ...] = field(default_factory=available_recipes)
    downstream: tuple[str, ...] = tuple(DOWNSTREAM)
    scales: tuple[str, ...] = ("all", "10pct")
    seeds: tuple[int, ...] = (0, 1, 2)
    photos: Mapping[str, Any] = field(default_factory=lambda: dict(
        per_class=128, probe_per_class=32, val_per_class=20, size=80, seed=0))
    ade20k: Mapping[str, Any] = field(default_factory=lambda: dict(
        num_train=96, num_val=24, size=(128, 96), seed=0))
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    estimates: Mapping[str, float] = field(default_factory=lambda: dict(
        photos=2, ade20k=1, lasot=2, seg=22, track_train=25, track_test=6, sizes=8))
    speed: float = 1.0
    title: str = "embedded study"

    def check(self) -> None:
        """Every name is known and every chosen recipe's config exists, before any work."""
        for what, chosen, known in (("recipe", self.recipes, RECIPES), ("downstream task", self.downstream, DOWNSTREAM),
                                    ("data scale", self.scales, SCALES)):
            unknown = [n for n in chosen if n not in known]
            if unknown:
                raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
        missing = [f"{r} ({RECIPES[r].missing()})" for r in self.recipes
                   if not RECIPES[r].available()]
        if missing:
            raise FileNotFoundError(f"recipe(s) that cannot run: {', '.join(missing)}")
        if not self.seeds:
            raise ValueError("seeds: at least one")

    def options_for(self, kind: str) -> dict[str, Any]:
        return dict(self.options.get(kind, {}))

    def estimate(self, kind: str) -> float:
        return self.speed * self.estimates[kind]


_SHORT_RUN = {"schedule.epochs": 1, "schedule.warmup_epochs": 0, "runtime.eval_every": 1}

# One recipe, a few steps each: the same code end to end in about a minute (tests, --study-scale smoke).
SMOKE = StudySettings(
    recipes=("mae",),
    seeds=(0,),
    photos=dict(per_class=8, probe_per_class=2, val_per_class=1, size=72, seed=0),
    ade20k=dict(num_train=4, num_val=2, size=(96, 72), seed=0),
    options={
        "pretrain": {"schedule.epochs": 1, "schedule.warmup_epochs": 0, "data.batch_size": 16,
                     "runtime.log_interval": 1, "runtime.checkpoint_interval": None},
        "probe": {**_SHORT_RUN, "data.batch_size": 14},
        "finetune": {**_SHORT_RUN, "data.batch_size": 14},
        "seg": {"train_cfg.max_iters": 2, "train_cfg.val_interval": 2, "train_dataloader.batch_size": 2,
                "default_hooks.checkpoint.interval": 2, "default_hooks.logger.interval": 1},
        "track": {"train.epochs": 1, "train.batch_size": 8, "data.samples_per_epoch": 16, "data.num_workers": 0,
                  "runtime.log_interval": 1, "data.generate.seqs_per_class": 2, "data.generate.test_per_class": 1,
                  "data.generate.num_frames": 6, "data.generate.size": (96, 72),
                  "data.generate.classes": ["astronaut", "brick", "coffee", "rocket"]},
    },
    estimates=dict(photos=1, ade20k=1, lasot=1, seg=15, track_train=4, track_test=3, sizes=6),
    speed=0.25,
    title="smoke run of the study (one recipe, a few steps: checks the pipeline, measures nothing)",
)

# Published figures (PROTOCOLS.md: MAE-Lite's papers and code), never mixed with ours.
# (model, ImageNet-1k fine-tune top-1, ADE20K mIoU (Semantic FPN, 160k), LaSOT AUC (OSTrack-CE))
PUBLISHED = [
    ("DeiT-Tiny (supervised ImageNet init)", "75.8", "38.0", "64.1"),
    ("MAE-Tiny", "78.0", "-", "-"),
    ("D-MAE-Tiny", "78.4", "-", "65.8"),
    ("D²-MAE-Tiny", "78.7", "39.0", "66.1"),
    ("DeiT-Tiny + RPE, fine-tuned", "-", "41.5", "-"),
    ("D²-MAE-Tiny + RPE, ImageNet fine-tuned (1000 ep)", "79.4", "42.8", "-"),
]


@dataclass
class GivenResults:
    """Results of real runs to tabulate instead of the embedded study (names -> paths)."""

    imagenet_results: dict[str, Path] = field(default_factory=dict)
    ade20k_results: dict[str, Path] = field(default_factory=dict)
    ade20k_annos: Path | None = None
    lasot_results: dict[str, Path] = field(default_factory=dict)
    lasot_annos: Path | None = None
    backbones: dict[str, Path] = field(default_factory=dict)

    def any(self) -> bool:
        return bool(self.imagenet_results or self.ade20k_results or self.lasot_results or self.backbones)

    def check(self) -> None:
        """Every path exists and every result kind has its annotations, before any work."""
        for option, entries in (("--imagenet-results", self.imagenet_results),
                                ("--ade20k-results", self.ade20k_results),
                                ("--lasot-results", self.lasot_results), ("--backbone", self.backbones)):
            for name, path in entries.items():
                if not Path(path).exists():
                    raise FileNotFoundError(f"{option} {name}={path}: not found")
        if self.ade20k_results and self.ade20k_annos is None:
            raise ValueError("--ade20k-results needs the ADE20K annotations: --ade20k ROOT (the "
                             "ADEChallengeData2016 folder or its annotations/validation)")
        if self.lasot_results and self.lasot_annos is None:
            raise ValueError("--lasot-results needs the LaSOT annotations: --lasot-annos DIR "
                             "(a LaSOT root or the toolkit's annos/), or LITEVIT_LASOT_ANNOS")
        for option, path in (("--ade20k", self.ade20k_annos), ("--lasot-annos", self.lasot_annos)):
            if path is not None and not Path(path).is_dir():
                raise FileNotFoundError(f"{option} {path}: not a folder")
