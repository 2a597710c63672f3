# DGC-G ResNet-18 on ImageNet: the global-threshold variant the DGC paper
# reports but never released (our design, mmlgc.layers.GlobalThreshold): one
# network-wide saliency threshold instead of k per head, re-estimated over
# the last 100 iterations of every epoch so that on average the scheduled
# fraction (55% at the end) of the DGC convs' MACs is pruned; heads and
# layers keep uneven numbers of channels. Otherwise the recipe of
# ./dgc_resnet18_8xb32_in1k.py.
_base_ = './dgc_resnet18_8xb32_in1k.py'

model = dict(backbone=dict(mode='global'))
custom_hooks = [
    dict(type='mmlgc.DGCScheduleHook', collect_iters=100, weighting='macs')
]
