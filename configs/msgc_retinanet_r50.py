# MSGC RetinaNet-R50-FPN, COCO 1x (docs/msgc.md): mmdet's recipe with the
# MSGC ResNet-50 (4 heads, no attention), MAC budget annealed to 0.457 of the
# dense backbone, initialised from the MSGC ImageNet pretraining
# (configs/pretrain/msgc_resnet50_8xb32_in1k.py).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/msgc_resnet50_8xb32_in1k/epoch_120.pth'

model = dict(
    backbone=dict(
        type='mmlgc.MSGCResNet',
        heads=4,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=0.457)]
# The MSGC recipe: no weight decay on the mask generators.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'mask_generator': dict(decay_mult=0.)}))

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
train_cfg = dict(type='mmlgc.ExactResumeEpochBasedTrainLoop')
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
