"""How much phone information the oracle segments of a wav2vec-U run carry: a supervised
linear classifier (and a one-hidden-layer MLP) from each aligned segment's features to its
phone, trained on the train split, scored on the test split.

    python tests/benchmarks/w2vu_supervised_bound.py RUN/segment

``RUN`` is a `recipes/demo_wav2vec_u.yaml` run made with
``stages.segment.segmentation=alignments data.train=demo:train`` (one segment per aligned
phone). The accuracy bounds what the GAN can reach on these features: a generator cannot
label segments better than a classifier trained with the labels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from w2v.plugins.data.shards import load_features, read_meta


def segments(directory: Path, split: str) -> tuple[torch.Tensor, list[str]]:
    """Segment features ``[N, D]`` and the aligned phone of each."""
    features, meta = load_features(directory, split), read_meta(directory)
    lines = Path(meta["splits"][split]["manifest"]).with_suffix(".align.tsv").read_text()
    xs, ys = [], []
    for row, line in enumerate(lines.splitlines()):
        x = torch.from_numpy(features.frames(row).astype("float32"))
        phones = [token.rsplit(",", 2)[0] for token in line.split()]
        n = min(len(phones), len(x))
        xs.append(x[:n])
        ys += phones[:n]
    return torch.cat(xs), ys


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float):
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def main(directory: Path) -> None:
    torch.manual_seed(0)
    x_train, y_train = segments(directory, "train")
    x_test, y_test = segments(directory, "test")
    phones = sorted(set(y_train))
    index = {p: i for i, p in enumerate(phones)}
    keep = [i for i, p in enumerate(y_test) if p in index]
    train_ids = torch.tensor([index[p] for p in y_train])
    test_ids = torch.tensor([index[y_test[i]] for i in keep])
    mean, std = x_train.mean(0), x_train.std(0) + 1e-5
    x_train, x_test = (x_train - mean) / std, (x_test[keep] - mean) / std
    d, v = x_train.shape[1], len(phones)
    linear = fit(torch.nn.Linear(d, v), x_train, train_ids, 300, 1e-2)
    mlp = fit(torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.ReLU(),
                                  torch.nn.Linear(256, v)), x_train, train_ids, 600, 1e-3)
    with torch.no_grad():
        acc = [float((m(x_test).argmax(1) == test_ids).float().mean()) for m in (linear, mlp)]
    majority = float(torch.bincount(train_ids).max()) / len(train_ids)
    print(f"{len(train_ids)} train / {len(test_ids)} test segments, {v} phones; "
          f"majority class {majority:.1%}")
    print(f"supervised segment accuracy on test: linear {acc[0]:.1%}, MLP {acc[1]:.1%}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
