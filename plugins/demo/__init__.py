"""Built-in plugin family `demo`: the synthetic demo speech corpus.

Commands: ``w2vrun demo-data`` (build or find the corpus) and
``w2vrun install-engines`` (Debian main-archive engines and text sources).
Python API: :func:`w2v.plugins.demo.corpus.ensure_corpus` and
:func:`w2v.plugins.demo.corpus.build_corpus`.
"""

from w2v import hookimpl

W2V_PLUGIN_API = "1.0"


@hookimpl
def w2v_register_commands(registrar):
    from .cli import (DEMO_DATA_HELP, INSTALL_HELP, configure_demo_data, configure_install_engines,
                      run_demo_data, run_install_engines)

    registrar.add_command("demo-data", configure_demo_data, run_demo_data, help=DEMO_DATA_HELP)
    registrar.add_command("install-engines", configure_install_engines, run_install_engines,
                          help=INSTALL_HELP)

#: ``demo:SPLIT`` names: manifests, plus the LM and unpaired texts.
_FILES = {"unlabeled": "unlabeled.tsv", "train": "train.tsv", "valid": "valid.tsv",
          "test": "test.tsv", "real": "real.tsv", "lm": "lm.txt", "unpaired": "unpaired.txt"}


def resolve_demo(split: str):
    """``demo:SPLIT`` -> the file in the default demo corpus, built on first use.

    ``W2V_DEMO_MINUTES`` / ``W2V_DEMO_LABELED_MINUTES`` / ``W2V_DEMO_SEED`` choose a
    corpus other than the default (30 / 10 minutes, seed 1).
    """
    import os

    from w2v.errors import DataError, did_you_mean

    from .corpus import ensure_corpus

    if split not in _FILES:
        raise DataError(f"the demo corpus has no split `{split}`.",
                        hint=did_you_mean(split, list(_FILES), "splits"))
    root = ensure_corpus(minutes=float(os.environ.get("W2V_DEMO_MINUTES", 30)),
                         labeled_minutes=float(os.environ.get("W2V_DEMO_LABELED_MINUTES", 10)),
                         seed=int(os.environ.get("W2V_DEMO_SEED", 1)),
                         progress=lambda msg: print(f"[w2v] demo corpus: {msg}", flush=True))
    return root / _FILES[split]


@hookimpl
def w2v_register_components(registrar):
    registrar.add_corpus("demo", resolve_demo,
                         help="the synthetic demo corpus (built on first use): demo:unlabeled, "
                              "demo:train, demo:valid, demo:test, demo:real, demo:lm")
