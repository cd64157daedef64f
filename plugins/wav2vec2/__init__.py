"""Built-in plugin family `wav2vec2`: the wav2vec 2.0 conv feature encoder, Transformer /
Conformer context network, span masker, masked contrastive objective with pluggable
contrastive losses, and checkpoint interop with fairseq, Hugging Face and torchaudio."""

from w2v import hookimpl

W2V_PLUGIN_API = "1.0"


@hookimpl
def w2v_register_kinds(registrar):
    from .contrastive_loss import ContrastiveLoss
    from .masking import Masker

    registrar.add_kind("masker", Masker, "chooses masked frames and owns the mask embedding")
    registrar.add_kind("contrastive_loss", ContrastiveLoss,
                       "scores predictions against a positive and distractors")


@hookimpl
def w2v_register_components(registrar):
    from .contrastive_loss import InfoNCE, PMLContrastiveLoss
    from .feature_encoder import Wav2Vec2FeatureEncoder
    from .masking import SpanMasker
    from .objective import MaskedContrastiveObjective
    from .transformer import TransformerAggregator

    small_conv = [[16, 10, 5], [16, 3, 2], [16, 2, 2]]
    registrar.add_component(
        "encoder", "wav2vec2_conv", Wav2Vec2FeatureEncoder,
        smoke={"conv_layers": small_conv},
        help="wav2vec 2.0 conv feature encoder (group_norm / layer_norm modes), 20 ms frames")
    registrar.add_component(
        "aggregator", "transformer", TransformerAggregator,
        smoke={"embed_dim": 16, "layers": 2, "ffn_dim": 32, "heads": 2, "conv_pos": 4,
               "conv_pos_groups": 2},
        help="Transformer with conv relative positions (post-LN BASE / pre-LN LARGE, conformer)")
    registrar.add_component(
        "masker", "span", SpanMasker, smoke={"mask_prob": 0.5, "mask_length": 2},
        help="fairseq span masking (compute_mask_indices semantics) with a mask embedding")
    registrar.add_component(
        "objective", "masked_contrastive", MaskedContrastiveObjective,
        smoke={"num_negatives": 4, "final_dim": 8},
        help="wav2vec 2.0 masked contrastive loss + diversity + feature penalty")
    registrar.add_component("contrastive_loss", "infonce", InfoNCE, smoke={},
                            help="cross-entropy over (positive, distractors)")
    registrar.add_component("contrastive_loss", "pml", PMLContrastiveLoss,
                            smoke={"loss": "NTXentLoss"},
                            help="any pytorch-metric-learning loss over the sampled pairs")
