# FLGC ResNet-18 on the shapes classification split: both 3x3 convs of every
# BasicBlock FLGC with G = 2 (0.54 of the dense backbone's MACs at 128²,
# near MSGC's and DGC's demo budgets), started, like them, from the dense
# backbone (configs/pretrain/resnet18_shapes.py: same parameter names, only
# the assignment logits start fresh, i.i.d. N(0, 1)). Its AdamW moves a
# parameter by about lr a step: the logits get 10x lr (and no weight decay)
# so that groups can move within the demo's few hundred iterations;
# FLGCAssignmentHook logs how many did.
_base_ = './resnet18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
dense = 'work_dirs/resnet18_shapes/epoch_2.pth'
max_epochs = 2

model = dict(
    backbone=dict(
        type='mmlgc.FLGCResNet',
        num_groups=2,
        norm_eval=False,  # mmdet's ResNet default (True) freezes BN stats
        init_cfg=dict(type='Pretrained', checkpoint=dense,
                      prefix='backbone.')))
optim_wrapper = dict(
    optimizer=dict(lr=5e-4),
    paramwise_cfg=dict(
        custom_keys={'group_logits': dict(lr_mult=10., decay_mult=0.)}))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = [dict(type='mmlgc.FLGCAssignmentHook')]
