"""Built-in plugin family `wav2vec`: wav2vec 1.0 and vq-wav2vec.

Registers the conv encoder (``wav2vec_conv``), the causal conv context
network (``wav2vec_conv_aggregator``), the GRU context network (``gru``) and
the future-step contrastive objective (``future_contrastive``).
"""

from w2v import hookimpl

W2V_PLUGIN_API = "1.0"

_TINY_ENCODER = [[8, 10, 5], [8, 8, 4]]


@hookimpl
def w2v_register_components(registrar):
    from .aggregator import ConvAggregator
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
