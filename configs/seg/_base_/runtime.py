"""Runtime shared by every seg config: our modules through custom_imports (the repository
root must be importable: tools/seg_train.py / tools/seg_test.py put it on PYTHONPATH, and an
editable install of the project does too), logging, visualiser, seed."""
custom_imports = dict(imports=['seg'], allow_failed_imports=False)
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
