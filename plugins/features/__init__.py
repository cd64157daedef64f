"""Built-in plugin family `features`: models over stored features and the stages that store them.

Registers the ``precomputed`` encoder (feature frames as a model's input) and the
``wav2letter`` aggregator (a small non-causal conv acoustic model), the stages
``featurize_audio`` (an audio model's features), ``export_units`` (a quantized model's
discrete units, fairseq's vq-wav2vec format) and ``featurize_units`` (a unit model's
features), and the ``w2vrun export-units`` command. Downstream models train in the
``train`` stage over the ``features`` and ``units`` data sources; the papers' pipelines
(vq-wav2vec + BERT, wav2vec features for acoustic models) are recipes over these.
"""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_components(registrar):
    from .audio_stage import FeaturizeAudioStage
    from .precomputed import FeatureInput
    from .unit_stages import ExportUnitsStage, FeaturizeUnitsStage
    from .wav2letter import Wav2LetterAggregator

    registrar.add_component(
        "encoder", "precomputed", FeatureInput,
        help="stored feature frames [B, T, D] as the model input (downstream models on frozen "
             "features)")
    registrar.add_component(
        "aggregator", "wav2letter", Wav2LetterAggregator,
        smoke={"layers": [[8, 3], [8, 5]], "dropout": 0.0},
        help="non-causal conv stack (a small wav2letter-style acoustic model for frozen "
             "features)")
    registrar.add_stage("featurize_audio", FeaturizeAudioStage,
                        help="dump an audio model's features (wav2vec c, z, vq code vectors, "
                             "log-mel) per split (fp16 shards)")
    registrar.add_stage("export_units", ExportUnitsStage,
                        help="write a quantized model's units (fairseq .src + dict.src.txt)")
    registrar.add_stage("featurize_units", FeaturizeUnitsStage,
                        help="dump a unit model's features per split (fp16 shards)")


@hookimpl
def w2v_register_commands(registrar):
    from .commands import configure_export_units, run_export_units

    registrar.add_command("export-units", configure_export_units, run_export_units,
                          help="write a quantized model's discrete units for manifests "
                               "(fairseq vq-wav2vec_featurize format)")
