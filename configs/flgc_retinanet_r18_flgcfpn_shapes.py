# FLGC RetinaNet-R18 on the shapes data with an FLGC FPN:
# configs/flgc_retinanet_r18_shapes.py with the FPN's 3x3 output convs as
# FLGC convs (8 learnt groups, image-independent; deploy to ragged convs).
_base_ = './flgc_retinanet_r18_shapes.py'

model = dict(neck=dict(type='mmlgc.FLGCFPN', num_groups=8))
