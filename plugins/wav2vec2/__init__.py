"""Built-in plugin family `wav2vec2`: the wav2vec 2.0 conv feature encoder, Transformer /
Conformer context network, span masker, masked contrastive objective with pluggable
contrastive losses, and checkpoint interop with fairseq, Hugging Face and torchaudio."""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_kinds(registrar):
    from .contrastive_loss import ContrastiveLoss

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


def _with_dictionary(model, dictionary):
    from w2v.data.dictionary import as_dictionary

    if dictionary is not None:
        model.dictionary = as_dictionary(dictionary)
    elif getattr(model, "dictionary", None) is None:
        model.dictionary = None
    return model


def _load_fairseq(path, dictionary=None, **kwargs):
    """A fine-tuned fairseq checkpoint carries no dictionary: `dictionary=` gives dict.ltr.txt."""
    from .interop import load_fairseq

    return _with_dictionary(load_fairseq(path, **kwargs), dictionary)


def _load_hf(path, dictionary=None, **kwargs):
    """A Hugging Face CTC directory brings its vocab.json (`<pad>` = blank at 0)."""
    import json
    from pathlib import Path

    from w2v.data.dictionary import Dictionary
    from w2v.plugins.interop.malformed import reading

    from .interop import load_hf

    model = load_hf(path, **kwargs)
    vocab = Path(path) / "vocab.json"
    if dictionary is None and vocab.exists() and getattr(model, "head", None) is not None:
        with reading(vocab, "Hugging Face CTC vocabulary"):
            dictionary = Dictionary.from_hf_vocab(json.loads(vocab.read_text()))
    return _with_dictionary(model, dictionary)


@hookimpl
def w2v_register_checkpoint_formats(registrar):
    from .interop import detect_fairseq, detect_hf

    registrar.add_importer("fairseq_wav2vec2", detect_fairseq, _load_fairseq,
                           help="fairseq wav2vec 2.0 .pt (wav2vec2 / wav2vec_ctc, Transformer or "
                                "Conformer); fairseq not needed")
    registrar.add_importer("huggingface_wav2vec2", detect_hf, _load_hf,
                           help="Hugging Face Wav2Vec2Model / ForPreTraining / ForCTC directory "
                                "(and Wav2Vec2Conformer*)")


@hookimpl
def w2v_register_commands(registrar):
    from .interop.export_command import EXPORT_HELP, configure_export, run_export

    registrar.add_command("export", configure_export, run_export, help=EXPORT_HELP)
