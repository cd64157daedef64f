"""Built-in plugin family `data`: the ``w2vrun manifest`` and ``w2vrun labels`` commands."""

from w2v import hookimpl

from .commands import configure_labels, configure_manifest, run_labels, run_manifest

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_commands(registrar):
    registrar.add_command(
        "manifest", configure_manifest, run_manifest,
        help="Write fairseq manifests (train.tsv, valid.tsv) for a folder of audio files.")
    registrar.add_command(
        "labels", configure_labels, run_labels,
        help="Write .wrd/.ltr labels and dict.ltr.txt from an `id<TAB>text` transcript table.")
