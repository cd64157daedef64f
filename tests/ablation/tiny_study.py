"""A tiny labelled corpus (tones written with soundfile, letter labels), a seconds-long
pretrain -> finetune -> evaluate recipe over it, and a study file of that recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXTS = ["A B", "B A", "A A B", "B B", "A B A", "B A B"]

RECIPE = """\
data:
  train: {root}/train.tsv
  test: {root}/test.tsv
  max_tokens: 32000
  max_sample_size: 8000
  num_workers: 0
model:
  encoder: {{name: wav2vec2_conv, conv_layers: [[16, 10, 5], [16, 8, 4], [16, 4, 2]]}}
  quantizer: {{name: gumbel, groups: 1, num_vars: 8, dim: 16}}
  aggregator: {{name: transformer, embed_dim: 16, layers: 1, ffn_dim: 32, heads: 2, conv_pos: 4,
               conv_pos_groups: 2}}
  masker: {{name: span, mask_prob: 0.5, mask_length: 2}}
objective: {{name: masked_contrastive, num_negatives: 2, final_dim: 16}}
trainer: {{max_updates: 2, lr: 1.0e-3, log_interval: 1, device: cpu, num_threads: 1,
          precision: fp32}}
stages:
  pretrain: {{name: pretrain}}
  finetune:
    name: finetune
    init: {{from: pretrain, components: [encoder, aggregator]}}
    data: {{labels: ltr, pad: true}}
    model: {{quantizer: null, head: {{name: ctc}}}}
    objective: {{name: ctc}}
  evaluate:
    name: evaluate
    data: {{labels: ltr, pad: true}}
    models: [finetune]
"""

STUDY = """\
title: Tiny quantizer study
description: Gumbel against k-means targets, and a variant that cannot build.
recipe: tiny.yaml
overrides: {{trainer.max_updates: 2}}
variants:
  gumbel: {{model.quantizer: {{name: gumbel, groups: 1, num_vars: 8, dim: 16}}}}
  kmeans: {{model.quantizer: {{name: kmeans, groups: 1, num_vars: 8}}}}
  broken: {{model.quantizer: {{name: kmeans, temp: 2.0}}}}
seeds: [1, 2]
seed_keys: [stages.finetune.trainer.seed]
shared_stages: [pretrain]
metrics:
  - {{name: CER %, source: evaluate, stage: evaluate, model: finetune, key: cer, scale: 100}}
  - {{name: pretrain loss, source: metrics, stage: pretrain, key: loss}}
  - {{name: finetune updates, source: summary, stage: finetune, key: updates}}
  - {{name: prob perplexity, source: metrics, stage: pretrain, key: prob_perplexity}}
{extra}"""


def write_corpus(root: Path) -> Path:
    """8 train and 4 test utterances of tones with letter labels, and dict.ltr.txt."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 8), ("test", 4)):
        rows, labels = [], []
        for i in range(n):
            size = 4800 + 320 * i
            t = np.arange(size) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * rng.standard_normal(size)
            sf.write(audio / f"{split}{i}.wav", wave.astype(np.float32), 16000)
            rows.append(f"{split}{i}.wav\t{size}")
            labels.append(" | ".join(" ".join(w) for w in TEXTS[i % len(TEXTS)].split()) + " |")
        (root / f"{split}.tsv").write_text(f"{audio}\n" + "\n".join(rows) + "\n")
        (root / f"{split}.ltr").write_text("\n".join(labels) + "\n")
    (root / "dict.ltr.txt").write_text("| 10\nA 10\nB 10\n")
    return root


def write_study(root: Path, extra: str = "") -> Path:
    """The corpus, ``tiny.yaml`` and ``study.yaml`` under ``root``; returns the study file."""
    write_corpus(root / "corpus")
    (root / "tiny.yaml").write_text(RECIPE.format(root=root / "corpus"))
    path = root / "study.yaml"
    path.write_text(STUDY.format(extra=extra))
    return path
