"""Mix and match, proven: every encoder x quantizer (or none) x aggregator (or none) x objective.

The walk is built from the registry at collection time (the installed plugins, without the
test-only toy plugin), by registered NAME, so components that move between plugin families or
arrive in a new package are covered the moment they register. Each component comes with its
smoke config; the few registered without one (they read features or unit ids, or need
unpaired text) get the small config in :data:`NO_SMOKE_CONFIGS`.

For each combination the model is built from a ``model:`` section with the core's builders,
then the objective (:func:`w2v.build.build_objective`, which runs ``check_model``):

* it fits: two optimizer updates on a tiny batch, the trainer's own way (``forward_and_score``,
  i.e. ``objective(batch, model(batch, **objective.request(batch, model, step)))``; the loss
  divided by its sample size; the optimizer :func:`w2v.train.optim.build_optimizers` makes,
  one per parameter group for composite objectives, stepped as ``group_for_step`` says).
  Loss, gradients and parameters stay finite and some parameter moves.
* it does not fit: the build raises :class:`~w2v.errors.ConfigError` (``FitError`` included)
  before any forward, whose message names two of the combination's components (a registered
  name, or the slot a missing one would fill: "no aggregator") and matches one of the known
  reasons in :data:`REASONS`.

Per objective, :data:`SETUPS` says what else its model needs (a masker, a head, where the
quantizer is wired: the paper's placement) and what its batch carries (labels for CTC, unpaired
phone text for wav2vec-U); the batch's ``source`` follows the encoder's ``consumes``
(waveforms, feature frames or unit ids). The counts of fitting and refused combinations are
documented in docs/architecture.md ("Mix and match"); :func:`test_documented_counts` keeps
that page honest.
"""

from __future__ import annotations

import collections
import functools
import itertools
import re
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest
import torch

from component_kit import assert_finite, reg_id, smoke_section, tiny_dictionary
from w2v import plugin_manager
from w2v.build import ModelConfig, build_model, build_objective
from w2v.config.structure import structure, structure_component
from w2v.errors import ConfigError, UserError
from w2v.interfaces import Batch

PLUGINS = plugin_manager.load_plugins()
REGISTRY = PLUGINS.registry
ARCHITECTURE_MD = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

#: Configs for components registered without smoke (tiny; widths chosen to fit the smoke
#: aggregators, so only real disagreements are refused).
NO_SMOKE_CONFIGS: dict[tuple[str, str], dict] = {
    ("encoder", "precomputed"): {"dim": 16, "frame_stride": 160},
    ("encoder", "unit_embedding"): {"dim": 16, "vocab_size": 12, "frame_stride": 160},
    ("objective", "bert"): {"mask_prob": 0.3, "mask_length": 2, "tie_embeddings": False},
    ("objective", "wav2vec_u"): {"discriminator": {"dim": 8, "kernel": 3}},
}

B = 2
WAVE_LENGTHS = torch.tensor([4000, 3000])
FRAME_LENGTHS = torch.tensor([20, 15])
UNIT_VOCAB = NO_SMOKE_CONFIGS[("encoder", "unit_embedding")]["vocab_size"]


# ------------------------------------------------------------------ what is walked
def section(reg) -> dict | None:
    """The registration's config as a recipe section, or None when it has none here."""
    if reg.smoke is not None:
        return smoke_section(reg)
    config = NO_SMOKE_CONFIGS.get((reg.kind, reg.name))
    return {"name": reg.name, **config} if config is not None else None


def walked(kind: str) -> list:
    return [r for r in REGISTRY.of_kind(kind) if section(r) is not None]


OUT_OF_SCOPE = [r for kind in ("encoder", "quantizer", "aggregator", "objective")
                for r in REGISTRY.of_kind(kind) if section(r) is None]


@attrs.frozen
class Combo:
    """One combination, by registered names (None: the slot stays empty)."""

    encoder: str
    quantizer: str | None
    aggregator: str | None
    objective: str

    def __str__(self) -> str:
        return "-".join(n or "none" for n in attrs.astuple(self))


COMBOS = [Combo(e.name, q.name if q else None, a.name if a else None, o.name)
          for e, q, a, o in itertools.product(walked("encoder"), [None, *walked("quantizer")],
                                              [None, *walked("aggregator")], walked("objective"))]


# ------------------------------------------------------------------ per-objective needs
def unpaired_text(batch: Batch, dictionary) -> None:
    """wav2vec-U: phone sentences beside the audio (``extra['text']`` ``[B', L]``)."""
    text = torch.randint(dictionary.nspecial, len(dictionary), (3, 6))
    text[2, 4:] = dictionary.pad
    batch.extra.update(text=text, text_lengths=torch.tensor([6, 6, 4]))


@attrs.frozen
class Setup:
    """What an objective's model and batch need beyond the walked slots.

    Attributes:
        quantize: where a quantizer is wired (the objective's paper: wav2vec 2.0 ``targets``,
            vq-wav2vec ``both``; objectives that read no targets get it on the ``input``).
        masker: the model gets the smoke ``span`` masker.
        head: the registered head the objective trains, or None.
        batch: adds what the objective reads beyond source and labels to a batch.
    """

    quantize: str
    masker: bool = False
    head: str | None = None
    batch: Callable[[Batch, Any], None] | None = None


SETUPS: dict[str, Setup] = {
    "masked_contrastive": Setup(quantize="targets", masker=True),
    "future_contrastive": Setup(quantize="both"),
    "ctc": Setup(quantize="input", head="ctc"),
    "bert": Setup(quantize="input"),
    "wav2vec_u": Setup(quantize="input", head="wav2vec_u_generator", batch=unpaired_text),
}


def setup_for(objective: str) -> Setup:
    """:data:`SETUPS`, or for a new objective what its class declares (mask, targets)."""
    if objective in SETUPS:
        return SETUPS[objective]
    cls = REGISTRY.get("objective", objective).cls
    return Setup(quantize="targets" if getattr(cls, "targets", "none") != "none" else "input",
                 masker=bool(getattr(cls, "wants_mask", False)))


def model_section(combo: Combo) -> dict:
    setup = setup_for(combo.objective)
    pick = lambda kind, name: section(REGISTRY.get(kind, name))  # noqa: E731
    out: dict[str, Any] = {"encoder": pick("encoder", combo.encoder),
                           "quantize": setup.quantize if combo.quantizer else "none"}
    if combo.quantizer:
        out["quantizer"] = pick("quantizer", combo.quantizer)
    if combo.aggregator:
        out["aggregator"] = pick("aggregator", combo.aggregator)
    if setup.masker:
        out["masker"] = pick("masker", "span")
    if setup.head:
        out["head"] = pick("head", setup.head)
    return out


def build_combination(combo: Combo, dictionary):
    """``(model, objective)`` built and checked as a stage does; raises the refusal."""
    cfg = structure(model_section(combo), ModelConfig, path=("model",))
    model = build_model(cfg, dictionary=dictionary)
    spec = structure_component("objective", section(REGISTRY.get("objective", combo.objective)),
                               path=("objective",))
    return model, build_objective(spec, model, dictionary=dictionary)


def tiny_batch(combo: Combo, dictionary) -> Batch:
    """Two utterances in what the encoder consumes, letter labels, and the objective's extras."""
    encoder = REGISTRY.get("encoder", combo.encoder)
    consumes = getattr(encoder.cls, "consumes", "waveform")
    if consumes == "tokens":
        source = torch.randint(4, UNIT_VOCAB, (B, int(FRAME_LENGTHS[0])))
        source[1, int(FRAME_LENGTHS[1]):] = 1                          # <pad>
        lengths = FRAME_LENGTHS.clone()
    elif consumes == "features":
        dim = section(encoder)["dim"]
        source = torch.randn(B, int(FRAME_LENGTHS[0]), dim)
        source[1, int(FRAME_LENGTHS[1]):] = 0
        lengths = FRAME_LENGTHS.clone()
    else:
        source = torch.randn(B, int(WAVE_LENGTHS[0]))
        source[1, int(WAVE_LENGTHS[1]):] = 0
        lengths = WAVE_LENGTHS.clone()
    targets = torch.randint(dictionary.nspecial, len(dictionary), (B, 5))
    targets[1, 3:] = dictionary.pad
    batch = Batch(source=source, lengths=lengths, ids=torch.arange(B), targets=targets,
                  target_lengths=torch.tensor([5, 3]))
    extra = setup_for(combo.objective).batch
    if extra is not None:
        extra(batch, dictionary)
    return batch


# ------------------------------------------------------------------ training
def counted_modules(model, objective) -> list:
    """What the trainer tells the update count (a root that has the hook forwards it itself)."""
    out = []
    for root in (model, objective):
        if hasattr(root, "set_num_updates"):
            out.append(root)
        else:
            out += [m for m in root.modules() if m is not root and hasattr(m, "set_num_updates")]
    return out


def train_two_updates(model, objective, batch: Batch) -> list[float]:
    """Two updates as :class:`w2v.train.trainer.Trainer` makes them; the losses per unit."""
    from w2v.train.config import TrainerConfig
    from w2v.train.optim import build_optimizers, named_trainable
    from w2v.train.trainer import forward_and_score

    groups = objective.parameter_groups(model)
    composite = {k: list(v) for k, v in groups.items()} if groups is not None else None
    optimizers = build_optimizers(model, objective, TrainerConfig(lr=1e-3), composite)
    named = named_trainable(model, objective)
    before = {n: p.detach().clone() for n, p in named}
    model.train()
    objective.train()
    losses = []
    for update in range(2):
        for m in counted_modules(model, objective):
            m.set_num_updates(update)
        group = objective.group_for_step(update) if composite is not None else "default"
        out = forward_and_score(model, objective, batch, update)
        assert out.loss.ndim == 0, f"the loss is {list(out.loss.shape)}, not a scalar"
        assert_finite(out.loss, f"the loss of update {update}")
        assert composite is None or out.group == group, (out.group, group)
        size = float(torch.as_tensor(out.sample_size))
        assert size > 0, "the objective scored nothing (sample size 0)"
        (out.loss / size).backward()
        for name, p in named:
            if p.grad is not None:
                assert_finite(p.grad, f"the gradient of {name} at update {update}")
        optimizers[group].step()
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()) / size)
    for name, p in named:
        assert_finite(p, f"parameter {name} after two updates")
    moved = [n for n, p in named if not torch.equal(p.detach(), before[n])]
    assert moved, "two updates changed no parameter"
    return losses


# ------------------------------------------------------------------ refusals
#: Why combinations are refused: (reason, pattern its message matches). A refusal that
#: matches none fails the test: name the new reason here (and in docs/architecture.md).
REASONS: list[tuple[str, str]] = [
    ("the objective needs a context network", r"has no aggregator"),
    ("the objective trains its head without a context network", r"has a context network"),
    ("future prediction needs a causal context network", r"is not causal"),
    ("bidirectional prediction refuses a causal context network", r"from both sides.* is causal"),
    ("the objective reads unit ids the encoder does not make", r"not `unit_embedding`"),
    ("the quantizer's width differs from the encoder's with nothing between to project",
     r"quantizer `[^`]+` produces width \d+ but encoder"),
]


def refusal_reason(message: str) -> str | None:
    for reason, pattern in REASONS:
        if re.search(pattern, message):
            return reason
    return None


def named_components(combo: Combo, message: str) -> set[str]:
    """The combination's slots a refusal names: by registered name in backticks (or a plain
    word), or, for an empty slot, by the slot's own word ("no aggregator")."""
    named = set()
    setup = setup_for(combo.objective)
    slots = {"encoder": combo.encoder, "quantizer": combo.quantizer,
             "aggregator": combo.aggregator, "objective": combo.objective,
             "head": setup.head, "masker": "span" if setup.masker else None}
    for slot, name in slots.items():
        if name is not None and re.search(rf"`{re.escape(name)}`|\b{re.escape(name)}\b",
                                          message):
            named.add(slot)
        elif name is None and re.search(rf"\bno {slot}\b", message):
            named.add(slot)
    return named


def outcome(combo: Combo) -> str:
    """``fits`` or the refusal's reason (builds only; no training)."""
    torch.manual_seed(0)
    try:
        build_combination(combo, tiny_dictionary())
    except UserError as exc:
        return refusal_reason(exc.render()) or f"unknown: {exc.render()}"
    return "fits"


@functools.cache
def all_outcomes() -> dict[Combo, str]:
    plugin_manager.reset(PLUGINS)
    return {c: outcome(c) for c in COMBOS}


def documented_lines(outcomes: dict[Combo, str]) -> list[str]:
    """The lines docs/architecture.md's "Mix and match" section must hold for ``outcomes``."""
    counts = collections.Counter(outcomes.values())
    fits = counts.pop("fits", 0)
    lines = [f"**{fits} of {len(outcomes)} combinations fit**",
             f"{len(outcomes) - fits} are refused before training"]
    lines += [f"| {n} | {reason} |" for reason, n in counts.most_common()]
    for name in sorted({c.objective for c in outcomes}):
        mine = [o for c, o in outcomes.items() if c.objective == name]
        lines.append(f"| `{name}` | {mine.count('fits')} of {len(mine)} |")
    return lines


# ------------------------------------------------------------------ the tests
@pytest.fixture(autouse=True)
def installed_plugins():
    """The plugin set the parametrisation came from (components resolve by name)."""
    plugin_manager.reset(PLUGINS)
    torch.manual_seed(0)


@pytest.mark.parametrize("combo", COMBOS, ids=str)
def test_combination_trains_or_is_refused_before_training(combo: Combo):
    dictionary = tiny_dictionary()
    try:
        model, objective = build_combination(combo, dictionary)
    except UserError as exc:
        message = exc.render()
        assert isinstance(exc, ConfigError), \
            f"{combo}: refused with {type(exc).__name__}, not a ConfigError/FitError: {message}"
        named = named_components(combo, message)
        assert len(named) >= 2, (
            f"{combo}: the refusal must name both components that disagree; it names "
            f"{sorted(named) or 'none'}: {message}")
        assert refusal_reason(message), f"{combo}: refused for a reason REASONS lacks: {message}"
        return
    train_two_updates(model, objective, tiny_batch(combo, dictionary))


@pytest.mark.parametrize("reg", OUT_OF_SCOPE or [None], ids=reg_id)
def test_out_of_scope_components_say_why(reg):
    if reg is None:
        return                                          # every component is walked
    reason = getattr(reg, "no_smoke_reason", None) or getattr(reg.cls, "no_smoke_reason", None)
    assert reason, f"{reg.kind} `{reg.name}` has no smoke config and does not say why"
    pytest.skip(f"{reg.kind} `{reg.name}` is out of the mix-and-match walk (no smoke config, "
                f"none in NO_SMOKE_CONFIGS): {reason}")


def test_every_component_fits_somewhere_and_every_reason_occurs():
    failed = [f"{s.info.name}: {s.error}" for s in PLUGINS.statuses
              if s.info.dist == "w2v" and not s.loaded]
    assert not failed, "built-in plugins failed to load, so the walk misses their " \
                       "components:\n" + "\n".join(failed)
    outcomes = all_outcomes()
    unknown = {str(c): o for c, o in outcomes.items() if o.startswith("unknown")}
    assert not unknown, unknown
    fitting = [c for c, o in outcomes.items() if o == "fits"]
    for slot in ("encoder", "quantizer", "aggregator", "objective"):
        names = {getattr(c, slot) for c in COMBOS} - {None}
        fit = {getattr(c, slot) for c in fitting}
        assert names <= fit, f"{slot}s that fit in no combination: {sorted(names - fit)}"
    seen = set(outcomes.values())
    assert {r for r, _ in REASONS} <= seen, \
        f"reasons no combination shows (drop them): {sorted({r for r, _ in REASONS} - seen)}"
    print("\n" + "\n".join(documented_lines(outcomes)))


def test_documented_counts():
    """docs/architecture.md states the counts this walk finds (update it when they change)."""
    text = "\n" + (ARCHITECTURE_MD.read_text() if ARCHITECTURE_MD.exists() else "")
    _, found, section_text = text.partition("\n## Mix and match\n")
    assert found, f"{ARCHITECTURE_MD} has no '## Mix and match' section"
    section_text = section_text.split("\n## ", 1)[0]
    missing = [line for line in documented_lines(all_outcomes()) if line not in section_text]
    assert not missing, ("docs/architecture.md's Mix and match section is out of date; it "
                         "should contain:\n" + "\n".join(documented_lines(all_outcomes())))
