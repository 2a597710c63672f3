# DGC Faster R-CNN-R50 with a DGC FPN, COCO 1x: configs/dgc_faster_rcnn_r50.py
# with the FPN's 3x3 output convs (P2-P5) as DGC convs (4 heads, keep 0.45).
_base_ = './dgc_faster_rcnn_r50.py'

model = dict(neck=dict(type='mmlgc.DGCFPN', heads=4, keep=0.45))
