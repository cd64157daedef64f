"""Messages speak w2v's key names: a hint that tells a user to change fairseq's
``freeze_finetune_updates`` names a key no w2v recipe has (``trainer.freeze_updates`` is
w2v's). Every string a user can see (not docstrings; not the checkpoint importers, whose
messages are about fairseq's own configs) is scanned for fairseq option names that are not
also w2v keys; a string that says "fairseq" is explaining the correspondence and may."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]

#: fairseq options (wav2vec / wav2vec 2.0 / CTC fine-tuning, optimisation, checkpointing)
FAIRSEQ_OPTIONS = [
    "freeze_finetune_updates", "max_update", "warmup_updates", "hold_updates",
    "decay_updates", "feature_grad_mult", "encoder_layerdrop", "latent_vars", "latent_groups",
    "latent_temp", "latent_dim", "lr_scheduler", "best_checkpoint_metric",
    "validate_interval_updates", "save_interval_updates", "keep_interval_updates",
    "distributed_world_size", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
    "encoder_attention_heads", "conv_feature_layers", "extractor_mode", "quantize_targets",
    "quantize_input", "max_tokens_valid", "sentence_avg", "zero_infinity", "post_process",
    "mask_selection", "no_mask_overlap", "mask_min_space",
]


def w2v_keys() -> set[str]:
    """Every config field name of every registered component and recipe section."""
    from w2v.build import ModelConfig
    from w2v.data.config import DataConfig
    from w2v.plugin_manager import registry
    from w2v.train.config import TrainerConfig

    classes = [ModelConfig, DataConfig, TrainerConfig] + [r.config_cls for r in registry().all()]
    names = set()
    while classes:
        cls = classes.pop()
        for f in attrs.fields(cls):
            names.add(f.name)
            if isinstance(f.type, type) and attrs.has(f.type):
                classes.append(f.type)
    return names


def user_strings(path: Path):
    """``(line, text)`` of each string literal (f-strings joined) that is not a docstring."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
            yield node.lineno, "".join(v.value for v in node.values
                                       if isinstance(v, ast.Constant))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def test_messages_name_w2v_keys_not_fairseq_options():
    foreign = [name for name in FAIRSEQ_OPTIONS if name not in w2v_keys()]
    assert "freeze_finetune_updates" in foreign and "max_update" in foreign
    pattern = re.compile(r"(?<![\w.])(" + "|".join(foreign) + r")(?![\w])")
    found = []
    for folder in ("core", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(part.startswith("interop") for part in path.relative_to(ROOT).parts):
                continue                # importers describe fairseq's own configs
            for line, text in user_strings(path):
                m = pattern.search(text)
                if m and "fairseq" not in text.lower():
                    found.append(f"{path.relative_to(ROOT)}:{line}: `{m.group(1)}` in {text!r}")
    assert not found, "\n".join(found)


def test_the_degenerate_output_warning_names_trainer_keys():
    from w2v.plugins.ctc.metrics import check_not_degenerate
    from w2v.train.config import TrainerConfig

    text = check_not_degenerate(["", ""])
    keys = re.findall(r"`trainer\.(\w+)`", text)
    assert "freeze_updates" in keys and "freeze_finetune_updates" not in text
    fields = {f.name for f in attrs.fields(TrainerConfig)}
    assert set(keys) <= fields, set(keys) - fields
