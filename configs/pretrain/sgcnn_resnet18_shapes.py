# SG-CNN ResNet-18 on the shapes classification split: group the dense
# shapes classifier (configs/pretrain/resnet18_shapes.py, backbone and FC)
# progressively to Conv-60/FC-60, short: steps of 20% (20, 40, 60%) every 40
# iterations with local fine-tuning in between, then global fine-tuning for
# the rest of two epochs. The dense run's AdamW at a tenth of its lr (the
# reference's SGD recipe, lr 0.01 with steps at 30/60 epochs, is ImageNet's:
# ./sgcnn_resnet50_8xb32_in1k.py).
_base_ = './resnet18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
dense = 'work_dirs/resnet18_shapes/epoch_2.pth'
max_epochs = 2

model = dict(
    backbone=dict(
        type='mmlgc.SGCNNResNet',
        norm_eval=False,  # mmdet's ResNet default (True) freezes BN stats
        init_cfg=dict(type='Pretrained', checkpoint=dense,
                      prefix='backbone.')),
    head=dict(
        type='mmlgc.SelfGroupedLinearClsHead',
        init_cfg=dict(type='Pretrained', checkpoint=dense, prefix='head.')))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = [
    dict(type='mmlgc.SelfGroupingHook', conv_ratio=0.6, fc_ratio=0.6,
         step=0.2, groups=16, scheme='local_global', interval=40,
         by_epoch=False)
]
