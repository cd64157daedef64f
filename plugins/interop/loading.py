"""Copy mapped checkpoint tensors into a freshly built model, strictly (every tensor lands on a
parameter or buffer of the same shape; nothing the config implies is left random)."""

from __future__ import annotations

import torch
from torch import nn

from w2v.errors import UserError

from .keymap import LoadReport, MappedState


def load_mapped(model: nn.Module, mapped: MappedState, report: LoadReport, *,
                allow_missing: bool = False) -> None:
    """Copy ``mapped`` into ``model``: every tensor must land on a parameter or buffer of the
    same shape. Model keys left unset are listed in ``report.missing`` and, unless
    ``allow_missing``, are an error (a config/tensor mismatch must not leave random weights)."""
    tensors, origin = mapped.tensors, mapped.origin
    own = model.state_dict()
    for key, value in tensors.items():
        if key not in own:
            raise UserError(f"{report.source}: `{origin[key]}` has no place in the model built "
                            f"from the checkpoint's config (it would be `{key}`); the config and "
                            f"the tensors disagree.")
        if tuple(own[key].shape) != tuple(value.shape):
            raise UserError(f"{report.source}: `{origin[key]}` has shape {list(value.shape)}, but "
                            f"the config implies {list(own[key].shape)} for `{key}`.")
    with torch.no_grad():
        for key, value in tensors.items():
            own[key].copy_(value.to(own[key].dtype))
    report.loaded.extend(dict.fromkeys(k for v in origin.values() for k in v.split(" + ")))
    report.missing.extend(k for k in own if k not in tensors
                          and not k.endswith("num_batches_tracked"))
    if report.missing and not allow_missing:
        shown = ", ".join(f"`{k}`" for k in report.missing[:6])
        more = f" and {len(report.missing) - 6} more" if len(report.missing) > 6 else ""
        raise UserError(f"{report.source}: the checkpoint lacks {len(report.missing)} tensors its "
                        f"config implies ({shown}{more}); refusing to leave them random.")


def finish(model: nn.Module, report: LoadReport) -> nn.Module:
    """Eval mode, and the report attached as ``model.load_report``."""
    model.eval()
    model.load_report = report
    return model
