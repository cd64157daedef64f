"""``w2vrun docs``: write (or check) the configuration reference pages."""

from __future__ import annotations

import argparse
from pathlib import Path

from .pages import COMMAND


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("docs/reference"), metavar="DIR",
                        help="where the pages go (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming the pages that differ from what "
                             "the config classes give")


def run(args: argparse.Namespace) -> int:
    from w2v.plugin_manager import registry

    from .pages import differences, reference_pages, write_pages

    pages = reference_pages(registry())
    if args.check:
        stale = differences(pages, args.out)
        if stale:
            print(f"docs: {len(stale)} reference page(s) in {args.out} differ from the config "
                  f"classes: {', '.join(stale)}. Regenerate them with `{COMMAND}`.")
            return 1
        print(f"docs: the {len(pages)} reference pages in {args.out} are current.")
        return 0
    written = write_pages(pages, args.out)
    print(f"docs: wrote {len(written)} reference pages to {args.out}")
    return 0
