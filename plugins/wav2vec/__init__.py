"""Built-in plugin family `wav2vec`: wav2vec 1.0 and vq-wav2vec.

Registers the conv encoder (``wav2vec_conv``), the causal conv context
network (``wav2vec_conv_aggregator``), the GRU context network (``gru``),
the future-step contrastive objective (``future_contrastive``), BERT on
discrete units (encoder ``unit_embedding``, objective ``bert``) and the
fairseq wav2vec 1.0 / vq-wav2vec checkpoint format. The papers' pipelines
(units, features, downstream models on them) use the `features` family's
stages and the ``train`` stage over the ``units`` and ``features`` data sources.
"""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"

_TINY_ENCODER = [[8, 10, 5], [8, 8, 4]]


@hookimpl
def w2v_register_components(registrar):
    from .aggregator import ConvAggregator
    from .bert import MaskedUnitObjective, UnitEmbedding
    from .encoder import Wav2VecConvEncoder
    from .gru import GRUAggregator
    from .objective import FutureContrastiveObjective

    registrar.add_component(
        "encoder", "wav2vec_conv", Wav2VecConvEncoder,
        smoke={"layers": _TINY_ENCODER, "skip_connections": True},
        help="wav2vec 1.0 / vq-wav2vec conv encoder (base: stride 160, receptive field 465)")
    registrar.add_component(
        "aggregator", "wav2vec_conv_aggregator", ConvAggregator,
        smoke={"layers": [[8, 3, 1], [8, 2, 1]]},
        help="wav2vec 1.0 causal conv context network (base: 9 x kernel 3; large: kernels 2..13)")
    registrar.add_component(
        "aggregator", "gru", GRUAggregator, smoke={"dim": 8},
        help="unidirectional GRU context network (wav2vec 1.0 aggregator: gru)")
    registrar.add_component(
        "objective", "future_contrastive", FutureContrastiveObjective,
        smoke={"prediction_steps": 2, "num_negatives": 2},
        help="wav2vec 1.0 future-step contrastive loss (BCE or InfoNCE)")
    registrar.add_component(
        "encoder", "unit_embedding", UnitEmbedding,
        help="discrete unit ids -> embeddings (+ the [MASK] row), for BERT on vq-wav2vec units")
    registrar.add_component(
        "objective", "bert", MaskedUnitObjective,
        help="BERT masked-unit prediction (spans of 10 units, start probability 0.05)")


@hookimpl
def w2v_register_checkpoint_formats(registrar):
    from .interop import detect_fairseq_wav2vec, load_fairseq_wav2vec

    registrar.add_importer("fairseq_wav2vec", detect_fairseq_wav2vec, load_fairseq_wav2vec,
                           help="fairseq wav2vec 1.0 / vq-wav2vec .pt (arch wav2vec); fairseq "
                                "not needed")
