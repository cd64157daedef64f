"""Helpers shared by the registry-walking tests (``test_components.py``, ``test_mix_and_match.py``).

- :func:`reg_id`: a readable pytest id for a registration (``encoder:logmel``).
- :func:`smoke_section`: a registration's smoke config as a recipe section (``{name: ..., ...}``).
- :func:`tiny_dictionary` / :func:`vocab_size`: a six-letter label dictionary (blank 0).
- :func:`assert_finite`: no NaN or inf in a tensor, naming what was checked.
"""

from __future__ import annotations

import torch


def reg_id(reg) -> str:
    return f"{reg.kind}:{reg.name}" if reg is not None else "none"


def smoke_section(reg) -> dict:
    """``{"name": reg.name, **reg.smoke}``: the smoke config as a recipe would write it."""
    return {"name": reg.name, **reg.smoke}


def tiny_dictionary():
    """A letters dictionary (fairseq layout, blank 0); None while w2v.data.dictionary is absent."""
    try:
        from w2v.data.dictionary import Dictionary
    except ImportError:
        return None
    return Dictionary.from_symbols(list("abcde|"))


def vocab_size(dictionary) -> int:
    return len(dictionary) if dictionary is not None else 8


def assert_finite(t: torch.Tensor, what: str) -> None:
    assert torch.isfinite(t.detach().float()).all(), f"{what} has non-finite values"
