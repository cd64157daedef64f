"""Built-in plugin family `demo`: the synthetic demo speech corpus.

Commands: ``w2vrun demo-data`` (build or find the corpus) and
``w2vrun install-engines`` (Debian main-archive engines and text sources).
Python API: :func:`w2v.plugins.demo.corpus.ensure_corpus` and
:func:`w2v.plugins.demo.corpus.build_corpus`.
"""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


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
    corpus other than the default (30 / 10 minutes, seed 1); ``W2V_DEMO_CORPUS`` names a
    built corpus directory to use as it is (a copy from another machine).
    """
    import os

    return _demo_file(split, "W2V_DEMO_CORPUS", minutes=float(os.environ.get("W2V_DEMO_MINUTES", 30)),
                      labeled_minutes=float(os.environ.get("W2V_DEMO_LABELED_MINUTES", 10)),
                      seed=int(os.environ.get("W2V_DEMO_SEED", 1)))


#: The claim corpus: 90 min unlabeled, 1.8 min labeled (50:1), 3 min valid and test.
CLAIM_CORPUS = {"minutes": 90.0, "labeled_minutes": 1.8, "eval_minutes": 3.0}


def resolve_demo_claim(split: str):
    """``demo_claim:SPLIT`` -> the file in the claim corpus (``CLAIM_CORPUS``), built on first
    use; ``W2V_DEMO_CLAIM_CORPUS`` names a built copy to use as it is."""
    return _demo_file(split, "W2V_DEMO_CLAIM_CORPUS", seed=1, **CLAIM_CORPUS)


def _demo_file(split: str, pin_variable: str, **settings):
    import os
    from pathlib import Path

    from w2v.errors import DataError, did_you_mean

    from .corpus import ensure_corpus, is_complete

    if split not in _FILES:
        raise DataError(f"the demo corpus has no split `{split}`.",
                        hint=did_you_mean(split, list(_FILES), "splits"))
    pinned = os.environ.get(pin_variable)
    if pinned:
        root = Path(pinned).expanduser()
        if not is_complete(root):
            raise DataError(f"{pin_variable}={pinned} is not a complete demo corpus (no DONE and "
                            "meta.json there).", hint=f"Unset {pin_variable} to build one, or "
                            "point it at a directory `w2vrun demo-data` finished.")
    else:
        root = ensure_corpus(**settings,
                             progress=lambda msg: print(f"[w2v] demo corpus: {msg}", flush=True))
    return root / _FILES[split]


@hookimpl
def w2v_register_components(registrar):
    registrar.add_corpus("demo", resolve_demo,
                         help="the synthetic demo corpus (built on first use): demo:unlabeled, "
                              "demo:train, demo:valid, demo:test, demo:real, demo:lm")
    registrar.add_corpus("demo_claim", resolve_demo_claim,
                         help="the demo-claim corpus (90 min unlabeled, 1.8 min labeled, built "
                              "on first use): the same splits as `demo`")
