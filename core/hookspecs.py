"""Hook specifications: what a w2v plugin may implement.

A plugin is a module (registered under the ``w2v`` entry-point group) with
functions marked ``@w2v.hookimpl``. Every hook receives a
:class:`w2v.registry.Registrar` bound to the plugin; the plugin calls it to
add components, kinds, checkpoint formats and commands.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("w2v")
hookimpl = pluggy.HookimplMarker("w2v")


@hookspec
def w2v_register_kinds(registrar):
    """Declare component kinds beyond the core ones (``contrastive_loss``, ``generator``, ...).

    Called before :func:`w2v_register_components` on every plugin, so a plugin
    may register components of a kind another plugin declares.
    """


@hookspec
def w2v_register_components(registrar):
    """Register components and stages: ``registrar.add_component(kind, name, cls, ...)``."""


@hookspec
def w2v_register_checkpoint_formats(registrar):
    """Register checkpoint formats for ``w2v.load_pretrained``: ``registrar.add_importer(...)``."""


@hookspec
def w2v_register_commands(registrar):
    """Register ``w2vrun`` sub-commands: ``registrar.add_command(name, configure, run)``."""
