#!/usr/bin/env bash
# The full COCO 2017 results table, for a GPU machine: one command.
#   bash scripts/coco.sh            (extra arguments go to dvc exp run, e.g. --name coco-run1)
# Downloads COCO (20.4 GB, resumable), builds the shards (~22 GB), and trains every row with the
# SimpleBaseline schedule (140 epochs, lr x0.1 after 90 and 120, here with a 500-batch warm-up) and
# batch 32 with ImageNet backbones. See docs/pipeline.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
set_args=(-S data.source=coco2017 -S train.workers=8)
for m in resnet18 resnet18_fpn dilated resnet18_fpn_attn; do
  set_args+=(-S "models.$m.epochs=140" -S "models.$m.batch_size=32" -S "models.$m.warmup_iters=500")
  [ "$m" = dilated ] || set_args+=(-S "models.$m.pretrained=true")
done
dvc exp run "${set_args[@]}" "$@"
