"""fairseq interop without fairseq: fake fairseq-format checkpoints (fairseq key names, a
``cfg`` dict, a pickled omegaconf-style ``DictConfig`` or a legacy ``argparse.Namespace``)
built from random-init Hugging Face models load with ``from_fairseq`` and give HF's outputs."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import re
import sys
import types
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from w2v.errors import DataError, UserError
from w2v.plugins.wav2vec2.feature_encoder import Wav2Vec2FeatureEncoderConfig
from w2v.plugins.wav2vec2.interop import detect_fairseq, from_fairseq, load_fairseq
from w2v.plugins.wav2vec2.interop.build import Wav2Vec2Spec, build_model
from w2v.plugins.wav2vec2.interop.build import split_attention
from w2v.plugins.interop.unpickle import StandIn, load_checkpoint
from w2v.plugins.wav2vec2.transformer import TransformerAggregatorConfig

transformers = pytest.importorskip("transformers")
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining  # noqa: E402

torch.set_num_threads(1)
TOL = dict(atol=1e-4, rtol=0)


def make_hf(cls, large: bool):
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=[16, 16, 24], conv_kernel=[10, 3, 2], conv_stride=[5, 2, 2],
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if large else "group", do_stable_layer_norm=large,
        conv_bias=large, codevector_dim=16, proj_codevector_dim=12, num_codevectors_per_group=10,
        num_codevector_groups=2, vocab_size=9)
    model = cls(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def fairseq_state(hf, *, large: bool, finetuned: bool) -> dict[str, torch.Tensor]:
    """HF state dict renamed to fairseq's keys (written here independently of the importer)."""
    norm = r"feature_extractor.conv_layers.\1.2.1.\2" if large else \
        r"feature_extractor.conv_layers.\1.2.\2"
    rules = [
        (r"wav2vec2\.feature_extractor\.conv_layers\.(\d+)\.conv\.(.*)",
         r"feature_extractor.conv_layers.\1.0.\2"),
        (r"wav2vec2\.feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(.*)", norm),
        (r"wav2vec2\.feature_projection\.layer_norm\.(.*)", r"layer_norm.\1"),
        (r"wav2vec2\.feature_projection\.projection\.(.*)", r"post_extract_proj.\1"),
        (r"wav2vec2\.masked_spec_embed", "mask_emb"),
        (r"wav2vec2\.encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
        (r"wav2vec2\.encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0",
         "encoder.pos_conv.0.weight_g"),
        (r"wav2vec2\.encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1",
         "encoder.pos_conv.0.weight_v"),
        (r"wav2vec2\.encoder\.layer_norm\.(.*)", r"encoder.layer_norm.\1"),
        (r"wav2vec2\.encoder\.layers\.(\d+)\.attention\.(.*)", r"encoder.layers.\1.self_attn.\2"),
        (r"wav2vec2\.encoder\.layers\.(\d+)\.layer_norm\.(.*)",
         r"encoder.layers.\1.self_attn_layer_norm.\2"),
        (r"wav2vec2\.encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(.*)",
         r"encoder.layers.\1.fc1.\2"),
        (r"wav2vec2\.encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(.*)",
         r"encoder.layers.\1.fc2.\2"),
        (r"wav2vec2\.encoder\.layers\.(\d+)\.final_layer_norm\.(.*)",
         r"encoder.layers.\1.final_layer_norm.\2"),
        (r"quantizer\.codevectors", "quantizer.vars"),
        (r"quantizer\.weight_proj\.(.*)", r"quantizer.weight_proj.\1"),
        (r"project_q\.(.*)", r"project_q.\1"),
        (r"project_hid\.(.*)", r"final_proj.\1"),
        (r"lm_head\.(.*)", r"LM.\1"),
    ]
    out = {}
    for key, value in hf.state_dict().items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                new = re.sub(pattern, repl, key)
                break
        else:
            raise AssertionError(f"test mapping misses {key}")
        if finetuned:
            new = new.replace("LM.", "w2v_encoder.proj.") if new.startswith("LM.") else \
                "w2v_encoder.w2v_model." + new
        out[new] = value.clone()
    return out


def model_cfg(large: bool) -> dict[str, Any]:
    return {"_name": "wav2vec2", "extractor_mode": "layer_norm" if large else "default",
            "conv_feature_layers": "[(16, 10, 5), (16, 3, 2)] + [(24, 2, 2)] * 1",
            "conv_bias": large, "encoder_layers": 2, "encoder_embed_dim": 32,
            "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
            "layer_norm_first": large, "conv_pos": 8, "conv_pos_groups": 4,
            "quantize_targets": True, "latent_vars": 10, "latent_groups": 2, "latent_dim": 16,
            "final_dim": 12, "latent_temp": [2.0, 0.1, 0.999995], "feature_grad_mult": 0.1,
            "mask_prob": 0.65, "normalize": "${task.normalize}", "activation_fn": "gelu",
            "dropout": 0.1, "encoder_layerdrop": 0.05}


def task_cfg(normalize=False):
    return {"_name": "audio_pretraining", "normalize": normalize, "sample_rate": 16000}


def compare(hf, model, wave, head=False):
    with torch.no_grad():
        base = hf.wav2vec2(wave, output_hidden_states=True)
        ours = model.extract_features(wave)
        torch.testing.assert_close(ours.local, base.extract_features, **TOL)
        torch.testing.assert_close(ours.layers[0], base.hidden_states[1], **TOL)
        torch.testing.assert_close(ours.output, base.last_hidden_state, **TOL)
        if head:
            torch.testing.assert_close(model.head(ours.output), hf(wave).logits, **TOL)


def save(tmp_path, ckpt, name="checkpoint.pt"):
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("large", [False, True], ids=["base", "large"])
def test_pretrained_checkpoint_with_cfg_dict(tmp_path, large):
    hf = make_hf(Wav2Vec2ForPreTraining, large)
    ckpt = {"model": fairseq_state(hf, large=large, finetuned=False),
            "cfg": {"model": model_cfg(large), "task": task_cfg(),
                    "criterion": {"_name": "wav2vec", "loss_weights": [0.1, 10.0]}},
            "optimizer_history": [{"criterion_name": "Wav2vecCriterion"}], "extra_state": {}}
    path = save(tmp_path, ckpt)
    assert detect_fairseq(path)
    model = from_fairseq(path)
    compare(hf, model, torch.randn(2, 1600))
    report = model.load_report
    assert report.objective_config["final_dim"] == 12
    assert report.objective_config["loss_weights"] == [0.1, 10.0]
    torch.testing.assert_close(report.objective_state["final_proj.weight"], hf.project_hid.weight)
    torch.testing.assert_close(model.quantizer.codevectors, hf.quantizer.codevectors)
    assert model.quantizer.min_temp == 0.1 and model.encoder.feature_grad_mult == 0.1
    assert model.masker.config.mask_prob == 0.65
    assert model.aggregator.config.layerdrop == 0.05
    assert not report.missing and not report.dropped and len(report.loaded) == len(ckpt["model"]) - 4


def test_legacy_args_namespace_checkpoint(tmp_path):
    hf = make_hf(Wav2Vec2ForPreTraining, True)
    fields = {k: v for k, v in model_cfg(True).items() if k not in ("_name", "normalize")}
    args = argparse.Namespace(arch="wav2vec2", task="audio_pretraining", normalize=True,
                              sample_rate=16000, lr=[0.005], **fields)
    path = save(tmp_path, {"model": fairseq_state(hf, large=True, finetuned=False),
                           "args": args, "cfg": None})
    model = from_fairseq(path)
    assert model.normalize is True
    model.normalize = False                       # compare the network itself against HF
    compare(hf, model, torch.randn(1, 1600))


def test_finetuned_ctc_checkpoint(tmp_path):
    hf = make_hf(Wav2Vec2ForCTC, False)
    inner = {"model": {**model_cfg(False), "quantize_targets": False}, "task": task_cfg()}
    cfg = {"model": {"_name": "wav2vec_ctc", "w2v_args": inner, "final_dropout": 0.1,
                     "dropout": 0.0, "layerdrop": 0.1, "normalize": False, "apply_mask": True},
           "task": {"_name": "audio_finetuning", "normalize": False, "labels": "ltr"}}
    path = save(tmp_path, {"model": fairseq_state(hf, large=False, finetuned=True), "cfg": cfg})
    model = load_fairseq(path)
    compare(hf, model, torch.randn(2, 1600), head=True)
    assert model.head.proj.out_features == 9 and model.quantizer is None
    assert model.aggregator.config.dropout == 0.0 and model.aggregator.config.layerdrop == 0.1
    assert any("dict.ltr.txt" in n for n in model.load_report.notes)


# ----------------------------------------------------------- omegaconf without omegaconf


@contextmanager
def fake_modules(*names):
    """Temporarily importable empty modules (so pickle can name classes living there)."""
    made = {n: types.ModuleType(n) for n in names}
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(made)
    try:
        yield made
    finally:
        for n, old in saved.items():
            if old is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = old


def _place(module, cls):
    cls.__module__ = module.__name__
    cls.__qualname__ = cls.__name__
    setattr(module, cls.__name__, cls)
    return cls


def omegaconf_like_checkpoint(ckpt_model, cfg, mods):
    """``cfg`` as objects shaped like omegaconf 2.0's pickled DictConfig / ListConfig / nodes,
    with a fairseq ChoiceEnum member, defined in fake ``omegaconf.*`` / ``fairseq.*`` modules."""
    base, dictconfig, listconfig, nodes, constants = (
        mods["omegaconf.base"], mods["omegaconf.dictconfig"], mods["omegaconf.listconfig"],
        mods["omegaconf.nodes"], mods["fairseq.dataclass.constants"])

    @dataclasses.dataclass
    class ContainerMetadata:
        ref_type: Any = None
        object_type: Any = None
        optional: bool = True
        key: Any = None
        flags: dict = dataclasses.field(default_factory=dict)

    class DictConfig:
        def __init__(self, content, parent=None, key=None):
            self._metadata = ContainerMetadata(ref_type=Any, object_type=dict, key=key)
            self._parent = parent
            self._content = {k: wrap(v, self, k) for k, v in content.items()}

    class ListConfig:
        def __init__(self, content, parent=None, key=None):
            self._metadata = ContainerMetadata(ref_type=Any, object_type=list, key=key)
            self._parent = parent
            self._content = [wrap(v, self, i) for i, v in enumerate(content)]

    class AnyNode:
        def __init__(self, value, parent=None, key=None):
            self._val, self._parent = value, parent
            self._metadata = ContainerMetadata(key=key)

    class EnumNode(AnyNode):
        pass

    ExtractorMode = enum.Enum("EXTRACTOR_MODE_CHOICES", {"default": "default",
                                                          "layer_norm": "layer_norm"})
    for module, cls in [(base, ContainerMetadata), (dictconfig, DictConfig),
                        (listconfig, ListConfig), (nodes, AnyNode), (nodes, EnumNode),
                        (constants, ExtractorMode)]:
        _place(module, cls)

    def wrap(value, parent, key):
        if isinstance(value, dict):
            return DictConfig(value, parent, key)
        if isinstance(value, list):
            return ListConfig(value, parent, key)
        if key == "extractor_mode":
            return EnumNode(ExtractorMode(value), parent, key)
        return AnyNode(value, parent, key)

    return {"model": ckpt_model, "cfg": DictConfig(cfg), "args": None}


def test_omegaconf_cfg_loads_without_omegaconf(tmp_path):
    hf = make_hf(Wav2Vec2ForPreTraining, False)
    cfg = {"model": model_cfg(False), "task": task_cfg(normalize=False),
           "common": {"seed": 1, "user_dir": None}}
    names = ("omegaconf", "omegaconf.base", "omegaconf.dictconfig", "omegaconf.listconfig",
             "omegaconf.nodes", "fairseq", "fairseq.dataclass", "fairseq.dataclass.constants")
    with fake_modules(*names) as mods:
        ckpt = omegaconf_like_checkpoint(fairseq_state(hf, large=False, finetuned=False),
                                         cfg, mods)
        path = save(tmp_path, ckpt)
    assert "omegaconf" not in sys.modules and "fairseq" not in sys.modules
    raw = load_checkpoint(path)
    assert isinstance(raw["cfg"], StandIn) and raw["cfg"]._w2v_origin == \
        "omegaconf.dictconfig.DictConfig"
    model = from_fairseq(path)
    assert model.encoder.mode == "group_norm"                   # the enum member's value
    compare(hf, model, torch.randn(1, 1600))
    assert "omegaconf" not in sys.modules and "fairseq" not in sys.modules


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "pwned"
    path = save(tmp_path, {"model": {}, "cfg": None, "extra": _Payload(marker)})
    raw = load_checkpoint(path)
    assert not marker.exists()
    assert isinstance(raw["extra"], StandIn) and raw["extra"]._w2v_origin.endswith("system")
    with pytest.raises(DataError, match="neither `cfg` nor `args`"):
        from_fairseq(path)


def test_unexpected_key_and_bad_config_raise(tmp_path):
    hf = make_hf(Wav2Vec2ForPreTraining, False)
    state = fairseq_state(hf, large=False, finetuned=False)
    cfg = {"model": model_cfg(False), "task": task_cfg()}
    path = save(tmp_path, {"model": {**state, "encoder.mystery.weight": torch.zeros(1)},
                           "cfg": cfg})
    with pytest.raises(UserError, match="encoder.mystery.weight"):
        from_fairseq(path)
    path = save(tmp_path, {"model": {**state, "encoder.layers.0.mystery.weight": torch.zeros(1)},
                           "cfg": cfg})
    with pytest.raises(UserError, match="encoder.layers.0.mystery.weight"):
        from_fairseq(path)
    path = save(tmp_path, {"model": state, "cfg": {"model": {**model_cfg(False),
                                                              "activation_fn": "relu"}}})
    with pytest.raises(UserError, match="activation_fn"):
        from_fairseq(path)
    path = save(tmp_path, {"model": state, "cfg": {"model": {**model_cfg(False),
                                                              "_name": "wav2vec"}}})
    with pytest.raises(UserError, match="wav2vec2"):
        from_fairseq(path)


def test_detection(tmp_path):
    hf = make_hf(Wav2Vec2ForPreTraining, False)
    assert not detect_fairseq(tmp_path)
    other = save(tmp_path, {"model": {"encoder.conv_layers.0.conv.weight": torch.zeros(1)},
                            "cfg": {}}, "w2v.pt")
    assert not detect_fairseq(other)
    hf.save_pretrained(tmp_path / "hf")
    assert not detect_fairseq(tmp_path / "hf" / "model.safetensors")


# --------------------------------------------- architectures HF lacks (w2v round trip)


def w2v_to_fairseq(model) -> dict[str, torch.Tensor]:
    rules = [
        (r"encoder\.conv_layers\.(\d+)\.conv\.(.*)", r"feature_extractor.conv_layers.\1.0.\2"),
        (r"encoder\.conv_layers\.(\d+)\.norm\.(.*)", r"feature_extractor.conv_layers.\1.2.1.\2"),
        (r"encoder\.layer_norm\.(.*)", r"layer_norm.\1"),
        (r"projection\.(.*)", r"post_extract_proj.\1"),
        (r"aggregator\.positional\.convs\.(\d+)\.(.*)", r"encoder.pos_conv.\1.0.\2"),
        (r"aggregator\.positional\.conv\.bias", "encoder.pos_conv.0.bias"),
        (r"aggregator\.positional\.conv\.parametrizations\.weight\.original0",
         "encoder.pos_conv.0.weight_g"),
        (r"aggregator\.positional\.conv\.parametrizations\.weight\.original1",
         "encoder.pos_conv.0.weight_v"),
        (r"aggregator\.layer_norm\.(.*)", r"encoder.layer_norm.\1"),
        (r"aggregator\.layers\.(\d+)\.(.*)", r"encoder.layers.\1.\2"),
    ]
    out = {}
    for key, value in split_attention(model.state_dict()).items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value.clone()
                break
        else:
            raise AssertionError(f"test mapping misses {key}")
    return out


@pytest.mark.parametrize("kw", [{"pos_conv_depth": 2},
                                {"layer_type": "conformer", "conformer_kernel": 5}])
def test_stacked_positional_conv_and_conformer_round_trip(tmp_path, kw):
    torch.manual_seed(0)
    agg = dict(embed_dim=32, layers=2, ffn_dim=48, heads=4, conv_pos=8, conv_pos_groups=4,
               layer_norm_first=True, **kw)
    spec = Wav2Vec2Spec(encoder=Wav2Vec2FeatureEncoderConfig(
        conv_layers=[(16, 10, 5), (24, 3, 2)], mode="layer_norm"),
        aggregator=TransformerAggregatorConfig(**agg, fairseq_compat="layer_type" in kw),
        projection=True)                  # a fairseq Conformer handles padding as fairseq does
    ours = build_model(spec).eval()
    with torch.no_grad():
        for name, buf in ours.named_buffers():
            if "running_" in name:
                buf.copy_(torch.rand_like(buf) + 0.5)
    cfg = {"_name": "wav2vec2", "extractor_mode": "layer_norm",
           "conv_feature_layers": "[(16, 10, 5), (24, 3, 2)]", "encoder_layers": 2,
           "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 48, "encoder_attention_heads": 4,
           "layer_norm_first": True, "conv_pos": 8, "conv_pos_groups": 4,
           "pos_conv_depth": kw.get("pos_conv_depth", 1),
           "layer_type": kw.get("layer_type", "transformer"),
           "depthwise_conv_kernel_size": kw.get("conformer_kernel", 31)}
    state = w2v_to_fairseq(ours)
    assert ("encoder.pos_conv.0.weight_g" in state) == ("pos_conv_depth" not in kw)
    path = save(tmp_path, {"model": state, "cfg": {"model": cfg, "task": task_cfg()}})
    loaded = from_fairseq(path)
    wave = torch.randn(2, 900)
    lengths = torch.tensor([900, 700])
    with torch.no_grad():
        a, b = ours.extract_features(wave, lengths), loaded.extract_features(wave, lengths)
    torch.testing.assert_close(a.output, b.output, atol=1e-5, rtol=0)
