# DGC RetinaNet-R18 on the shapes data with a DGC FPN:
# configs/dgc_retinanet_r18_shapes.py with the FPN's 3x3 output convs as DGC
# convs (4 heads, keep 0.45), pruned from the start like the backbone.
_base_ = './dgc_retinanet_r18_shapes.py'

model = dict(neck=dict(type='mmlgc.DGCFPN', heads=4, keep=0.45))
