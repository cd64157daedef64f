"""Every registered component with a ``smoke`` config is built and run (timm style).

The test is parametrised over the registry at collection time, so a new
plugin's components are covered the moment they register. For each one the
smoke mapping is structured into the registration's config class (strictly, as
a recipe would be), the component is built with ``cls.from_config(config,
upstream)`` and exercised by kind:

============  ===========================================================================
kind          upstream signal, input, checks
============  ===========================================================================
encoder       ``waveform_signal(16000)``; wave ``[2, 4000]`` with lengths ``[4000, 3000]``;
              ``[2, T, dim]`` with T as the stated stride/receptive field imply; backward.
quantizer     frames (dim 16, stride 320, receptive field 400, causal); ``[2, 20, 16]``;
              vectors ``[2, 20, dim]``, codes ``[2, 20, G]`` in ``[0, V)``, eval codes
              deterministic; backward through vectors (+ aux loss, diversity).
aggregator    same frames; ``[2, 20, input_dim]``; ``[2, 20, dim]`` output and layers;
              a causal aggregator's past outputs ignore future inputs; backward.
masker        same frames; ``(x, mask)`` with mask ``[2, 20]`` bool; backward.
head          same frames, ``dictionary=``; logits ``[2, 20, len(dictionary)]``; backward.
objective     the first tiny model that fits it (see :func:`model_candidates`),
              ``dictionary=``; a batch of 2 waveforms with lengths and targets; finite
              scalar loss; backward reaches the model or the objective.
decoder       ``dictionary=``; log-probabilities ``[2, 20, len(dictionary)]``; one
              :class:`~w2v.interfaces.Hypothesis` per row with ids in range.
other kinds   (plugin-declared, e.g. ``contrastive_loss``) same frames; built, checked to
              subclass the kind's base, parameters finite. Their call contracts belong to
              the declaring plugin, which tests them.
============  ===========================================================================

Encoders and aggregators are also compiled as ``trainer.compile`` compiles them, trained
once and compared with eager mode in evaluation.

Smoke configs stay pure config (no test-only keys); upstream widths are
chosen by kind as above. Components registered without smoke must say why
(``no_smoke_reason``), and stages are exercised by the stage tests instead.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator

import pytest
import torch
from torch import nn

from component_kit import assert_finite, reg_id, smoke_section, tiny_dictionary, vocab_size
from core_testkit import load_with_toy
from w2v import plugin_manager
from w2v.config.structure import structure, structure_component
from w2v.errors import FitError
from w2v.interfaces import (Batch, Hypothesis, Signal, conv_output_length, waveform_signal)

PLUGINS = load_with_toy()
REGISTRY = PLUGINS.registry
SMOKE = [r for r in REGISTRY.all() if r.smoke is not None]
NO_SMOKE = [r for r in REGISTRY.all() if r.smoke is None and r.kind != "stage"]

FRAMES = Signal(kind="frames", dim=16, sample_rate=16000, stride=320, receptive_field=400,
                causal=True)
B, T, WAVE = 2, 20, 4000
FRAME_LENGTHS = torch.tensor([T, 15])
WAVE_LENGTHS = torch.tensor([WAVE, 3000])


@pytest.fixture(autouse=True)
def installed_plugins():
    """The plugin set the parametrisation came from (nested component references resolve)."""
    plugin_manager.reset(PLUGINS)
    torch.manual_seed(0)


def smoke_spec(reg, path: str = "smoke"):
    spec = structure_component(reg.kind, {"name": reg.name, **reg.smoke}, path=path)
    assert isinstance(spec.config, reg.config_cls)
    return spec


def assert_backward(loss: torch.Tensor, *modules: Any) -> None:
    """Backpropagate ``loss``; if the modules train parameters, some get finite gradients."""
    params = [p for m in modules if isinstance(m, nn.Module) for p in m.parameters()
              if p.requires_grad]
    if not params or not loss.requires_grad:
        assert not params or loss.requires_grad, "loss does not depend on any parameter"
        return
    loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, "no trainable parameter received a gradient"
    for g in grads:
        assert_finite(g, "a gradient")


# ------------------------------------------------------------------ exercisers by kind
def exercise_encoder(reg, spec):
    encoder = spec.build(waveform_signal(16000))
    signal = encoder.produces()
    assert signal.kind in ("frames", "features") and signal.dim >= 1
    encoder.train()
    out = encoder(torch.randn(B, WAVE), WAVE_LENGTHS)
    f = out.features
    assert f.ndim == 3 and f.shape[0] == B and f.shape[2] == signal.dim, tuple(f.shape)
    expected = conv_output_length(WAVE, signal.receptive_field, signal.stride)
    assert abs(f.shape[1] - expected) <= 1, (
        f"{f.shape[1]} frames from {WAVE} samples, but stride {signal.stride} and receptive "
        f"field {signal.receptive_field} imply {expected}")
    assert_finite(f, "features")
    if out.lengths is not None:
        assert out.lengths.shape == (B,) and int(out.lengths.max()) <= f.shape[1]
        assert int(out.lengths[1]) <= int(out.lengths[0])
    loss = f.float().pow(2).mean() + (out.penalty if out.penalty is not None else 0)
    assert_backward(loss, encoder)


def exercise_quantizer(reg, spec):
    quantizer = spec.build(FRAMES)
    dim = quantizer.produces().dim
    x = torch.randn(B, T, FRAMES.dim)
    quantizer.train()
    out = quantizer(x, FRAME_LENGTHS)
    assert out.vectors.shape == (B, T, dim)
    assert out.codes.shape == (B, T, quantizer.groups) and out.codes.dtype == torch.long
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < quantizer.num_vars
    assert_finite(out.vectors, "vectors")
    loss = out.vectors.float().pow(2).mean()
    for extra in (out.aux_loss, out.diversity):
        if extra is not None:
            assert extra.ndim == 0
            assert_finite(extra, "aux loss / diversity")
            loss = loss + extra
    assert_backward(loss, quantizer)
    quantizer.eval()
    with torch.no_grad():
        first, second = quantizer(x, FRAME_LENGTHS).codes, quantizer(x, FRAME_LENGTHS).codes
    assert torch.equal(first, second), "eval-mode codes are not deterministic"


def exercise_aggregator(reg, spec):
    aggregator = spec.build(FRAMES)
    dim = aggregator.produces().dim
    x = torch.randn(B, T, aggregator.input_dim)
    aggregator.train()
    out = aggregator(x, FRAME_LENGTHS)
    assert out.output.shape == (B, T, dim), tuple(out.output.shape)
    assert out.layers, "no layer outputs"
    for layer in out.layers:
        assert layer.shape[:2] == (B, T)
    assert_finite(out.output, "output")
    assert_backward(out.output.float().pow(2).mean(), aggregator)
    if aggregator.produces().causal:
        aggregator.eval()
        with torch.no_grad():
            changed = x.clone()
            changed[:, T // 2:] = torch.randn_like(changed[:, T // 2:])
            a, b = aggregator(x).output, aggregator(changed).output
        assert torch.allclose(a[:, :T // 2], b[:, :T // 2], atol=1e-5), \
            "a causal aggregator's output depends on future frames"


def exercise_masker(reg, spec):
    masker = spec.build(FRAMES)
    x = torch.randn(B, T, FRAMES.dim)
    masker.train()
    y, mask = masker(x, FRAME_LENGTHS)
    assert y.shape == x.shape and mask.shape == (B, T) and mask.dtype == torch.bool
    assert_finite(y, "masked features")
    if mask.any():
        assert_backward(y.float().pow(2).mean(), masker)


def exercise_head(reg, spec):
    dictionary = tiny_dictionary()
    head = spec.build(FRAMES, dictionary=dictionary)
    logits = head(torch.randn(B, T, FRAMES.dim))
    assert logits.shape == (B, T, vocab_size(dictionary))
    assert_finite(logits, "logits")
    assert_backward(logits.float().logsumexp(-1).mean(), head)


def exercise_decoder(reg, spec):
    dictionary = tiny_dictionary()
    v = vocab_size(dictionary)
    decoder = spec.build(Signal(kind="frames", dim=v), dictionary=dictionary)
    emissions = torch.randn(B, T, v).log_softmax(-1)
    hyps = decoder.decode(emissions, torch.tensor([T, 12]))
    assert len(hyps) == B
    for h in hyps:
        assert isinstance(h, Hypothesis) and isinstance(h.text, str)
        assert all(0 <= int(i) < v for i in h.tokens)


def exercise_objective(reg, spec):
    dictionary = tiny_dictionary()
    model, objective = fitting_model(spec, dictionary)
    model.train()
    objective.train()
    out = objective(tiny_batch(dictionary), model, 0)
    assert out.loss.ndim == 0
    assert_finite(out.loss, "loss")
    assert float(torch.as_tensor(out.sample_size)) > 0
    assert_backward(out.loss, model, objective)


def exercise_other(reg, spec):
    component = spec.build(FRAMES)
    base = REGISTRY.kinds[reg.kind].base
    if base is not None:
        assert isinstance(component, base)
    if isinstance(component, nn.Module):
        for p in component.parameters():
            assert_finite(p, "a parameter")


EXERCISERS = {"encoder": exercise_encoder, "quantizer": exercise_quantizer,
              "aggregator": exercise_aggregator, "masker": exercise_masker,
              "head": exercise_head, "decoder": exercise_decoder,
              "objective": exercise_objective}


# ------------------------------------------------------------------ models for objectives
TOY_ENCODER = {"name": "toy_encoder", "dim": 16, "stride": 160}


def model_candidates() -> Iterator[dict]:
    """``model:`` sections from small to varied: a toy encoder and causal toy aggregator
    first, then every smoke-configured encoder, aggregator, quantizer (as targets or input),
    masker and head of the registry."""
    smoke = lambda kind: [smoke_section(r) for r in REGISTRY.of_kind(kind)  # noqa: E731
                          if r.smoke is not None and not r.name.startswith("toy_")]
    encoders = [TOY_ENCODER] + smoke("encoder")
    aggregators = [{"name": "toy_aggregator", "layers": 1, "causal": True},
                   {"name": "toy_aggregator", "layers": 1}] + smoke("aggregator")
    quantizers = [None] + smoke("quantizer")
    maskers = [None] + smoke("masker")
    heads = [None] + smoke("head")
    for enc, agg, q, m, h in itertools.product(encoders, aggregators, quantizers, maskers,
                                               heads):
        for where in (["targets", "input"] if q is not None else ["targets"]):
            section = {"encoder": enc, "aggregator": agg, "quantize": where}
            for key, value in (("quantizer", q), ("masker", m), ("head", h)):
                if value is not None:
                    section[key] = value
            yield section


def fitting_model(spec, dictionary):
    """The first candidate model the objective accepts, built with the core's own builders."""
    from w2v.build import ModelConfig, build_model, build_objective

    refusals = []
    for section in model_candidates():
        cfg = structure(section, ModelConfig, path=("model",))
        try:
            model = build_model(cfg, dictionary=dictionary)
            return model, build_objective(spec, model, dictionary=dictionary)
        except FitError as exc:
            refusals.append(f"{section}: {exc.render()}")
    pytest.fail(f"no smoke-sized model fits objective `{spec.name}`; refusals:\n"
                + "\n".join(refusals[:5]))


def tiny_batch(dictionary) -> Batch:
    v = vocab_size(dictionary)
    first = getattr(dictionary, "nspecial", 1) or 1
    targets = torch.randint(first, v, (B, 5))
    target_lengths = torch.tensor([5, 3])
    pad = getattr(dictionary, "pad", 0)
    targets[1, 3:] = pad
    return Batch(source=torch.randn(B, WAVE), lengths=WAVE_LENGTHS.clone(), ids=torch.arange(B),
                 targets=targets, target_lengths=target_lengths)


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("reg", SMOKE, ids=reg_id)
def test_component_smoke(reg):
    spec = smoke_spec(reg)
    EXERCISERS.get(reg.kind, exercise_other)(reg, spec)


COMPILED_PARTS = [r for r in SMOKE if r.kind in ("encoder", "aggregator")]


@pytest.mark.slow       # inductor compiles C++ on the CPU: about 3 s per component
@pytest.mark.parametrize("reg", COMPILED_PARTS, ids=reg_id)
def test_component_compiles_under_trainer_compile(reg):
    """``trainer.compile`` compiles a model's encoder and aggregator (their blocks, or the
    whole part): each registered one must train compiled without falling back to eager
    mode, and compute eager mode's output in evaluation."""
    from w2v.train.compiling import compile_model

    torch._dynamo.reset()
    part = smoke_spec(reg).build(waveform_signal(16000) if reg.kind == "encoder" else FRAMES)
    if reg.kind == "encoder":
        inputs, output = (torch.randn(B, WAVE), WAVE_LENGTHS), (lambda out: out.features)
    else:
        inputs, output = (torch.randn(B, T, part.input_dim), FRAME_LENGTHS), \
            (lambda out: out.output)
    with torch.no_grad():
        eager = output(part.eval()(*inputs))
    warnings: list[str] = []
    regions = compile_model(nn.ModuleDict({reg.kind: part}), warnings.append, names=(reg.kind,))
    part.train()
    assert_backward(output(part(*inputs)).float().pow(2).mean(), part)
    with torch.no_grad():
        compiled = output(part.eval()(*inputs))
    assert warnings == [] and regions.failed is None, warnings
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("reg", NO_SMOKE or [None], ids=reg_id)
def test_component_without_smoke_says_why(reg):
    if reg is None:
        pytest.skip("every registered component has a smoke config")
    reason = getattr(reg, "no_smoke_reason", None) or getattr(reg.cls, "no_smoke_reason", None)
    assert reason, (
        f"{reg.kind} `{reg.name}` ({reg.plugin.describe()}) registers no smoke config and does "
        f"not say why: pass `smoke={{...}}` to add_component, or set a class attribute "
        f"`no_smoke_reason = \"...\"` on {reg.cls.__qualname__}.")
    pytest.skip(f"{reg.kind} `{reg.name}` has no smoke config: {reason}")


def test_builtin_plugins_all_load():
    """A built-in family that fails to load would silently drop out of the smoke tests."""
    failed = [f"{s.info.name}: {s.error}" for s in PLUGINS.statuses
              if s.info.dist == "w2v" and not s.loaded]
    assert not failed, "\n".join(failed)


def test_smoke_harness_covers_every_kind_it_knows():
    kinds = {r.kind for r in SMOKE}
    assert {"encoder", "quantizer", "aggregator", "objective", "decoder"} <= kinds
    assert "toy_norm" in kinds  # a plugin-declared kind goes through exercise_other


def test_candidate_models_start_small():
    first = next(model_candidates())
    assert first["encoder"] == TOY_ENCODER and first["aggregator"]["causal"] is True
    assert not math.isnan(FRAMES.frame_rate)


def test_no_smoke_check_demands_a_reason():
    """The no-smoke test fails for an undocumented registration and skips a documented one."""
    import attrs

    from w2v.registry import PluginInfo, Registration

    class Undocumented:
        @attrs.define
        class Config:
            pass

    class Documented(Undocumented):
        no_smoke_reason = "needs a KenLM binary"

    plugin = PluginInfo(name="p", module="p")
    bare = Registration(kind="decoder", name="bare", cls=Undocumented,
                        config_cls=Undocumented.Config, plugin=plugin)
    with pytest.raises(AssertionError, match="registers no smoke config"):
        test_component_without_smoke_says_why(bare)
    documented = attrs.evolve(bare, cls=Documented)
    with pytest.raises(pytest.skip.Exception, match="KenLM"):
        test_component_without_smoke_says_why(documented)
