# A short schedule for the shapes detectors, counted in epochs over the
# default 1000 training images (125 iterations per epoch at batch 8).
max_epochs = 6
# mmlgc's loop: a mid-epoch checkpoint resumes exactly (docs/reliability.md).
train_cfg = dict(type='mmlgc.ExactResumeEpochBasedTrainLoop',
                 max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
# AdamW: on this budget (750 iterations) it reached 10x the mAP of SGD
# (RetinaNet from scratch, 2 epochs: 0.049 vs 0.005 bbox mAP).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=8)
