"""The wav2vec and frontends plugins register their components, and the smoke configs run."""

import torch

from w2v.config.structure import structure_component
from w2v.interfaces import Batch, waveform_signal
from w2v.model import SpeechModel
from w2v.plugin_manager import registry

torch.set_num_threads(1)

MINE = {("encoder", "wav2vec_conv"), ("encoder", "logmel"), ("aggregator", "gru"),
        ("aggregator", "wav2vec_conv_aggregator"), ("objective", "future_contrastive")}


def smoke(kind, name):
    reg = registry().get(kind, name)
    assert reg.smoke is not None and reg.help
    return structure_component(kind, {"name": name, **reg.smoke})


def test_components_are_registered_by_their_plugins():
    owners = {(r.kind, r.name): r.plugin.name for r in registry().all()}
    assert MINE <= set(owners)
    assert owners[("encoder", "logmel")] == "frontends"
    assert all(owners[k] == "wav2vec" for k in MINE if k[1] != "logmel")


def test_smoke_configs_train_end_to_end():
    for encoder in ["wav2vec_conv", "logmel"]:
        for aggregator in ["wav2vec_conv_aggregator", "gru"]:
            torch.manual_seed(0)
            enc = smoke("encoder", encoder).build(waveform_signal())
            agg = smoke("aggregator", aggregator).build(enc.produces())
            model = SpeechModel(enc, agg)
            obj = smoke("objective", "future_contrastive").build(model=model)
            wave = torch.randn(2, 1600)
            out = obj(Batch(source=wave, lengths=torch.tensor([1600, 1200])), model, 0)
            out.loss.backward()
            assert torch.isfinite(out.loss) and int(out.sample_size) > 0
            grads = [p.grad for p in [*model.parameters(), *obj.parameters()]]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
