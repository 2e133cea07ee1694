"""The shared evaluation of the project: mIoU as mmseg's IoUMetric computes it (:mod:`evaluation.miou`)
and the LaSOT success / precision protocol (:mod:`evaluation.lasot`)."""
