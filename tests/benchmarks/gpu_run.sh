#!/bin/bash
# One device-machine session of at most 8 minutes (BUDGET, seconds; see docs/demo-scale.md,
# docs/demo-claim.md, docs/benchmarks.md): BASE pretraining throughput and MFU of w2v and of
# Hugging Face on the same card (bf16; w2v also compiled and in fp32), the demo-scale spike
# grid, then the demo claim with the grid's best pretraining variant. Needs the packed corpora
# under .gpudata/ and the wheels under .whl/ (tests/benchmarks/corpus_transfer.py pack ...;
# for the HF side: `pip download --no-deps -d .whl transformers==<venv's version> tokenizers
# safetensors huggingface_hub regex` for the machine's Python). Results land in $OUT.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/w2v_gpu_out}
mkdir -p "$OUT"
START=$(date +%s)
left() { echo $(( ${BUDGET:-470} - ($(date +%s) - START) )); }
export PYTHONUNBUFFERED=1
if ! python3 -c "import soundfile, jiwer, transformers" 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
# w2v itself, importable without pip (the machine's own torch stays): a site folder holding
# the package layout as links and a dist-info with the entry points the plugins load through.
SITE=/tmp/w2v_site
rm -rf $SITE && mkdir -p $SITE/w2v $SITE/w2v-0.1.0.dist-info
for f in core/*; do ln -s "$PWD/$f" $SITE/w2v/; done
ln -s "$PWD/plugins" $SITE/w2v/plugins
printf 'Metadata-Version: 2.1\nName: w2v\nVersion: 0.1.0\n' > $SITE/w2v-0.1.0.dist-info/METADATA
python3 -c "
import tomllib
eps = tomllib.load(open('pyproject.toml', 'rb'))['project']['entry-points']['w2v']
print('[w2v]'); [print(k, '=', v) for k, v in eps.items()]" > $SITE/w2v-0.1.0.dist-info/entry_points.txt
export PYTHONPATH=$SITE:${PYTHONPATH:-}
[ -d .gpudata/demo ] && python3 tests/benchmarks/corpus_transfer.py relocate .gpudata/demo/*
export W2V_DEMO_CORPUS=$(ls -d $PWD/.gpudata/demo/*-u30-l10-s1)
export W2V_DEMO_CLAIM_CORPUS=$(ls -d $PWD/.gpudata/demo/*-u90-l1.8-e3-s1)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import torch, w2v; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/machine.txt"
python3 -m w2v.cli plugins 2>&1 | grep -v "^ " | tee -a "$OUT/machine.txt"

echo "== BASE throughput, w2v vs Hugging Face ($(left) s left)"
B=tests/benchmarks/bench_gpu_pretrain.py
{ timeout 75 python3 $B --updates 15
  if python3 -c "import transformers" 2>/dev/null; then timeout 75 python3 $B --side hf --updates 15
  else echo "HF side skipped: transformers is not importable (no wheels in .whl/)"; fi
  timeout 100 python3 $B --compile --updates 15
  timeout 45 python3 $B --precision fp32 --updates 5 --warmup 2; } \
  > "$OUT/base_throughput.txt" 2>&1
grep -E '"(side|compile|compile_error|precision|step_ms_median|audio_seconds_per_second|achieved_tflops|mfu|peak_memory_gib|compile_s_estimate)"|skipped|Error' \
  "$OUT/base_throughput.txt"

if [ ! -d .gpudata/demo ] || [ "$(left)" -lt 150 ]; then
  echo "demo grid and claim skipped ($(left) s left, corpora $( [ -d .gpudata/demo ] && echo present || echo absent))"
  echo "done in $(( $(date +%s) - START )) s"; exit 0
fi
echo "== spike grid ($(left) s left)"
G=${GRID_DEADLINE:-200}
[ "$G" -gt $(( $(left) - 60 )) ] && G=$(( $(left) - 60 ))   # leave the claim a minute
python3 tests/benchmarks/demo_scale.py --out runs/gpu/demo_scale --parallel ${GRID_PARALLEL:-17} \
  --deadline "$G" ${GRID_ARGS:-} > "$OUT/demo_scale.txt" 2>&1
tail -25 "$OUT/demo_scale.txt"
VARIANT=$(python3 -c "import json; print(json.load(open('runs/gpu/demo_scale/results.json'))['best_variant'] or 'demo')")
echo "best variant: $VARIANT"

echo "== claim ($(left) s left)"
C=$(( $(left) - 25 ))
python3 tests/benchmarks/demo_claim.py --out runs/gpu/demo_claim --parallel ${CLAIM_PARALLEL:-9} \
  --deadline "$C" --pretrain-variant "$VARIANT" ${CLAIM_ARGS:-} > "$OUT/demo_claim.txt" 2>&1
tail -30 "$OUT/demo_claim.txt"

cp runs/gpu/demo_scale/demo_scale.png "$OUT/" 2>/dev/null
tar czf "$OUT/runs.tgz" --exclude='*.pt' runs/gpu
echo "done in $(( $(date +%s) - START )) s"
