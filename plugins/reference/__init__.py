"""Built-in plugin family `reference`: ``w2vrun docs`` writes the configuration reference
(docs/reference/: a page per component kind with every option's type, default, bounds and
help, from the config metadata) or, with ``--check``, says whether it is current."""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_commands(registrar):
    from . import command

    registrar.add_command(
        "docs", command.configure, command.run,
        help="Write the configuration reference pages (docs/reference/: every component's "
             "options, types, defaults, bounds and help) from the config classes; --check "
             "compares instead.")
