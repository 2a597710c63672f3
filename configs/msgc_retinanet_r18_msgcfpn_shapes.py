# MSGC RetinaNet-R18 on the shapes data with an MSGC FPN:
# configs/msgc_retinanet_r18_shapes.py with the FPN's 3x3 output convs as
# 4-group MSGC convs; the budget (0.5) covers backbone + neck.
_base_ = './msgc_retinanet_r18_shapes.py'

model = dict(neck=dict(type='mmlgc.MSGCFPN', heads=4))
