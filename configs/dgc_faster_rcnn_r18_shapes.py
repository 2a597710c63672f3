# DGC Faster R-CNN-R18 on the shapes data: the dense baseline
# (faster_rcnn_r18_shapes.py) with the DGC ResNet-18 pretrained by
# configs/pretrain/dgc_resnet18_shapes.py; k fixed at its final value,
# pre-activation BNs with batch statistics (see dgc_faster_rcnn_r18.py).
_base_ = './faster_rcnn_r18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/dgc_resnet18_shapes/epoch_2.pth'

model = dict(
    backbone=dict(
        type='mmlgc.DGCResNet',
        heads=4,
        keep=0.45,
        dgc_norm_eval=False,
        init_cfg=dict(checkpoint=pretrained)))
custom_hooks = [
    dict(type='mmlgc.DGCScheduleHook', ramp_begin=0., ramp_end=0.)
]
