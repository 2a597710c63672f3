# MSGC Faster R-CNN-R50 with an MSGC FPN, COCO 1x:
# configs/msgc_faster_rcnn_r50.py with the FPN's 3x3 output convs (P2-P5) as
# 4-group MSGC convs whose masks come from their own level. The budget (τ_end
# 0.457) now covers backbone + neck.
_base_ = './msgc_faster_rcnn_r50.py'

model = dict(neck=dict(type='mmlgc.MSGCFPN', heads=4))
