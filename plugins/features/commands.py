"""``w2vrun export-units CHECKPOINT MANIFEST... --out DIR``: units outside a recipe.

Works with any checkpoint ``w2v.load_pretrained`` reads that has a quantizer
(a w2v run, a fairseq ``vq-wav2vec*.pt``). Each manifest ``NAME.tsv`` gives
``NAME.src``; ``dict.src.txt`` counts the first manifest's units.
"""

from __future__ import annotations

from pathlib import Path


def configure_export_units(p) -> None:
    p.add_argument("checkpoint", help="w2v model/run directory or fairseq vq-wav2vec .pt")
    p.add_argument("manifests", nargs="+", help="fairseq manifests (.tsv); the units of "
                                                "NAME.tsv go to NAME.src")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--chunk-seconds", type=float, default=81.25,
                   help="longer files are quantized in chunks of this length")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run_export_units(args) -> int:
    import torch

    from w2v import load_pretrained
    from w2v.errors import UserError

    from .units import export_units

    names = [Path(m).stem for m in args.manifests]
    if len(set(names)) != len(names):
        raise UserError(f"manifest names {names} repeat; each NAME.tsv writes NAME.src.",
                        where="w2vrun export-units")
    model = load_pretrained(args.checkpoint)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    meta = export_units(model, dict(zip(names, args.manifests)), args.out,
                        chunk_seconds=args.chunk_seconds, device=device,
                        source=str(args.checkpoint))
    print(f"[w2v] {meta['dictionary_size']} distinct units; wrote "
          f"{', '.join(n + '.src' for n in names)} and dict.src.txt to {args.out}")
    return 0
