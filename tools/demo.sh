#!/usr/bin/env bash
# The mmlgc demo on the bundled synthetic data, CPU only:
#   data -> pretrain ResNet-18 (mmpretrain) -> RetinaNet from that backbone
#   (mmdet) -> tools/test.py -> COCO bbox mAP.
# Run through `make demo`, which installs first. DETECTOR=faster_rcnn_r18_shapes
# swaps the detector; WORK_DIR moves the outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
WORK_DIR=${WORK_DIR:-work_dirs/demo}
DETECTOR=${DETECTOR:-retinanet_r18_shapes}
DATA=data/shapes

stamp() { date +%s; }
t0=$(stamp)

if [ ! -f "$DATA/det/annotations/instances_val.json" ] || [ ! -f "$DATA/cls/meta/val.txt" ]; then
  "$PYTHON" tools/data/make_shapes.py --out "$DATA"
fi
t_data=$(stamp)

"$PYTHON" tools/train.py configs/pretrain/resnet18_shapes.py \
  --work-dir "$WORK_DIR/resnet18_shapes"
backbone=$(cat "$WORK_DIR/resnet18_shapes/last_checkpoint")
t_pre=$(stamp)

"$PYTHON" tools/train.py "configs/$DETECTOR.py" --work-dir "$WORK_DIR/$DETECTOR" \
  --cfg-options model.backbone.init_cfg.checkpoint="$backbone"
detector=$(cat "$WORK_DIR/$DETECTOR/last_checkpoint")
t_det=$(stamp)

"$PYTHON" tools/test.py "configs/$DETECTOR.py" "$detector" \
  --work-dir "$WORK_DIR/$DETECTOR/test" | tee "$WORK_DIR/$DETECTOR/test.log"
t_test=$(stamp)

top1=$(grep -o 'accuracy/top1: [0-9.]*' "$WORK_DIR"/resnet18_shapes/*/*.log | tail -n 1 | cut -d' ' -f2)
map=$(grep -o 'coco/bbox_mAP: [0-9.]*' "$WORK_DIR/$DETECTOR/test.log" | tail -n 1 | cut -d' ' -f2)
map50=$(grep -o 'coco/bbox_mAP_50: [0-9.]*' "$WORK_DIR/$DETECTOR/test.log" | tail -n 1 | cut -d' ' -f2)
cat <<SUMMARY

==================== mmlgc demo ====================
data          $((t_data - t0)) s
pretrain      $((t_pre - t_data)) s   top-1 ${top1}% (shapes val)
$DETECTOR  $((t_det - t_pre)) s
test          $((t_test - t_det)) s
total         $((t_test - t0)) s
COCO bbox mAP ${map}  (mAP@0.5 ${map50})
====================================================
SUMMARY
