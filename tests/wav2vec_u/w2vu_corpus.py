"""A synthetic wav2vec-U corpus for the pipeline tests: five phones, each a noisy point in
8-d held for a few frames, spelling sentences of four words, with the feature shards, their
manifests and true `.phn` labels, the unpaired text and its lexicon."""

from __future__ import annotations

from pathlib import Path

import torch

PHONES = ["a", "b", "c", "d", "e"]
LEXICON = {"WA": ["a", "b"], "WB": ["c"], "WC": ["d", "e", "a"], "WD": ["b", "e"]}
SIZES = {"train": 40, "valid": 12, "test": 12}


def sentence(g: torch.Generator) -> list[str]:
    """2-4 random words of :data:`LEXICON`."""
    words = list(LEXICON)
    n = int(torch.randint(2, 5, (1,), generator=g))
    return [words[int(i)] for i in torch.randint(0, len(words), (n,), generator=g)]


def write_split(root: Path, name: str, n: int, g: torch.Generator, centres: torch.Tensor, *,
                frames: tuple[int, int] = (2, 5), entries: bool = False) -> None:
    """``n`` utterances to ``root/feats`` (each phone ``frames[0]`` to ``frames[1] - 1``
    frames), their manifest ``root/audio/<name>.tsv`` and true ``.phn``. ``entries``: the
    shards record their manifest rows, and ``dict.phn.txt`` is written beside the manifest
    (what a labelled ``features`` source reads)."""
    from w2v.plugins.data.shards import ShardWriter

    writer, phn = ShardWriter(root / "feats", name, dim=8), []
    for _ in range(n):
        phones = [p for w in sentence(g) for p in LEXICON[w]]
        writer.add(torch.cat([centres[PHONES.index(p)] + 0.1 * torch.randn(
            int(torch.randint(*frames, (1,), generator=g)), 8, generator=g) for p in phones]))
        phn.append(" ".join(phones))
    rows = [(f"{name}/u{i}.wav" if entries else f"u{i}.wav", 16000) for i in range(n)]
    if entries:
        writer.finish("/nowhere", rows)
    else:
        writer.finish()
    manifest = root / "audio" / f"{name}.tsv"
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text("/nowhere\n" + "".join(f"{p}\t{s}\n" for p, s in rows))
    manifest.with_suffix(".phn").write_text("".join(line + "\n" for line in phn))
    if entries:
        (manifest.parent / "dict.phn.txt").write_text("".join(f"{p} 1\n" for p in PHONES))


def write_corpus(root: Path, *, seed: int = 0, **split_options) -> Path:
    """Every split of :data:`SIZES`, ``feats/``'s metadata, 200 unpaired sentences
    (``text.txt``) and ``lexicon.txt``; returns ``root``."""
    from w2v.plugins.data.shards import write_meta

    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(len(PHONES), 8, generator=g)
    for name, n in SIZES.items():
        write_split(root, name, n, g, centres, **split_options)
    write_meta(root / "feats", {"dim": 8, "stride": 320, "sample_rate": 16000, "splits": {
        s: {"utterances": n, "manifest": str(root / "audio" / f"{s}.tsv")}
        for s, n in SIZES.items()}})
    (root / "text.txt").write_text("".join(" ".join(sentence(g)) + "\n" for _ in range(200)))
    (root / "lexicon.txt").write_text("".join(f"{w} {' '.join(p)}\n" for w, p in LEXICON.items()))
    return root


def gan_recipe(root: Path, *, max_updates: int, gan: str = "") -> str:
    """A recipe over :func:`write_corpus`'s files: segment -> text -> train_gan (a tiny
    generator and discriminator; ``gan``: more keys of the gan stage, one per line) ->
    select_gan."""
    more = "".join(f"    {line}\n" for line in gan.splitlines() if line.strip())
    return f"""
trainer: {{precision: fp32, max_updates: {max_updates}, log_interval: 2, save_interval: 4,
           keep_last: 10, lr: 1.0e-3, clip_norm: 5.0, betas: [0.5, 0.98],
           group_optimizers: {{generator: {{lr: 1.0e-3}},
                               discriminator: {{lr: 1.0e-3, weight_decay: 1.0e-4}}}}}}
stages:
  segment: {{name: segment_features, from: {root / 'feats'}, clusters: 6, pca_dim: 8,
            sample_frames: 1000, iterations: 10}}
  text: {{name: prepare_text, text: {root / 'text.txt'}, lexicon: {root / 'lexicon.txt'},
         sil_prob: 0.25, lm_order: 3}}
  gan:
    name: train_gan
{more}    data: {{name: features, path: segment, max_tokens: 4000,
           sources: {{text: {{name: units, path: text, ext: phn, valid: null}}}}}}
    model: {{encoder: {{name: precomputed}}, aggregator: null,
            head: {{name: wav2vec_u_generator, kernel: 3}}}}
    objective: {{name: wav2vec_u, discriminator: {{dim: 16, depth: 2, kernel: 3}}}}
  select: {{name: select_gan, from: gan, features: segment, text: text}}
"""
