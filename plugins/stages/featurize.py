"""``w2vrun featurize``: dump a model's features for a manifest, in fp16 shards.

Output per shard (``S`` = shard id, ``N`` = number of shards) in the feature
shard format (:mod:`w2v.plugins.data.shards`, as HuBERT's dump scripts and
wav2vec-U expect): ``<split>_S_N.npy`` ``[frames, D]`` fp16 (``[frames, L, D]``
for ``--layers a,b`` and ``--weighted``, layers in the order asked), ``.len``,
``.tsv`` and ``.done`` (a shard with it is skipped when run again).

Long files are cut into chunks of ``--chunk-seconds`` and their frames joined.
Shards default to torchrun's ``RANK``/``WORLD_SIZE``, so
``torchrun --nproc_per_node=8 $(which w2vrun) featurize ...`` splits the work.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from w2v.errors import UserError

_FEATURES = ("output", "local")


def configure(p) -> None:
    p.add_argument("checkpoint", help="w2v model/run directory, fairseq .pt or HF directory")
    p.add_argument("manifest", help="fairseq manifest (.tsv) of the audio to featurize")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--layer", type=int, help="one context block's output (0-based)")
    what.add_argument("--layers", help="several blocks, comma-separated: stored as [frames, L, D]")
    what.add_argument("--weighted", action="store_true",
                      help="every block, stored as [frames, L, D] for a learned weighted sum")
    what.add_argument("--feature", choices=_FEATURES, default=None,
                      help="`output` (final context output, default) or `local` (encoder output)")
    p.add_argument("--shard-id", type=int, default=None, help="default: $RANK or 0")
    p.add_argument("--num-shards", type=int, default=None, help="default: $WORLD_SIZE or 1")
    p.add_argument("--chunk-seconds", type=float, default=30.0,
                   help="longer files are featurized in chunks of this length")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--split", default=None, help="output name prefix (default: manifest name)")


def _layers(args) -> list[int] | None:
    if args.layer is not None:
        return [args.layer]
    if args.layers:
        try:
            return [int(x) for x in args.layers.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"`--layers {args.layers}` must be comma-separated integers.",
                            where="w2vrun featurize") from None
    return None


def featurize_wave(model, wave: torch.Tensor, *, layers: list[int] | None, all_layers: bool,
                   feature: str, chunk: int) -> torch.Tensor:
    """Features of one utterance ``wave`` [S]: ``[T, D]`` or ``[T, L, D]``."""
    pieces = []
    for start in range(0, wave.shape[0], chunk):
        piece = wave[start:start + chunk]
        if piece.shape[0] < model.encoder.produces().receptive_field and start > 0:
            break  # a tail shorter than one frame adds nothing
        with torch.inference_mode():
            feats = model.extract_features(piece[None], None,
                                           layers=max(layers) if layers else None)
        if feature == "local":
            out = feats.local[0]
        elif all_layers:
            out = torch.stack(feats.layers, dim=1)[0]
        elif layers is not None:
            out = torch.stack([feats.layers[i] for i in layers], dim=1)[0]
            if len(layers) == 1:
                out = out[:, 0]
        else:
            out = feats.output[0]
        pieces.append(out)
    return torch.cat(pieces, dim=0)


def run(args) -> int:
    from w2v import load_pretrained
    from w2v.data.audio import read_audio
    from w2v.data.manifest import read_manifest
    from w2v.plugins.data.shards import ShardWriter

    shard = args.shard_id if args.shard_id is not None else int(os.environ.get("RANK", 0))
    shards = args.num_shards if args.num_shards is not None else int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= shard < shards:
        raise UserError(f"shard id {shard} is outside 0..{shards - 1}.", where="w2vrun featurize")
    manifest = read_manifest(args.manifest)
    split = args.split or Path(args.manifest).stem
    writer = ShardWriter(args.out, split, shard=shard, shards=shards)
    if writer.done:
        print(f"[w2v] {writer.stem}: shard already done; skipping")
        return 0
    layers = _layers(args)
    model = load_pretrained(args.checkpoint).to(args.device)
    n_layers = model.aggregator.num_layers if model.aggregator is not None else 0
    if layers and (min(layers) < 0 or max(layers) >= n_layers):
        raise UserError(f"the model has {n_layers} context blocks (0..{n_layers - 1}); asked for "
                        f"{layers}.", where="w2vrun featurize")
    rows = list(range(shard, len(manifest), shards))
    chunk = int(args.chunk_seconds * model.sample_rate)
    for row in rows:
        try:
            wave, _ = read_audio(manifest.audio_path(row), sample_rate=model.sample_rate)
        except Exception as exc:  # BadInput: name the file and line
            to_error = getattr(exc, "to_error", None)
            raise (to_error() if to_error else exc) from None
        wave = wave.to(args.device)
        writer.add(featurize_wave(model, wave, layers=layers, all_layers=args.weighted,
                                  feature=args.feature or "output", chunk=chunk))
    entries = manifest.entries()
    counts = writer.finish(manifest.root, [entries[r] for r in rows])
    print(f"[w2v] {writer.stem}.npy: {counts['utterances']} utterances, {counts['frames']} "
          f"frames, shape {writer.shape} fp16")
    return 0
