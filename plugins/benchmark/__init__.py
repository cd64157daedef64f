"""Built-in plugin family `benchmark`: ``w2vrun benchmark MODEL``, the downstream benchmark.

Any model w2v can load (a run directory, ``model.pt``, a fairseq or Hugging Face checkpoint,
``random:RECIPE`` for a random-init architecture, or a front end such as ``logmel``) is
frozen and probed on a labelled corpus (the demo corpus by default) with fixed budgets:
letter CTC (CER/WER), phone CTC (PER), speaker identification (accuracy) and the PNMI of
k-means units, each probe reading a learned softmax-weighted sum of all layers (SUPERB's
convention) and one chosen layer. Writes a table (markdown + JSON) and a per-layer plot,
and with ``--docs`` merges the results into docs/downstream.md.
"""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_commands(registrar):
    from . import command

    registrar.add_command(
        "benchmark", command.configure, command.run,
        help="Downstream benchmark of any model (run dir, model.pt, fairseq/HF checkpoint, "
             "random:RECIPE, or a front end such as logmel): frozen-feature probes for letters "
             "(CER/WER), phones (PER), speaker id and PNMI of k-means units, on a weighted sum "
             "of all layers and on one layer; a table, a JSON and a per-layer plot.")
