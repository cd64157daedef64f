"""fp32, bf16 autocast, or fp16 autocast with dynamic loss scaling."""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch

from ..errors import ConfigError

#: fp16 loss scale below which training is considered diverged (fairseq's min_loss_scale).
MIN_LOSS_SCALE = 1e-4


class Precision:
    """Autocast context and (fp16) gradient scaler for one device.

    Args:
        mode: ``fp32``, ``bf16`` or ``fp16``.
        device: the training device.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode = mode
        self.device_type = device.type
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        if mode != "fp32" and not torch.amp.is_autocast_available(self.device_type):
            raise ConfigError(f"precision `{mode}` needs autocast, which torch does not support "
                              f"on `{self.device_type}`.", key="trainer.precision",
                              hint="Use `precision: fp32`.")
        if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision `bf16` is not supported by this GPU.",
                              key="trainer.precision", hint="Use `fp16` or `fp32`.")
        self.scaler = torch.amp.GradScaler(self.device_type) if mode == "fp16" else None

    def autocast(self) -> ContextManager[Any]:
        if self.mode == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale (fp16) before they are read."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def update(self) -> None:
        """Adjust the loss scale after an update (raised after good steps, lowered on overflow)."""
        if self.scaler is not None:
            self.scaler.update()

    @property
    def loss_scale(self) -> float | None:
        return float(self.scaler.get_scale()) if self.scaler is not None else None

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
