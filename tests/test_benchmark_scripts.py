"""The benchmark scripts under tests/benchmarks/ still run and still count what they claim.

These check what the scripts print, not how fast anything is: speed is the scripts' own
business, on a quiet machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "benchmarks"


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), "--threads", "1", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_flops_count_the_same_model_work_on_both_sides():
    # w2v's CPU paths (row_conv's in-place products, the FFT positional conv) must not hide
    # FLOPs from the counter: both sides run the same model, so the counts agree
    out = _run("bench_wav2vec2.py", "--flops", "--small")
    counts = dict(re.findall(r"^(hf|w2v)\s+([\d.]+) GFLOP per update", out, re.M))
    assert set(counts) == {"hf", "w2v"}, out
    hf, w2v = float(counts["hf"]), float(counts["w2v"])
    assert hf > 0 and abs(w2v / hf - 1) < 0.02, out


def test_positional_conv_benchmark_compares_equal_outputs():
    out = _run("bench_positional_conv.py", "--dim", "32", "--kernel", "32", "--groups", "4",
               "--shapes", "1x40", "4x80", "--repeats", "1")
    rows = re.findall(r"^\s*(\d+x\d+)\s+N=\s*(\d+).*pays_off: (conv|fft)\s+rel\. error ([\d.e+-]+)",
                      out, re.M)
    assert [r[0] for r in rows] == ["1x40", "4x80"], out
    assert all(float(r[3]) < 1e-5 for r in rows), out
    assert [r[2] for r in rows] == ["conv", "fft"], out     # 40 frames < N = 72; 320 >= 120


def test_memory_lines_come_from_runs_of_each_side_alone():
    out = _run("bench_wav2vec2.py", "--small", "--no-train", "--no-fx", "--no-bf16",
               "--memory-runs", "1", "--wait-quiet", "0", "--seconds", "1")
    runs = re.findall(r"^\s+(hf|w2v)\s+peak\s+[\d.]+ MB .*step memory (\d+) MB", out, re.M)
    assert [side for side, _ in runs] == ["hf", "w2v"], out
    assert all(int(mb) > 0 for _, mb in runs), out
    assert re.search(r"peak RSS w2v / hf: [\d.]+ \(step memory alone [\d.]+, medians; "
                     r"per round [\d.]+\.\.[\d.]+\)", out), out


def test_feature_memory_lines_come_from_runs_of_each_side_alone():
    out = _run("bench_wav2vec2.py", "--small", "--no-train", "--no-fx", "--no-memory",
               "--no-bf16", "--fx-memory", "--fx-seconds", "2", "--memory-runs", "1",
               "--wait-quiet", "0", "--seconds", "1")
    runs = re.findall(r"^\s+(w2v|torchaudio|hf)\s+peak\s+[\d.]+ MB .*extraction memory "
                      r"(-?\d+) MB", out, re.M)
    assert [side for side, _ in runs] == ["w2v", "torchaudio", "hf"], out
    assert all(int(mb) > 0 for _, mb in runs), out
    for den in ("torchaudio", "hf"):
        assert re.search(rf"features memory w2v / {den}: [\d.]+ \(medians; per round "
                         r"[\d.]+\.\.[\d.]+\)", out), out


def _gpu_pretrain_cpu(side: str, precision: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench_gpu_pretrain.py"),
                           "--device", "cpu", "--side", side, "--precision", precision,
                           "--batch", "1", "--seconds", "1", "--warmup", "1", "--updates", "2"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def test_gpu_pretraining_benchmark_runs_both_sides_on_the_same_work():
    # the GPU session is rare and short: the script must work before it gets there. On CPU
    # it runs the same code (autocast, fused AdamW, clipping, FLOP counting) on a small batch
    w2v, hf = _gpu_pretrain_cpu("w2v", "fp32"), _gpu_pretrain_cpu("hf", "bf16")
    assert (w2v["side"], hf["side"]) == ("w2v", "hf")
    for r in (w2v, hf):
        assert r["all_finite"] and r["parameters"] > 90e6 and r["step_ms_median"] > 0, r
    # both sides count the model's work alike, so their MFUs compare the same FLOPs (in
    # fp32 on CPU, w2v's CPU-only paths run unless the script switches them off)
    assert abs(w2v["model_tflop_per_update"] / hf["model_tflop_per_update"] - 1) < 0.02
