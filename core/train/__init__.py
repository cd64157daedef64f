"""The training loop every stage shares: config, schedules, checkpoints, health, DDP.

Entry points: :class:`Trainer` (``Trainer(config, model, objective, loader_factory,
run_dir=...).fit()``), :class:`TrainerConfig` (the recipe's ``trainer:`` section),
:class:`ScalarSchedule` (for components that anneal a value per update) and
:class:`TrainingDiverged` (raised when training blows up; exit code 1).
"""

from .checkpoint import CheckpointError, LoadReport, load_checkpoint
from .config import (GroupOptimizerConfig, ParamGroupConfig, RestoreConfig, ScheduleConfig,
                     TrainerConfig, resolve_length)
from .data import BatchStream, LoaderFactory, ResumableBatchSampler, reusing_loader
from .health import TrainingDiverged
from .schedules import ScalarSchedule, build_lr_schedule
from .trainer import FitSummary, Trainer, UpdateRecord

__all__ = [
    "BatchStream", "CheckpointError", "FitSummary", "GroupOptimizerConfig", "LoadReport",
    "LoaderFactory", "ParamGroupConfig", "ResumableBatchSampler", "RestoreConfig",
    "ScalarSchedule", "ScheduleConfig", "Trainer", "TrainerConfig", "TrainingDiverged",
    "UpdateRecord", "build_lr_schedule", "load_checkpoint", "resolve_length", "reusing_loader",
]
