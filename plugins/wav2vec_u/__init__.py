"""Built-in plugin family `wav2vec_u`: unsupervised speech recognition from unpaired audio and
text (Baevski et al. 2021, wav2vec-U; Liu et al. 2022, wav2vec-U 2.0).

* head ``wav2vec_u_generator`` (:mod:`.generator`): segment features -> phone logits;
* objective ``wav2vec_u`` (:mod:`.objective`): the adversarial objective that owns the
  discriminator (:mod:`.discriminator`), with :mod:`.penalties` and JOIN
  (:mod:`.segmentation`);
* stages ``segment_features``, ``kmeans_targets`` and ``prepare_text`` (:mod:`.prepare`),
  ``train_gan`` (:mod:`.gan_stage`) and ``select_gan`` (:mod:`.select_stage`: the
  unsupervised metric of :mod:`.selection`, then decoding).
"""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_components(registrar):
    from .gan_stage import TrainGanStage
    from .generator import PhoneGenerator
    from .objective import AdversarialObjective
    from .prepare import KmeansTargetsStage, PrepareTextStage, SegmentFeaturesStage
    from .pseudo_labels import PseudoLabelStage
    from .select_stage import SelectGanStage
    from .silence import RemoveSilenceStage

    registrar.add_component(
        "head", "wav2vec_u_generator", PhoneGenerator, smoke={"kernel": 3, "dropout": 0.1},
        help="wav2vec-U generator: [batch norm] [residual] dropout, conv to phone logits")
    registrar.add_component(
        "objective", "wav2vec_u", AdversarialObjective,
        help="wav2vec-U GAN: generator vs a causal conv discriminator over unpaired phones, "
             "code / smoothness / gradient penalties (+ the 2.0 auxiliary loss)")
    registrar.add_stage("remove_silence", RemoveSilenceStage,
                        help="voice activity detection: trimmed audio, manifests and the kept "
                             "intervals (to undo the trimming)")
    registrar.add_stage("segment_features", SegmentFeaturesStage,
                        help="k-means + PCA + run merging + mean pooling of featurized splits")
    registrar.add_stage("kmeans_targets", KmeansTargetsStage,
                        help="k-means ids of every frame: wav2vec-U 2.0's auxiliary targets")
    registrar.add_stage("prepare_text", PrepareTextStage,
                        help="unpaired text -> phones with silences, phone dictionary, phone LM",
                        requires=["phonemizer", "espeakng-loader:espeakng_loader"])
    registrar.add_stage("train_gan", TrainGanStage,
                        help="train a wav2vec-U generator against unpaired phonemised text")
    registrar.add_stage("select_gan", SelectGanStage,
                        help="choose the GAN checkpoint by weighted phone-LM perplexity "
                             "(no labels), then decode")
    registrar.add_stage("pseudo_label", PseudoLabelStage,
                        help="the chosen GAN's phones of the unlabelled audio as CTC labels "
                             "(self-training)")
