# DGC RetinaNet-R50 with a DGC FPN, COCO 1x: configs/dgc_retinanet_r50.py with
# the FPN's 3x3 output convs (P3-P7) as DGC convs (4 heads, keep 0.45), k set
# by the same DGCScheduleHook and saliency L1 as the backbone's.
_base_ = './dgc_retinanet_r50.py'

model = dict(neck=dict(type='mmlgc.DGCFPN', heads=4, keep=0.45))
