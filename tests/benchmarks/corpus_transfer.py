"""Move a demo corpus to a machine that cannot build it (no speech engines there).

    python tests/benchmarks/corpus_transfer.py pack SRC_CORPUS DEST_CORPUS   # audio as Ogg Vorbis
    python tests/benchmarks/corpus_transfer.py relocate CORPUS               # fix manifest roots

``pack`` copies every text file and re-encodes the audio as Ogg Vorbis (about a sixth of the
size; the synthetic speech keeps about 20 dB SNR), checking that each file decodes to the
same number of samples. ``relocate`` rewrites the root line of every manifest to where the
corpus now is. Results measured on a packed corpus say so (docs/demo-claim.md).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import soundfile as sf


def pack(src: Path, dest: Path, quality: float = 0.8) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".wav":
            audio, rate = sf.read(path, dtype="float32")
            target = target.with_suffix(".ogg")
            sf.write(target, audio, rate, format="OGG", subtype="VORBIS",
                     compression_level=quality)
            if sf.info(target).frames != len(audio):
                raise SystemExit(f"{target}: sample count changed in re-encoding")
        elif path.suffix == ".tsv":
            target.write_text(path.read_text().replace(".wav\t", ".ogg\t"))
        else:
            shutil.copyfile(path, target)
    relocate(dest)


def relocate(corpus: Path) -> None:
    corpus = corpus.resolve()
    for manifest in corpus.glob("*.tsv"):
        lines = manifest.read_text().splitlines()
        if lines and lines[0].startswith("/"):
            lines[0] = str(corpus)
            manifest.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "pack":
        pack(Path(paths[0]), Path(paths[1]))
    elif command == "relocate":
        for p in paths:
            relocate(Path(p))
    else:
        raise SystemExit(__doc__)
