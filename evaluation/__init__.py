"""The shared evaluation of the project, numpy only (matplotlib / Pillow for plots and label maps): no torch,
mmcv or mmseg, so results can be scored anywhere.

* :mod:`evaluation.miou` — aAcc / mIoU / mAcc of label-map folders, as mmseg's ``IoUMetric`` computes them;
* :mod:`evaluation.lasot` — the LaSOT one-pass protocol (success AUC, precision, normalised precision);
* :mod:`evaluation.baselines` — the static-box tracking baseline and paired per-sequence differences with it;
* :mod:`evaluation.boxes` — IoU of x, y, w, h boxes (the one implementation);
* :mod:`evaluation.annotations` — annotation text files (box rows, flags, sequence lists, LaSOT ground truth).

Results are written as standard JSON (NaN -> null) by :func:`fileio.atomic_write_json`.
"""
