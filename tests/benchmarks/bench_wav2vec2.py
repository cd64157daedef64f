"""wav2vec 2.0 on CPU: w2v against Hugging Face and torchaudio doing provably the same work.

Three measurements, each A/B interleaved in one process with the same threads:

1. **Training update** (forward, backward, fused AdamW step) of wav2vec 2.0 BASE:
   Hugging Face ``Wav2Vec2ForPreTraining`` (random init, seeded) against the
   same weights imported into w2v (:func:`w2v.plugins.wav2vec2.interop.from_hf`)
   trained by :class:`~w2v.plugins.wav2vec2.objective.MaskedContrastiveObjective`.
   Both get the same waveform, the same mask and the same negatives; before
   any timing the contrastive losses, code perplexities and gradients are
   checked equal (eval mode: no dropout, argmax quantizer), else it aborts.
2. **Feature extraction** (inference_mode): w2v ``extract_features`` against
   torchaudio's ``wav2vec2_model`` with the same weights (torchaudio's own
   ``import_huggingface_model``) and Hugging Face ``Wav2Vec2Model``; outputs
   are checked equal (max abs diff <= 1e-4) first.
3. **bf16 autocast** training updates of w2v (and, for a same-dtype
   comparison, of Hugging Face), with the bf16 loss next to the fp32 loss.

4. Optional sides: ``--compile`` (w2v with ``trainer.compile``'s regional torch.compile;
   the compile time is the first call minus the median) and ``--checkpointing`` (w2v with
   ``trainer.activation_checkpointing``: the Transformer blocks and the conv encoder recomputed).

Feature extraction with ``--fx-batch`` above 1 runs a padded batch (lengths from the full
``--fx-seconds`` down to 60 % of it) and compares the valid frames. ``--fx-memory`` adds its
peak RSS per side (w2v, torchaudio, HF), each extractor built alone in a run of this script
(``--only-fx SIDE``) as for training below.

Peak RSS per side comes from separate runs of this script (``--only SIDE``, spawned by
the main run). Each builds its own side alone: w2v from the same architecture, with no HF
model in the process. Each reads ``VmHWM`` after resetting it once the build is done, so
the number is the training steps' own peak. ``ru_maxrss`` cannot be used here, because it
carries the parent's peak across ``exec``. The sides take turns, ``--memory-runs`` runs
each (3 by default), and the run with each side's median step memory is reported. Nothing
is written to disk.

    python tests/benchmarks/bench_wav2vec2.py                 # BASE, 2 x 5 s, 2 threads
    python tests/benchmarks/bench_wav2vec2.py --small         # quick check, narrow model
    python tests/benchmarks/bench_wav2vec2.py --only w2v      # one side: step times, peak RSS
    python tests/benchmarks/bench_wav2vec2.py --no-train --no-memory --fx-memory --fx-seconds 60
    python tests/benchmarks/bench_wav2vec2.py --profile w2v   # torch.profiler table of one step
    python tests/benchmarks/bench_wav2vec2.py --flops         # FLOPs per update, compute floor
    python tests/benchmarks/bench_wav2vec2.py --trajectory 8  # bf16 vs fp32 loss, seeded updates
"""

from __future__ import annotations

import os
import sys


from runs import pin_threads  # noqa: E402  (the scripts' folder is on sys.path)

THREADS = pin_threads(sys.argv[1:])  # before torch loads

import argparse  # noqa: E402
import copy  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import dataclasses  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)

SIDES = ("hf", "w2v", "hf-bf16", "w2v-bf16", "w2v-compile", "w2v-ckpt")
LOSS_RTOL = 1e-4       # contrastive loss, w2v vs HF, fp32
GRAD_RTOL = 1e-3       # ||g_w2v - g_hf|| / ||g_hf|| per checked parameter
FEATURE_ATOL = 1e-4    # feature extraction, max abs difference


# ----------------------------------------------------------------- configuration
def hf_config(args):
    """The Hugging Face config of the benchmarked model (BASE, or narrow with ``--small``)."""
    from transformers import Wav2Vec2Config

    drop = 0.0 if args.no_dropout else 0.1
    common = dict(
        conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=False,
        feat_extract_norm="group", do_stable_layer_norm=False,
        num_codevector_groups=2, num_codevectors_per_group=320, num_negatives=100,
        contrastive_logits_temperature=0.1, diversity_loss_weight=0.1,
        mask_time_prob=0.65, mask_time_length=10, mask_time_min_masks=2,
        hidden_dropout=drop, attention_dropout=drop, activation_dropout=0.0,
        feat_proj_dropout=drop, feat_quantizer_dropout=drop, final_dropout=0.0, layerdrop=0.0,
        attn_implementation=args.hf_attn)
    if args.small:
        return Wav2Vec2Config(
            conv_dim=(128,) * 7, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=1024, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8,
            codevector_dim=128, proj_codevector_dim=128, **common)
    return Wav2Vec2Config(
        conv_dim=(512,) * 7, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
        codevector_dim=256, proj_codevector_dim=256, **common)


@dataclass
class Sides:
    """The models under test; any may be None when a run needs only some."""

    cfg: object
    hf: torch.nn.Module | None = None
    w2v: torch.nn.Module | None = None
    objective: torch.nn.Module | None = None


def build_hf(args):
    from transformers import Wav2Vec2ForPreTraining

    cfg = hf_config(args)
    torch.manual_seed(args.seed)
    hf = Wav2Vec2ForPreTraining(cfg)
    if hf.config._attn_implementation != args.hf_attn:
        raise SystemExit(f"HF chose attention {hf.config._attn_implementation!r}, "
                         f"not {args.hf_attn!r}")
    return cfg, hf


def import_w2v(cfg, hf_state: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The HF weights as a w2v SpeechModel + its masked contrastive objective."""
    from w2v.plugins.wav2vec2.interop import from_hf
    from w2v.plugins.wav2vec2.objective import MaskedContrastiveConfig, MaskedContrastiveObjective

    model = from_hf((cfg, hf_state))
    report = model.load_report
    config = MaskedContrastiveConfig(contrastive_loss=None, **report.objective_config)
    objective = MaskedContrastiveObjective.from_config(config, model.context_signal(), model=model)
    objective.load_state_dict(report.objective_state)
    objective.check_model(model)
    return model, objective


def build_sides(args, which: str = "both") -> Sides:
    cfg, hf = build_hf(args)
    sides = Sides(cfg=cfg, hf=hf)
    if which in ("both", "w2v"):
        sides.w2v, sides.objective = import_w2v(cfg, hf.state_dict())
    if which == "w2v":
        sides.hf = None
        del hf
        gc.collect()
    return sides


# ------------------------------------------------------------------------ inputs
@dataclass
class Inputs:
    wave: torch.Tensor          # [B, S]
    mask: torch.Tensor          # [B, T] bool, equal count per row
    hf_neg: torch.Tensor        # [B, T, K] HF flat B*T indices
    w2v_neg: torch.Tensor       # [M, K] indices into the masked frames

    def batch(self):
        from w2v.interfaces import Batch

        return Batch(source=self.wave, lengths=None,
                     extra={"mask": self.mask, "neg_idx": self.w2v_neg})


def make_inputs(args, cfg, batch: int, seconds: float, seed: int) -> Inputs:
    """A seeded waveform, a span mask (0.65 x 10, equal counts) and HF-sampled negatives."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import (_compute_mask_indices,
                                                                _sample_negative_indices)

    from w2v.plugins.wav2vec2.negatives import negatives_from_hf

    samples = int(round(seconds * 16000))
    g = torch.Generator().manual_seed(seed)
    wave = torch.randn(batch, samples, generator=g)
    T = samples
    for _, k, s in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride):
        T = (T - k) // s + 1
    rng = np.random.default_rng(seed)
    np.random.seed(int(rng.integers(1 << 31)))
    mask = torch.from_numpy(_compute_mask_indices((batch, T), cfg.mask_time_prob,
                                                  cfg.mask_time_length, min_masks=2))
    # equal masked count per row (fairseq require_same_masks; HF's sampler does not need it)
    keep = int(mask.sum(1).min())
    for b in range(batch):
        on = mask[b].nonzero().squeeze(1)
        mask[b, on[keep:]] = False
    hf_neg = torch.from_numpy(_sample_negative_indices((batch, T), cfg.num_negatives,
                                                       mask.numpy())).long()
    return Inputs(wave=wave, mask=mask, hf_neg=hf_neg, w2v_neg=negatives_from_hf(hf_neg, mask))


# ------------------------------------------------------------------------ parity
def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def check_training_parity(sides: Sides, inputs: Inputs) -> dict:
    """Eval mode (no dropout, argmax codes): contrastive loss, code perplexity and gradients
    of w2v equal HF's; aborts otherwise. Leaves no gradients behind."""
    from w2v.plugins.wav2vec2.objective import MaskedContrastiveConfig, MaskedContrastiveObjective

    hf, model, obj = sides.hf.eval(), sides.w2v.eval(), sides.objective
    # contrastive term only, so gradients compare like for like (HF's eval-mode
    # "diversity" is the hard code perplexity and has no gradient)
    plain = MaskedContrastiveObjective(
        MaskedContrastiveConfig(contrastive_loss=None, num_negatives=obj.config.num_negatives,
                                final_dim=obj.final_dim, logit_temp=obj.config.logit_temp,
                                loss_weights=[0.0, 0.0]),
        obj.final_proj.in_features, obj.project_q.in_features)
    plain.load_state_dict(obj.state_dict())
    theirs = hf(inputs.wave, mask_time_indices=inputs.mask,
                sampled_negative_indices=inputs.hf_neg)
    theirs.contrastive_loss.backward()
    ours = plain(inputs.batch(), model)
    ours.loss.backward()
    M = int(inputs.mask.sum())
    result = {
        "masked_frames": M,
        "hf_contrastive": float(theirs.contrastive_loss),
        "w2v_contrastive": float(ours.loss),
        "hf_code_ppl": float(theirs.codevector_perplexity),
        "w2v_code_ppl": float(ours.stats["code_perplexity"]),
    }
    layer0 = model.aggregator.layers[0]
    pairs = {   # name: (HF gradient, w2v gradient)
        "conv0.weight": (hf.wav2vec2.feature_extractor.conv_layers[0].conv.weight.grad,
                         model.encoder.conv_layers[0].conv.weight.grad),
        "pos_conv.bias": (hf.wav2vec2.encoder.pos_conv_embed.conv.bias.grad,
                          model.aggregator.positional.conv.bias.grad),
        "layer0.fc1.weight": (
            hf.wav2vec2.encoder.layers[0].feed_forward.intermediate_dense.weight.grad,
            layer0.fc1.weight.grad),
        "layer0.v_proj.weight": (hf.wav2vec2.encoder.layers[0].attention.v_proj.weight.grad,
                                 layer0.self_attn.qkv.weight.grad.chunk(3)[2]),
        "project_q.weight": (hf.project_q.weight.grad, plain.project_q.weight.grad),
        "final_proj.weight": (hf.project_hid.weight.grad, plain.final_proj.weight.grad),
    }
    grads = {name: _rel(ours_g, hf_g) for name, (hf_g, ours_g) in pairs.items()}
    result["grad_rel_err"] = grads
    for m in (hf, model, plain):
        m.zero_grad(set_to_none=True)
    loss_err = abs(result["w2v_contrastive"] - result["hf_contrastive"]) / abs(result["hf_contrastive"])
    result["loss_rel_err"] = loss_err
    ok = (loss_err <= LOSS_RTOL and abs(result["w2v_code_ppl"] - result["hf_code_ppl"]) <= 1e-3
          and max(grads.values()) <= GRAD_RTOL)
    result["ok"] = ok
    return result


def eval_loss(step: Callable[[], float]) -> float:
    with torch.no_grad():
        return step()


def bf16_losses(sides: Sides, inputs: Inputs) -> dict:
    """Eval-mode total loss of each side in fp32 and under bf16 autocast (same inputs)."""
    sides.hf.eval(), sides.w2v.eval()
    batch = inputs.batch()
    out = {}
    for dtype in (None, torch.bfloat16):
        tag = "bf16" if dtype else "fp32"
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            h = sides.hf(inputs.wave, mask_time_indices=inputs.mask,
                         sampled_negative_indices=inputs.hf_neg)
            w = sides.objective(batch, sides.w2v)
        out[f"hf_{tag}"] = float(h.contrastive_loss)
        out[f"w2v_{tag}"] = float(w.stats["contrastive"]) * w.sample_size
    return out


# ------------------------------------------------------------------------ updates
def hf_update(hf, inputs: Inputs, opt, bf16: bool) -> Callable[[], float]:
    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = hf(inputs.wave, mask_time_indices=inputs.mask,
                     sampled_negative_indices=inputs.hf_neg)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())
    return step


def w2v_update(model, objective, inputs: Inputs, opt, bf16: bool,
               checkpointing: bool = False) -> Callable[[], float]:
    batch = inputs.batch()

    def step() -> float:
        for part in (model.encoder, model.aggregator):          # sides share the model
            part.set_activation_checkpointing(checkpointing)    # = trainer.activation_checkpointing
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = objective(batch, model)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())
    return step


def adamw(*modules) -> torch.optim.Optimizer:
    """The same optimizer on both sides: torch's fused AdamW, Hugging Face Trainer's default
    (``adamw_torch_fused``) and what w2v's trainer runs for ``adamw`` and ``adam``."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, fused=True)


def refusing_eager(step: Callable[[], float], regions) -> Callable[[], float]:
    """``step``, stopping the benchmark once its compiled regions have fallen back to eager
    mode: their timings would be eager ones under the compiled side's name."""
    def checked() -> float:
        loss = step()
        if regions.failed is not None:
            raise SystemExit(f"w2v-compile: compilation failed, the regions run eagerly "
                             f"({regions.failed}): no compiled figure to report")
        return loss
    return checked


def update_steps(sides: Sides, inputs: Inputs, names) -> dict[str, Callable[[], float]]:
    steps = {}
    if any(n.startswith("hf") for n in names):
        sides.hf.train()
        opt = adamw(sides.hf)
        for n in names:
            if n.startswith("hf"):
                steps[n] = hf_update(sides.hf, inputs, opt, n.endswith("bf16"))
    if any(n.startswith("w2v") and n != "w2v-compile" for n in names):
        sides.w2v.train(), sides.objective.train()
        opt = adamw(sides.w2v, sides.objective)
        for n in names:
            if n.startswith("w2v") and n != "w2v-compile":
                steps[n] = w2v_update(sides.w2v, sides.objective, inputs, opt, n.endswith("bf16"),
                                      checkpointing=n == "w2v-ckpt")
    if "w2v-compile" in names:   # its own copy: compilation changes the modules in place
        from w2v.train.compiling import compile_model

        model, objective = copy.deepcopy(sides.w2v).train(), copy.deepcopy(sides.objective).train()
        regions = compile_model(model, lambda text: print(f"  WARNING: {text}", flush=True))
        print(f"  w2v-compile: compiled {', '.join(regions.names)} (dynamic shapes)", flush=True)
        steps["w2v-compile"] = refusing_eager(
            w2v_update(model, objective, inputs, adamw(model, objective), False), regions)
    return {n: steps[n] for n in names}


# ------------------------------------------------------------------------- timing
def busy_cpu_s() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat; steal counts as busy)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Call:
    wall: float                 # seconds
    cpu: float                  # this process's CPU seconds (threads x wall when unshared)
    foreign: float              # other processes' CPU, in cores, averaged over the call
    value: float                # what the call returned (the loss)


def timed(fn: Callable[[], float]) -> Call:
    gc.collect()
    b0, c0, t0 = busy_cpu_s(), time.process_time(), time.perf_counter()
    value = fn()
    t1, c1, b1 = time.perf_counter(), time.process_time(), busy_cpu_s()
    wall = t1 - t0
    return Call(wall, c1 - c0, max(0.0, (b1 - b0) - (c1 - c0)) / wall, value)


def foreign_load(window: float = 1.0) -> float:
    """Cores other processes use, measured over ``window`` seconds while this one sleeps."""
    b0, c0, t0 = busy_cpu_s(), time.process_time(), time.perf_counter()
    time.sleep(window)
    own = time.process_time() - c0
    return max(0.0, busy_cpu_s() - b0 - own) / (time.perf_counter() - t0)


def wait_quiet(limit: float, threshold: float, label: str) -> float:
    """Sleep until other processes use < ``threshold`` cores (at most ``limit`` s); the
    last measured foreign load."""
    start = time.perf_counter()
    load_now = foreign_load()
    told = False
    while load_now >= threshold and time.perf_counter() - start < limit:
        if not told:
            print(f"  [{label}] other processes use {load_now:.2f} cores: waiting up to "
                  f"{limit:.0f} s for quiet", flush=True)
            told = True
        load_now = foreign_load(2.0)
    return load_now


@dataclass
class Timing:
    """One side's timed calls, one per round; ``used`` marks the rounds the ratios use."""

    calls: list[Call]
    used: list[bool]
    warmup: list[float] = dataclasses.field(default_factory=list)   # untimed walls, in order

    def sel(self, attr: str) -> list[float]:
        return [getattr(c, attr) for c, u in zip(self.calls, self.used) if u]


def interleaved(fns: dict[str, Callable[[], float]], args, label: str) -> dict[str, Timing]:
    """``args.warmup`` untimed rounds, then timed rounds until ``args.repeats`` are *clean*
    (other processes used < ``args.quiet`` cores during every call of the round) or
    ``args.repeats + args.extra_rounds`` were run. Each round calls every side once, in
    alternating order (A B .. / .. B A) so slow drifts hit both sides equally, after waiting
    (up to ``args.wait_quiet`` s) for the machine to be quiet. Ratios then use the clean
    rounds, or every round (flagged) when fewer than 3 were clean."""
    names = list(fns)
    out = {n: Timing([], []) for n in names}
    for r in range(args.warmup):
        for n in names:
            c = timed(fns[n])
            out[n].warmup.append(c.wall)
            print(f"  [{label}] warm-up {r + 1}/{args.warmup} {n:9s} {c.wall:7.3f} s", flush=True)
    clean = 0
    for r in range(args.repeats + args.extra_rounds):
        if clean >= args.repeats:
            break
        wait_quiet(args.wait_quiet, args.quiet, label)
        for n in (names if r % 2 == 0 else names[::-1]):
            out[n].calls.append(timed(fns[n]))
        worst = max(out[n].calls[-1].foreign for n in names)
        ok = worst < args.quiet
        clean += ok
        row = "  ".join(f"{n} {out[n].calls[-1].wall:7.3f} s" for n in names)
        print(f"  [{label}] round {r + 1}: {row}   other load {worst:.2f} cores"
              f"{'' if ok else '  (contended)'}", flush=True)
    flags = [max(out[n].calls[i].foreign for n in names) < args.quiet
             for i in range(len(out[names[0]].calls))]
    if sum(flags) < min(3, args.repeats):
        print(f"  [{label}] WARNING: only {sum(flags)} clean rounds; using all "
              f"{len(flags)} (timings are contended)", flush=True)
        flags = [True] * len(flags)
    for n in names:
        out[n].used = list(flags)
    return out


@dataclass
class Ratio:
    median: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.median:.3f} (pairs {self.low:.3f}..{self.high:.3f}, n={self.n})"


def ratio(timings: dict[str, Timing], num: str, den: str) -> Ratio:
    r = [a / b for a, b in zip(timings[num].sel("wall"), timings[den].sel("wall"))]
    return Ratio(statistics.median(r), min(r), max(r), len(r))


# ------------------------------------------------------------------------- memory
def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_w2v_alone(args) -> Sides:
    """The w2v side with no Hugging Face model in the process (random init from the same
    architecture), so its memory is its own."""
    from transformers import Wav2Vec2ForPreTraining

    from w2v.plugins.wav2vec2.interop.build import build_model
    from w2v.plugins.wav2vec2.interop.hf import spec_from_hf_config
    from w2v.plugins.wav2vec2.objective import MaskedContrastiveConfig, MaskedContrastiveObjective

    cfg = hf_config(args)
    with torch.device("meta"):                    # parameter names only, no memory
        keys = {k.removeprefix("wav2vec2.") for k in Wav2Vec2ForPreTraining(cfg).state_dict()}
    spec, objective_config = spec_from_hf_config(cfg.to_dict(), keys)
    torch.manual_seed(args.seed)
    model = build_model(spec)
    config = MaskedContrastiveConfig(contrastive_loss=None, **objective_config)
    objective = MaskedContrastiveObjective.from_config(config, model.context_signal(), model=model)
    return Sides(cfg=cfg, w2v=model, objective=objective)


def vm_hwm_mb() -> float:
    """This process's peak RSS since the last :func:`reset_peak_rss` (``VmHWM``)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def reset_peak_rss() -> bool:
    """Sets ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_only(args) -> None:
    """One side alone, built without the other (HF, or w2v from the same architecture):
    ``max(2, warmup) + 1`` updates, then a JSON line with the RSS after building and the
    peak RSS of the updates (measured from a reset after building)."""
    side = args.only
    sides = build_w2v_alone(args) if side.startswith("w2v") else build_sides(args, "hf")
    inputs = make_inputs(args, sides.cfg, args.batch, args.seconds, args.seed)
    step = update_steps(sides, inputs, [side])[side]   # (compiles nothing until the first call)
    report_alone(side, step, max(2, args.warmup) + 1)


def report_alone(side: str, call: Callable[[], float], times: int) -> None:
    """Runs ``call`` ``times`` times on the built side, then prints the JSON line that
    :func:`spawn_only` reads: the RSS after building, the peak RSS of the calls (measured
    from a reset after building) and their walls."""
    gc.collect()
    after_build = rss_mb()
    peak_build = peak_rss_mb()
    reset = reset_peak_rss()
    walls = [timed(call).wall for _ in range(times)]
    report = {"side": side, "rss_after_build_mb": round(after_build, 1),
              "peak_rss_build_mb": round(peak_build, 1),
              "peak_rss_mb": round(vm_hwm_mb() if reset else peak_rss_mb(), 1),
              "peak_from_reset": reset, "step_s": [round(w, 3) for w in walls]}
    print("ONLY_JSON " + json.dumps(report), flush=True)


FX_SIDES = ("w2v", "torchaudio", "hf")


def run_only_fx(args) -> None:
    """``--only-fx SIDE``: that side's feature extractor built alone, then two extractions
    of the ``--fx-batch`` x ``--fx-seconds`` input under ``inference_mode``; a JSON line with
    the RSS after building and the extractions' peak RSS (from a reset after building).
    torchaudio's model is imported from HF's ``Wav2Vec2Model``, which is freed first."""
    side = args.only_fx
    if side == "w2v":
        model = build_w2v_alone(args).w2v.eval()
        extract = model.extract_features
    else:
        from transformers import Wav2Vec2Model

        torch.manual_seed(args.seed)
        model = Wav2Vec2Model(hf_config(args)).eval()
        if side == "torchaudio":
            from torchaudio.models.wav2vec2.utils import import_huggingface_model

            logging.getLogger("torchaudio").setLevel(logging.ERROR)
            model = import_huggingface_model(model).eval()      # (HF's model is freed)
            extract = model
        else:
            def extract(wave, lengths):
                mask = None if lengths is None else \
                    torch.arange(wave.shape[1])[None, :] < lengths[:, None]
                return model(wave, attention_mask=mask)
    wave, lengths, _ = fx_inputs(args)

    def call() -> float:
        with torch.inference_mode():
            extract(wave, lengths)
        return 0.0

    report_alone(side, call, 2)


def step_memory_mb(run: dict) -> float:
    """A ``--only`` run's step memory: its peak RSS over the RSS of the built model."""
    return run["peak_rss_mb"] - run["rss_after_build_mb"]


def median_run(runs: list[dict]) -> dict:
    """The run with the median step memory (the upper one of an even count). glibc's heap
    makes one run's peak vary by about +-50 MB at BASE, so the main run takes several."""
    return sorted(runs, key=step_memory_mb)[len(runs) // 2]


def spawn_only(args, side: str, flag: str = "--only") -> dict:
    """A run of this script for one side alone: ``--only`` (training) or ``--only-fx``."""
    argv = [sys.executable, os.path.abspath(__file__), flag, side,
            "--threads", str(args.threads), "--batch", str(args.batch),
            "--seconds", str(args.seconds), "--seed", str(args.seed), "--hf-attn", args.hf_attn,
            "--warmup", str(args.warmup), "--fx-batch", str(args.fx_batch),
            "--fx-seconds", str(args.fx_seconds)]
    argv += ["--small"] if args.small else []
    argv += ["--no-dropout"] if args.no_dropout else []
    wait_quiet(args.wait_quiet, args.quiet, f"memory {side}")
    proc = subprocess.run(argv, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("ONLY_JSON "):
            return json.loads(line[len("ONLY_JSON "):])
    raise SystemExit(f"{flag} {side} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def feature_memory(args) -> list[tuple[str, str]]:
    """``--fx-memory``: each side's feature extraction alone (``--only-fx``), sides taking
    turns, ``--memory-runs`` runs each; the median run per side and w2v's ratios."""
    print(f"\nFeature extraction's peak RSS, one side per process (--only-fx), "
          f"{args.memory_runs} run(s) per side, interleaved:", flush=True)
    runs: dict[str, list[dict]] = {side: [] for side in FX_SIDES}
    for _ in range(args.memory_runs):
        for side, done in runs.items():
            done.append(r := spawn_only(args, side, "--only-fx"))
            print(f"  {side:10s} peak {r['peak_rss_mb']:8.1f} MB  (after build "
                  f"{r['rss_after_build_mb']:.1f} MB, extraction memory {step_memory_mb(r):.0f} "
                  f"MB; extractions {r['step_s']})", flush=True)
    rows = []
    for side, done in runs.items():
        rows.append((f"features memory {side}", f"+{step_memory_mb(median_run(done)):.0f} MB "
                     f"over the built model (runs "
                     f"{', '.join(f'{step_memory_mb(x):.0f}' for x in done)})"))
    ours = step_memory_mb(median_run(runs["w2v"]))
    for den in ("torchaudio", "hf"):
        rounds = [step_memory_mb(x) / max(step_memory_mb(y), 1e-9)
                  for x, y in zip(runs["w2v"], runs[den])]
        text = (f"{ours / max(step_memory_mb(median_run(runs[den])), 1e-9):.3f} (medians; "
                f"per round {min(rounds):.3f}..{max(rounds):.3f})")
        print(f"  features memory w2v / {den}: {text}")
        rows.append((f"ratio features memory w2v / {den}", text))
    return rows


# ------------------------------------------------------------------- profiling
def run_profile(args) -> None:
    """One update of ``--profile SIDE`` under torch.profiler, after warm-up."""
    from torch.profiler import ProfilerActivity, profile

    side = args.profile
    sides = build_sides(args, "w2v" if side.startswith("w2v") else "hf")
    inputs = make_inputs(args, sides.cfg, args.batch, args.seconds, args.seed)
    step = update_steps(sides, inputs, [side])[side]
    for _ in range(max(1, args.warmup)):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.profile_rows))


# ------------------------------------------------------------- bf16 trajectory
def run_trajectory(args) -> None:
    """``--trajectory N``: N training updates from the same weights in fp32 and under bf16
    autocast, per framework, each update seeded alike so both dtypes draw the same dropout
    masks; prints each update's loss and the relative fp32-bf16 gap, w2v's against HF's."""
    sides = build_sides(args)
    inputs = make_inputs(args, sides.cfg, args.batch, args.seconds, args.seed)
    losses: dict[str, list[float]] = {}
    for name in ("hf", "hf-bf16", "w2v", "w2v-bf16"):
        copy_ = Sides(cfg=sides.cfg, hf=copy.deepcopy(sides.hf)) if name.startswith("hf") else \
            Sides(cfg=sides.cfg, w2v=copy.deepcopy(sides.w2v),
                  objective=copy.deepcopy(sides.objective))
        step = update_steps(copy_, inputs, [name])[name]
        losses[name] = []
        for i in range(args.trajectory):
            torch.manual_seed(1000 + i)
            losses[name].append(step())
        print(f"  {name:9s} " + " ".join(f"{v:8.3f}" for v in losses[name]), flush=True)
    print("  update   w2v gap    HF gap   w2v / HF")
    for i in range(args.trajectory):
        gap = {side: abs(losses[f"{side}-bf16"][i] - losses[side][i]) / abs(losses[side][i])
               for side in ("w2v", "hf")}
        print(f"  {i + 1:6d}  {gap['w2v']:8.2e}  {gap['hf']:8.2e}  "
              f"{gap['w2v'] / max(gap['hf'], 1e-12):8.2f}")


# ------------------------------------------------------------------- compute floor
def gemm_rate(dtype: torch.dtype, m: int = 498, k: int = 768, n: int = 3072) -> float:
    """FLOP/s of this machine on the update's largest matmul shape (median of 20 calls)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    times = []
    for _ in range(25):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times[5:])


def run_flops(args) -> None:
    """``--flops``: FLOPs of one update per side (torch's FlopCounterMode: matmuls and
    convolutions) and the time those FLOPs take at the machine's fp32 GEMM rate on the
    update's largest matmul: the floor of an update whose products all ran at that rate
    and whose other operations took no time. w2v's FLOPs are counted with its CPU paths
    off (``row_conv``'s in-place products and the FFT positional conv are not what the
    counter knows), so both sides count the model's convolutions alike."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench_gpu_pretrain import gpu_paths  # (the scripts' folder is on sys.path)

    sides = build_sides(args)
    inputs = make_inputs(args, sides.cfg, args.batch, args.seconds, args.seed)
    steps = update_steps(sides, inputs, ["hf", "w2v"])
    rate = gemm_rate(torch.float32)
    print(f"fp32 GEMM rate ({args.threads} threads, [498, 768] @ [768, 3072]): "
          f"{rate / 1e9:.0f} GFLOP/s")
    for side in ("hf", "w2v"):
        steps[side]()                                                    # warm-up
        counter = FlopCounterMode(display=False)
        with counter, gpu_paths(torch.device("cpu")):
            steps[side]()
        flops = counter.get_total_flops()
        t = timed(steps[side]).wall
        print(f"{side:4s} {flops / 1e9:7.1f} GFLOP per update; at the GEMM rate "
              f"{flops / rate:.3f} s; measured {t:.3f} s ({flops / t / 1e9:.0f} GFLOP/s)")


# ------------------------------------------------------------- feature extraction
def fx_inputs(args) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The feature extraction batch ``[B, S]``, its lengths and HF's attention mask (None
    for one utterance). A batch is padded: the first utterance full length, the last 60 %
    of it."""
    g = torch.Generator().manual_seed(args.seed + 1)
    B, S = args.fx_batch, int(round(args.fx_seconds * 16000))
    wave = torch.randn(B, S, generator=g)
    lengths = attention = None
    if B > 1:
        lengths = torch.linspace(S, 0.6 * S, B).round().long()
        attention = torch.arange(S)[None, :] < lengths[:, None]
        wave = wave * attention
    return wave, lengths, attention


def feature_extraction(args, sides: Sides) -> dict:
    """w2v extract_features vs torchaudio wav2vec2_model (and HF Wav2Vec2Model), same weights."""
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    logging.getLogger("torchaudio").setLevel(logging.ERROR)
    hf_base = sides.hf.wav2vec2.eval()
    ta = import_huggingface_model(hf_base).eval()
    model = sides.w2v.eval()
    wave, lengths, attention = fx_inputs(args)
    with torch.inference_mode():
        out = model.extract_features(wave, lengths)
        ours = out.output
        theirs_ta = ta(wave, lengths)[0]
        theirs_hf = hf_base(wave, attention_mask=attention).last_hidden_state
    valid = torch.ones(ours.shape[:2], dtype=torch.bool) if out.lengths is None else \
        torch.arange(ours.shape[1])[None, :] < out.lengths[:, None]
    diff_ta = float((ours - theirs_ta)[valid].abs().max())
    diff_hf = float((ours - theirs_hf)[valid].abs().max())
    print(f"  outputs {tuple(ours.shape)}{' padded' if lengths is not None else ''} (valid "
          f"frames): max |w2v - torchaudio| = {diff_ta:.2e}, "
          f"max |w2v - HF| = {diff_hf:.2e}", flush=True)
    if diff_ta > FEATURE_ATOL or diff_hf > FEATURE_ATOL:
        raise SystemExit(f"feature extraction differs by more than {FEATURE_ATOL}: abort")

    def run(fn):
        def call() -> float:
            with torch.inference_mode():
                fn()
            return 0.0
        return call

    fns = {"torchaudio": run(lambda: ta(wave, lengths)),
           "w2v": run(lambda: model.extract_features(wave, lengths))}
    if not args.fx_no_hf:
        fns["hf"] = run(lambda: hf_base(wave, attention_mask=attention))
    t = interleaved(fns, args, "features")
    return {"timings": t, "diff_ta": diff_ta, "diff_hf": diff_hf,
            "audio_s": args.fx_batch * args.fx_seconds}


# ------------------------------------------------------------------------ report
def machine_lines() -> list[str]:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo")
                  if line.startswith("flags")), [])
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    import transformers
    try:
        import torchaudio
        ta = torchaudio.__version__
    except ImportError:
        ta = "absent"
    return [f"cpu: {model}, {os.cpu_count()} logical CPUs, {' '.join(isa)}",
            f"torch {torch.__version__} (cpu capability {torch.backends.cpu.get_cpu_capability()}), "
            f"transformers {transformers.__version__}, torchaudio {ta}, python {platform.python_version()}",
            f"threads: torch {torch.get_num_threads()} intra / {torch.get_num_interop_threads()} "
            f"interop, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
            f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS')}",
            "malloc: " + (" ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                                   if k.startswith("MALLOC_") or k == "LD_PRELOAD")
                          or "glibc defaults")]


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def median(xs) -> float:
    return statistics.median(xs)


def print_training(t: dict[str, Timing], audio_s: float) -> list[tuple[str, str]]:
    rows = []
    print("\nTraining update (forward + backward + AdamW), seconds per update:")
    names = list(t)
    print("  round  " + "  ".join(f"{n:>9s}" for n in names) + "   w2v/hf  other load")
    for i in range(len(t[names[0]].calls)):
        calls = {n: t[n].calls[i] for n in names}
        cells = "  ".join(f"{calls[n].wall:9.3f}" for n in names)
        worst = max(c.foreign for c in calls.values())
        print(f"  {i + 1:5d}  {cells}   {calls['w2v'].wall / calls['hf'].wall:6.3f}  "
              f"{worst:5.2f}{'' if t[names[0]].used[i] else '  (not used)'}")
    for n in names:
        wall = median(t[n].sel("wall"))
        cpu_share = median([c / w for c, w in zip(t[n].sel("cpu"), t[n].sel("wall"))])
        print(f"  {n:9s} median {wall:7.3f} s  ({audio_s / wall:.2f} audio-s/s)  "
              f"cpu/wall {cpu_share:.2f}  losses " + " ".join(f"{v:.1f}" for v in t[n].sel("value")))
        rows.append((f"train step {n}", f"{wall:.3f} s ({audio_s / wall:.2f} audio-s/s)"))
    pairs = [("w2v", "hf", "w2v fp32 / HF fp32")]
    if "w2v-bf16" in t:
        pairs += [("w2v-bf16", "hf", "w2v bf16 / HF fp32"), ("w2v-bf16", "w2v", "w2v bf16 / w2v fp32")]
    if "hf-bf16" in t:
        pairs += [("w2v-bf16", "hf-bf16", "w2v bf16 / HF bf16"), ("hf-bf16", "hf", "HF bf16 / HF fp32")]
    for side, what in (("w2v-compile", "compiled"), ("w2v-ckpt", "checkpointed")):
        if side in t:
            pairs += [(side, "hf", f"w2v {what} / HF fp32"), (side, "w2v", f"w2v {what} / w2v fp32")]
    if "w2v-compile" in t and t["w2v-compile"].warmup:
        first = t["w2v-compile"].warmup[0] - median(t["w2v-compile"].sel("wall"))
        print(f"  w2v-compile: first call {t['w2v-compile'].warmup[0]:.1f} s, so compiling took "
              f"about {first:.1f} s (first call minus the median update)")
        rows.append(("compile time (first update minus median)", f"{first:.1f} s"))
    for num, den, text in pairs:
        r = ratio(t, num, den)
        print(f"  ratio {text:22s} {r}")
        rows.append((f"ratio {text}", str(r)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description="wav2vec 2.0 CPU benchmark: w2v vs Hugging Face / torchaudio on identical "
                    "weights and inputs (see the module docstring).")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (also sets "
                    "OMP/MKL_NUM_THREADS before torch loads); default 2")
    ap.add_argument("--batch", type=int, default=2, help="utterances per training batch")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per training utterance")
    ap.add_argument("--small", action="store_true",
                    help="narrow model (4 layers, width 256, conv 128) for a quick check")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds (>= 2 recommended)")
    ap.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", type=float, default=0.3,
                    help="a round is clean when other processes used fewer cores than this "
                         "during each of its calls (from /proc/stat); default 0.3")
    ap.add_argument("--wait-quiet", type=float, default=120.0,
                    help="before each round, wait up to this many seconds for other processes "
                         "to drop below --quiet (0: never wait)")
    ap.add_argument("--extra-rounds", type=int, default=5,
                    help="rounds allowed beyond --repeats to replace contended ones")
    ap.add_argument("--hf-attn", choices=("eager", "sdpa"), default="eager",
                    help="Hugging Face attention implementation (default eager, the anchor)")
    ap.add_argument("--no-dropout", action="store_true",
                    help="all dropouts 0 on both sides (default: BASE dropouts 0.1)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast sides")
    ap.add_argument("--no-hf-bf16", action="store_true",
                    help="skip HF under bf16 (the same-dtype comparison for w2v bf16)")
    ap.add_argument("--no-fx", action="store_true", help="skip feature extraction")
    ap.add_argument("--fx-batch", type=int, default=1, help="feature extraction batch")
    ap.add_argument("--fx-seconds", type=float, default=10.0, help="feature extraction seconds")
    ap.add_argument("--fx-no-hf", action="store_true",
                    help="feature extraction: skip the HF Wav2Vec2Model side")
    ap.add_argument("--compile", action="store_true",
                    help="add the side w2v-compile: fp32 with trainer.compile's regional "
                         "torch.compile (its first warm-up call includes the compile time)")
    ap.add_argument("--checkpointing", action="store_true",
                    help="add the side w2v-ckpt: fp32 with activation checkpointing (Transformer "
                         "blocks and conv encoder)")
    ap.add_argument("--no-train", action="store_true", help="skip the training updates")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the per-side peak RSS subprocess runs")
    ap.add_argument("--memory-runs", type=int, default=3,
                    help="--only runs per side for the peak RSS lines, interleaved; the median "
                         "run is reported (default 3)")
    ap.add_argument("--fx-memory", action="store_true",
                    help="also the peak RSS of feature extraction, one side per process "
                         "(w2v, torchaudio, HF; --memory-runs runs each)")
    ap.add_argument("--only-fx", choices=FX_SIDES, help="extract features with one side alone "
                    "and print its peak RSS (what --fx-memory spawns)")
    ap.add_argument("--only", choices=SIDES, help="run one side alone and print its peak RSS "
                    "(used by the main run for the memory line)")
    ap.add_argument("--profile", choices=SIDES, help="profile one update of a side and exit")
    ap.add_argument("--profile-rows", type=int, default=30)
    ap.add_argument("--trajectory", type=int, default=0, metavar="N",
                    help="N seeded updates per framework in fp32 and bf16 from the same weights: "
                         "the loss gap per update, w2v's against HF's, then exit")
    ap.add_argument("--flops", action="store_true", help="count each side's FLOPs per update "
                    "and the time they take at this machine's fp32 GEMM rate, then exit")
    args = ap.parse_args()
    if args.memory_runs < 1:
        ap.error(f"--memory-runs must be at least 1 (or skip memory with --no-memory), "
                 f"found {args.memory_runs}")
    if args.only:
        return run_only(args)
    if args.only_fx:
        return run_only_fx(args)
    if args.profile:
        return run_profile(args)
    if args.flops:
        return run_flops(args)
    if args.trajectory:
        return run_trajectory(args)

    command = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    bf16_ok = not args.no_bf16 and torch.backends.mkldnn.is_available() and \
        bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    load_before = load()
    print("\n".join(machine_lines()))
    print(f"load average before: {load_before}", flush=True)

    sides = build_sides(args)
    cfg = sides.cfg
    inputs = make_inputs(args, cfg, args.batch, args.seconds, args.seed)
    M = int(inputs.mask.sum())
    B, T = inputs.mask.shape
    print(f"model: {'SMALL' if args.small else 'BASE'} ({sum(p.numel() for p in sides.hf.parameters()) / 1e6:.1f}M "
          f"params), batch {args.batch} x {args.seconds} s, T={T}, masked {M} "
          f"({M / (B * T):.2f}), {cfg.num_negatives} negatives, HF attention {args.hf_attn}, "
          f"dropout {'0' if args.no_dropout else 'BASE (0.1)'}", flush=True)

    print("\nParity (eval mode, fp32):", flush=True)
    parity = check_training_parity(sides, inputs)
    print(f"  contrastive loss HF {parity['hf_contrastive']:.6f}  w2v {parity['w2v_contrastive']:.6f}"
          f"  rel err {parity['loss_rel_err']:.1e}")
    print(f"  code perplexity HF {parity['hf_code_ppl']:.4f}  w2v {parity['w2v_code_ppl']:.4f}")
    print("  gradient rel err: " + ", ".join(f"{k} {v:.1e}" for k, v in parity["grad_rel_err"].items()))
    if not parity["ok"]:
        raise SystemExit("w2v and HF do not compute the same loss/gradients: not timing.")
    losses16 = bf16_losses(sides, inputs) if bf16_ok else None
    if losses16:
        for s in ("hf", "w2v"):
            a, b = losses16[f"{s}_fp32"], losses16[f"{s}_bf16"]
            print(f"  {s:3s} contrastive loss fp32 {a:.4f}  bf16 autocast {b:.4f}  "
                  f"rel diff {abs(b - a) / abs(a):.1e}")

    rows: list[tuple[str, str]] = []
    if not args.no_fx:
        print(f"\nFeature extraction ({args.fx_batch} x {args.fx_seconds} s, inference_mode, fp32):",
              flush=True)
        fx = feature_extraction(args, sides)
        ft = fx["timings"]
        for n in ft:
            m = median(ft[n].sel("wall"))
            print(f"  {n:10s} median {m:7.3f} s  RTF {m / fx['audio_s']:.3f}")
            rows.append((f"features {n}", f"{m:.3f} s (RTF {m / fx['audio_s']:.3f})"))
        for den in [d for d in ("torchaudio", "hf") if d in ft]:
            r = ratio(ft, "w2v", den)
            print(f"  ratio w2v / {den:10s} {r}")
            rows.append((f"ratio features w2v / {den}", str(r)))
    if args.fx_memory:
        rows += feature_memory(args)

    names = ["hf", "w2v"]
    if bf16_ok:
        names += ["w2v-bf16"] + ([] if args.no_hf_bf16 else ["hf-bf16"])
    elif not args.no_bf16:
        print("\nbf16 autocast is not supported by this CPU build: skipped.")
    names += (["w2v-compile"] if args.compile else []) + (["w2v-ckpt"] if args.checkpointing else [])
    steps = {}
    if not args.no_train:
        print(f"\nTraining updates ({', '.join(names)}), interleaved:", flush=True)
        steps = update_steps(sides, inputs, names)
        tt = interleaved(steps, args, "train")
        rows = print_training(tt, args.batch * args.seconds) + rows

    peak_main = peak_rss_mb()
    del steps, sides
    gc.collect()
    mem = {}
    if not args.no_memory:
        print(f"\nPeak RSS, one side per process (--only), {args.memory_runs} run(s) per side, "
              f"interleaved:", flush=True)
        extra = [n for n in ("w2v-bf16", "hf-bf16", "w2v-compile", "w2v-ckpt") if n in names]
        runs: dict[str, list[dict]] = {side: [] for side in ["hf", "w2v"] + extra}
        for _ in range(args.memory_runs):
            for side, done in runs.items():
                done.append(spawn_only(args, side))
                r = done[-1]
                print(f"  {side:9s} peak {r['peak_rss_mb']:8.1f} MB  (after build "
                      f"{r['rss_after_build_mb']:.1f} MB, step memory {step_memory_mb(r):.0f} MB; "
                      f"steps {r['step_s']})", flush=True)
        for side, done in runs.items():
            mem[side] = r = median_run(done)
            rows.append((f"peak RSS {side}", f"{r['peak_rss_mb']:.0f} MB "
                         f"(+{step_memory_mb(r):.0f} MB over the built model; runs "
                         f"{', '.join(f'{step_memory_mb(x):.0f}' for x in done)})"))
        for side in [n for n in mem if n != "hf"]:
            a, b = mem[side], mem["hf"]
            rounds = [step_memory_mb(x) / max(step_memory_mb(y), 1e-9)
                      for x, y in zip(runs[side], runs["hf"])]
            text = (f"{a['peak_rss_mb'] / b['peak_rss_mb']:.3f} (step memory alone "
                    f"{step_memory_mb(a) / max(step_memory_mb(b), 1e-9):.3f}, medians; per round "
                    f"{min(rounds):.3f}..{max(rounds):.3f})")
            print(f"  peak RSS {side} / hf: {text}")
            rows.append((f"ratio peak RSS {side} / hf", text))
    print(f"  (this process, all sides together: peak {peak_main:.0f} MB)")

    load_after = load()
    print("\nSummary")
    width = max(len(k) for k, _ in rows)
    print(f"  {'what':{width}s}  value")
    for k, v in rows:
        print(f"  {k:{width}s}  {v}")
    print(f"  {'parity':{width}s}  loss rel err {parity['loss_rel_err']:.1e}, max grad rel err "
          f"{max(parity['grad_rel_err'].values()):.1e}")
    print(f"load average before {load_before}, after {load_after} (1/5/15 min; "
          f"{os.cpu_count()} CPUs: above ~{THREADS} means other jobs shared the cores)")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
