"""Built-in plugin family `ablation`: ``w2vrun ablate STUDY.yaml`` runs a study's variants
(a base recipe under one-line overrides, over seeds) as real w2v runs and writes its page:
what varied, the results table with spread over seeds and paired-bootstrap intervals, a
plot, the command, the commit and the hardware (docs/ablations/)."""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_commands(registrar):
    from . import command

    registrar.add_command(
        "ablate", command.configure, command.run,
        help="Run an ablation study (docs/ablations/STUDY.yaml): every variant at every seed as "
             "a w2v run under runs/ablations/STUDY/ (finished runs skipped), then write "
             "docs/ablations/STUDY.md with the results table and plot.")
