"""The study's stages: what runs, in which order, and the content key of each (nothing runs here).

A stage's key is a digest of its resolved config and options, of the keys of the stages it reads
(data, the recipe's export), and of its code (:func:`benchmarks.stages.code_digest` of the driver
function it calls: that function's source and every project module it reaches). A change to a
config, an input or the code a stage runs gives it a new folder in the cache; the others are reused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..stages import Stage, StageRunner, code_digest, config_digest, digest
from . import data, drivers
from .settings import (DOWNSTREAM, RECIPES, REPO, SCALES, SEG_CONFIG, TEACHER, TRACK_CONFIG, Recipe,
                       StudySettings)


@dataclass
class StudyPlan:
    """The stages of the embedded study, in running order, and where each table reads from."""

    settings: StudySettings
    stages: list[Stage]
    data: dict[str, Stage]
    teacher: Stage | None
    backbones: dict[str, Stage | None]
    downstream: dict[str, dict[str, dict[str, list[Stage]]]]   # task -> scale -> recipe -> one stage a seed
    segs: dict[str, Stage]
    track_trains: dict[str, Stage]
    track_tests: dict[str, Stage]
    sizes: Stage


def names(*stages: Stage | None) -> tuple[str, ...]:
    """The names of the given stages (None: a recipe without a stage, random init)."""
    return tuple(s.name for s in stages if s is not None)


def study_stages(settings: StudySettings, cache: Path, threads: int) -> list[Stage]:
    """The study's stages planned on the cache folder ``cache`` (what a worker process of
    :meth:`benchmarks.stages.StageRunner.run_all` rebuilds)."""
    return plan_study(settings, StageRunner(cache, cache), threads).stages


def plan_study(settings: StudySettings, runner: StageRunner, threads: int = 2, code_root: Path = REPO) -> StudyPlan:
    """Build every stage with its content key. ``code_root`` is where the code digests read the
    project's source (the repository; a copy in tests)."""
    settings.check()

    def code(*entries: str | Callable) -> str:
        return code_digest(*entries, root=code_root)

    photos = Stage("data-photos", "generate the photo crops (ImageNet layout)",
                   digest("photos", dict(settings.photos), code(data.make_photos)), settings.estimate("photos"),
                   lambda work: data.make_photos(work, settings.photos))
    ade_settings = dict(settings.ade20k)
    ade20k = Stage("data-ade20k", "generate the photo composites (ADE20K layout)",
                   digest("ade20k", ade_settings, code(data.make_ade20k)), settings.estimate("ade20k"),
                   lambda work: data.make_ade20k(work, ade_settings))
    generate = data.lasot_generation(settings.options_for("track"))
    lasot = Stage("data-lasot", "generate the photo sequences (LaSOT layout)",
                  digest("lasot", generate, code(data.make_lasot)), settings.estimate("lasot"),
                  lambda work: data.make_lasot(work, generate))
    photos_root = runner.folder(photos) / "imagenet"
    ade_root = runner.folder(ade20k) / "ADEChallengeData2016"
    lasot_root = runner.folder(lasot) / "lasot"
    stages = [photos, ade20k, lasot]
    train_code = code(drivers.run_recipe, drivers.run_pretrain, drivers.train_records)

    pretrain_options = {"data.root": "<photos>", **settings.options_for("pretrain")}
    run_options = {**pretrain_options, "data.root": str(photos_root)}

    def recipe_stage(recipe: Recipe, label: str, inputs: list[Stage], options: dict[str, Any]) -> Stage:
        return Stage(f"pretrain-{recipe.name}", label,
                     digest(config_digest(recipe.config, pretrain_options), train_code, *[s.key for s in inputs]),
                     settings.speed * recipe.estimate_s,
                     lambda work: drivers.run_recipe(recipe.config, options, work), after=names(*inputs))

    teacher = None
    if any(RECIPES[r].teacher for r in settings.recipes):
        teacher = recipe_stage(TEACHER, f"pre-training of the {TEACHER.label}", [photos], run_options)
        stages.append(teacher)
    backbones: dict[str, Stage | None] = {}
    for name in settings.recipes:
        recipe = RECIPES[name]
        if recipe.config is None:
            backbones[name] = None
            continue
        options, inputs = dict(run_options), [photos]
        if recipe.teacher:
            options["distill.teacher_ckpt"] = str(runner.folder(teacher) / "backbone.pth")
            inputs.append(teacher)
        backbones[name] = recipe_stage(recipe, f"{recipe.label} pre-training of the 4-block ViT-Tiny", inputs,
                                       options)
        stages.append(backbones[name])

    def export_of(recipe: str) -> Path | None:
        stage = backbones[recipe]
        return None if stage is None else runner.folder(stage) / "backbone.pth"

    def key_of(recipe: str) -> str:
        stage = backbones[recipe]
        return "random-init" if stage is None else stage.key

    downstream: dict[str, dict[str, dict[str, list[Stage]]]] = {}
    for task_name in settings.downstream:  # the cheapest complete tables first
        task = DOWNSTREAM[task_name]
        downstream[task_name] = {}
        for scale_name in settings.scales:
            scale = SCALES[scale_name]
            base = {**scale.options, **settings.options_for(task_name)}  # the run's own options win
            key = config_digest(task.config, {"data.root": "<photos>", **base})
            per_recipe = downstream[task_name][scale_name] = {}
            for recipe in settings.recipes:
                per_recipe[recipe] = []
                for seed in settings.seeds:
                    options = {**base, "data.root": str(photos_root), "runtime.seed": seed}
                    if export_of(recipe) is not None:
                        options["model.pretrained"] = str(export_of(recipe))
                    stage = Stage(f"{task_name}-{recipe}-{scale_name}-seed{seed}",
                                  f"{task.label} of {RECIPES[recipe].label} ({scale.label}), seed {seed}",
                                  digest(key, seed, key_of(recipe), photos.key, train_code),
                                  settings.speed * task.estimate_s * scale.cost,
                                  lambda work, c=task.config, o=options: drivers.run_pretrain(c, o, work),
                                  after=names(photos, backbones[recipe]))
                    per_recipe[recipe].append(stage)
                    stages.append(stage)

    seg_key = digest(config_digest(SEG_CONFIG, settings.options_for("seg")), code(drivers.run_seg_train, "seg"))
    track_key = digest(config_digest(TRACK_CONFIG, settings.options_for("track")),
                       code(drivers.run_track_train, drivers.track_config))
    test_code = code(drivers.run_track_test)
    segs, trains, tests = {}, {}, {}
    for recipe in settings.recipes:
        label = RECIPES[recipe].label
        segs[recipe] = Stage(
            f"seg-{recipe}", f"UperNet (mmseg runner) from {label}", digest(seg_key, key_of(recipe), ade20k.key),
            settings.estimate("seg"),
            lambda work, r=recipe: drivers.run_seg_train(settings.options_for("seg"), export_of(r), ade_root, work,
                                                         threads), after=names(ade20k, backbones[recipe]))
        trains[recipe] = Stage(
            f"track-train-{recipe}", f"tracker training from {label}", digest(track_key, key_of(recipe), lasot.key),
            settings.estimate("track_train"),
            lambda work, r=recipe: drivers.run_track_train(settings.options_for("track"), export_of(r), lasot_root,
                                                           work, threads), after=names(lasot, backbones[recipe]))
        tests[recipe] = Stage(
            f"track-test-{recipe}", f"tracking the test sequences from {label}",
            digest(trains[recipe].key, lasot.key, config_digest(TRACK_CONFIG), test_code),
            settings.estimate("track_test"),
            lambda work, r=recipe: drivers.run_track_test(runner.folder(trains[r]) / "tracker_final.pth", lasot_root,
                                                          work, threads), after=names(lasot, trains[recipe]))
    stages += list(segs.values())
    for recipe in settings.recipes:
        stages += [trains[recipe], tests[recipe]]
    sizes = Stage("sizes", "parameters and FLOPs of the study's models",
                  digest(config_digest(SEG_CONFIG), config_digest(TRACK_CONFIG), code(drivers.model_sizes,
                                                                                      drivers.track_config)),
                  settings.estimate("sizes"), lambda work: drivers.model_sizes(threads))
    stages.append(sizes)
    return StudyPlan(settings, stages, {"photos": photos, "ade20k": ade20k, "lasot": lasot}, teacher, backbones,
                     downstream, segs, trains, tests, sizes)
