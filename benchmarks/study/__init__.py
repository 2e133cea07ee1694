"""The study behind the project: what each pre-training recipe of one backbone does downstream.

For each recipe of the backbone (:data:`settings.RECIPES`: none = random init, supervised, MoCo-v3,
MAE, D-MAE, D²-MAE; those whose config is in the tree) the tables put the downstream results side
by side: classification (linear probe and short fine-tune top-1, with all of the training images
and, through ``data.subset``, a fraction of them; mean ± std over seeds), segmentation mIoU,
tracking AUC, with the models' sizes and speed, each table with the trivial baseline it has to beat
(majority class, most frequent class everywhere, a static box) and sentences computed from its
numbers. The published figures sit in their own labelled table.

**Embedded default** (no data given): one run of the whole job at toy scale on real photographs
(the sample photos scikit-image ships, :mod:`benchmarks.demo_data.photos`), every step through the
project's own paths and configs (``configs/study/``): generated data in the real layouts, each
recipe's run of ``pretrain.engine`` ending in ``backbone.pth``, then from each export and from
random init the probes and fine-tunes (``pretrain.engine``), UperNet through mmseg's runner
(``tools/seg_train.py``), the tracker (``track.train.train`` then ``track.runner.run_lasot``);
scored by :mod:`evaluation.miou` and :mod:`evaluation.lasot`. Every step is a cached
:class:`benchmarks.stages.Stage` keyed by its config, its inputs and its code, under
``$LITEVIT_CACHE/benchmark``, so a second run re-scores in seconds.

**Data given**: results of real runs are scored instead and nothing is generated or trained:
``imagenet_results`` (``metrics.json`` of ``tools/pretrain.py`` fine-tuning / probing runs),
``ade20k_results`` (prediction folders of ``tools/seg_test.py --out``) with the ADE20K
annotations, ``lasot_results`` (result folders of ``tools/track_test.py``) with the LaSOT
annotations, ``backbones`` (checkpoints, for the size table). A task with nothing given is left
out with a note.

Modules: :mod:`.settings` (recipes, downstream tasks, data scales, sizes; what a run is made of),
:mod:`.data` (data generation and the computed baselines), :mod:`.drivers` (the training and
testing calls), :mod:`.plan` (the stages and their keys), :mod:`.scoring` (statistics and the
sentences), :mod:`.findings` (the paper's claims against this run's numbers, each verdict computed),
:mod:`.tables` and :mod:`.plots` (the report's parts), :mod:`.run` (the section).
"""
from .plan import StudyPlan, plan_study
from .run import pending_estimate, report_section, run_embedded, run_given
from .settings import (DOWNSTREAM, RECIPES, SCALES, SMOKE, DataScale, Downstream, GivenResults, Recipe,
                       StudySettings, available_recipes)

__all__ = ["DOWNSTREAM", "RECIPES", "SCALES", "SMOKE", "DataScale", "Downstream", "GivenResults", "Recipe",
           "StudyPlan", "StudySettings", "available_recipes", "pending_estimate", "plan_study",
           "report_section", "run_embedded", "run_given"]
