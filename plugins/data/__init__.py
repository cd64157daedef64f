"""Built-in plugin family `data`: the data sources and the ``w2vrun manifest`` / ``labels``
commands.

Sources (kind ``data_source``, ``w2vrun list data_source``): ``fairseq`` manifests (the
default), ``kaldi`` data directories, ``lhotse`` cut manifests, ``hf_dataset`` (Hugging Face
``datasets`` saved to disk), ``features`` (feature shards) and ``units`` (unit token files).
"""

from w2v import hookimpl

from .commands import configure_labels, configure_manifest, run_labels, run_manifest

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_components(registrar):
    from w2v.data.sources import FairseqSource

    from .features import FeatureSource
    from .hf_dataset import HFDatasetSource
    from .kaldi import KaldiSource
    from .lhotse import LhotseSource
    from .units import UnitSource

    registrar.add_component("data_source", "fairseq", FairseqSource,
                            help="fairseq manifests (train.tsv) with .ltr/.wrd labels beside them "
                                 "(the default)")
    registrar.add_component("data_source", "kaldi", KaldiSource,
                            help="Kaldi data directories: wav.scp (plain paths), text, segments, "
                                 "utt2spk")
    registrar.add_component("data_source", "lhotse", LhotseSource,
                            help="Lhotse cut manifests (cuts.jsonl.gz: recordings + "
                                 "supervisions); lhotse itself not needed")
    registrar.add_component("data_source", "hf_dataset", HFDatasetSource,
                            help="Hugging Face `datasets` audio datasets saved with "
                                 "save_to_disk (needs `datasets`)", requires=["datasets"])
    registrar.add_component("data_source", "features", FeatureSource,
                            help="precomputed feature shards (featurize outputs), with labels")
    registrar.add_component("data_source", "units", UnitSource,
                            help="unit token files (`<split>.src` + dict.src.txt; phonemised "
                                 "text over a phone dictionary)")


@hookimpl
def w2v_register_commands(registrar):
    registrar.add_command(
        "manifest", configure_manifest, run_manifest,
        help="Write fairseq manifests (train.tsv, valid.tsv) for a folder of audio files, or "
             "convert any data source (--source kaldi DIR, ...) to fairseq manifests.")
    registrar.add_command(
        "labels", configure_labels, run_labels,
        help="Write .wrd/.ltr labels and dict.ltr.txt from an `id<TAB>text` transcript table.")
