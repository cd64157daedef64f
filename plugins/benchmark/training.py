"""Training a probe with w2v's trainer, and scoring it.

The probe trains with :class:`w2v.train.trainer.Trainer` on the ``features`` data source's
loader (:func:`w2v.plugins.data.features.build_feature_loader`: length-bucketed batches of
``[B, T, L, D]`` frames) for a fixed budget: updates, peak lr (tri-stage schedule: 10 %
warm-up, 40 % hold, 50 % decay, as the demo's probes), AdamW, and a batch of
``batch_seconds`` of audio (in frames at the model's frame rate, so a 100 Hz front end and a
50 Hz model see the same audio per update). No validation and no model selection: the
probe after its last update is scored, so every model gets exactly the same budget.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from w2v.plugins.data.features import LabelledFeatures, build_feature_loader


@attrs.frozen(kw_only=True)
class Budget:
    """What every probe of a task gets, whatever the model."""

    updates: int
    lr: float
    batch_seconds: float

    def describe(self) -> str:
        return f"{self.updates} updates, lr {self.lr:g}, {self.batch_seconds:g} s of audio per batch"


def max_frames(dataset: LabelledFeatures, budget: Budget, frame_rate: float) -> int:
    """The batch size in frames: ``batch_seconds`` of audio, at least the longest utterance."""
    longest = int(dataset.sizes.max()) if len(dataset) else 1
    return max(int(budget.batch_seconds * frame_rate), longest)


def train_probe(probe: torch.nn.Module, objective: torch.nn.Module, dataset: LabelledFeatures,
                *, budget: Budget, frame_rate: float, pad_id: int, run_dir: Path, stage: str,
                seed: int, device: str) -> dict:
    """Train ``probe`` in place for ``budget.updates`` updates; returns the trainer's last
    logged stats (``loss`` and the objective's)."""
    from w2v.train.config import ScheduleConfig, TrainerConfig
    from w2v.train.data import reusing_loader
    from w2v.train.trainer import Trainer

    loader, sampler = build_feature_loader(dataset, pad_id=pad_id, seed=seed,
                                           max_tokens=max_frames(dataset, budget, frame_rate))
    config = TrainerConfig(
        device=device, precision="fp32", max_updates=budget.updates, lr=budget.lr,
        optimizer="adamw", clip_norm=10.0, seed=seed, resume=False, keep_last=1,
        schedule=ScheduleConfig(name="tri_stage", warmup=0.1, hold=0.4, decay=0.5),
        log_interval=max(1, budget.updates // 4), valid_interval=0, save_interval=0,
        num_threads=torch.get_num_threads())
    trainer = Trainer(config, probe, objective, reusing_loader(loader, sampler),
                      run_dir=run_dir, stage=stage, tensorboard=False)
    trainer.fit()
    probe.eval()
    return {"updates": trainer.num_updates}


def batches(dataset: LabelledFeatures, *, pad_id: int, frame_rate: float, device,
            seconds: float = 60.0):
    """``dataset`` in evaluation batches (longest first, no shuffling), on ``device``."""
    loader, _ = build_feature_loader(dataset, pad_id=pad_id, train=False,
                                     max_tokens=max(int(seconds * frame_rate),
                                                    int(dataset.sizes.max())))
    for batch in loader:
        yield batch.to(device)


@torch.inference_mode()
def score_ctc(probe, dataset: LabelledFeatures, dictionary, *, words: bool, frame_rate: float,
              device) -> dict[str, float]:
    """Greedy CTC decoding of ``dataset``: ``uer`` (unit error rate: CER over letters with
    spaces when ``words``, else the token error rate, PER for phones) and, with ``words``,
    ``wer``; percentages."""
    from w2v.plugins.ctc.decoders import greedy_tokens
    from w2v.plugins.ctc.head import ctc_log_probs
    from w2v.plugins.ctc.metrics import cer, token_errors, wer

    refs, hyps = [], []
    for batch in batches(dataset, pad_id=dictionary.pad, frame_rate=frame_rate, device=device):
        log_probs, frames = ctc_log_probs(probe(batch), dictionary.blank)
        tokens, _ = greedy_tokens(log_probs, frames, dictionary.blank)
        refs += [row[:n] for row, n in zip(batch.targets.tolist(), batch.target_lengths.tolist())]
        hyps += tokens
    if not words:
        total = sum(len(r) for r in refs)
        return {"per": 100.0 * token_errors(refs, hyps) / max(total, 1), "utterances": len(refs)}
    ref_text = [dictionary.words(r) for r in refs]
    hyp_text = [dictionary.words(h) for h in hyps]
    return {"cer": 100.0 * cer(ref_text, hyp_text), "wer": 100.0 * wer(ref_text, hyp_text),
            "utterances": len(refs)}


@torch.inference_mode()
def score_speakers(probe, dataset: LabelledFeatures, *, frame_rate: float, device
                   ) -> dict[str, float]:
    """Speaker-id accuracy (percent) on ``dataset``."""
    correct = total = 0
    for batch in batches(dataset, pad_id=-1, frame_rate=frame_rate, device=device):
        correct += int((probe(batch).logits.argmax(-1) == batch.targets[:, 0]).sum())
        total += batch.size
    return {"accuracy": 100.0 * correct / max(total, 1), "utterances": total}
