"""Built-in plugin family `quantizers`: Gumbel-softmax and k-means product quantizers."""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_components(registrar):
    from .gumbel import GumbelQuantizer
    from .kmeans import KMeansQuantizer

    registrar.add_component(
        "quantizer", "gumbel", GumbelQuantizer,
        smoke={"groups": 2, "num_vars": 8, "dim": 8, "weight_proj_depth": 2,
               "weight_proj_factor": 2},
        help="Gumbel-softmax product quantizer (wav2vec 2.0, vq-wav2vec)")
    registrar.add_component(
        "quantizer", "kmeans", KMeansQuantizer,
        smoke={"groups": 2, "num_vars": 8},
        help="k-means product quantizer with commitment loss (vq-wav2vec)")
