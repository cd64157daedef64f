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
