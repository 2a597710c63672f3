# FLGC RetinaNet-R50 with an FLGC FPN, COCO 1x: configs/flgc_retinanet_r50.py
# with the FPN's 3x3 output convs (P3-P7) as FLGC convs (8 learnt groups).
_base_ = './flgc_retinanet_r50.py'

model = dict(neck=dict(type='mmlgc.FLGCFPN', num_groups=8))
