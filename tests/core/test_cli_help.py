"""What ``w2vrun`` shows a newcomer: ``--help`` lists every sub-command (plugin commands
included), ``w2vrun list`` cuts descriptions at a word, and other libraries' console chatter
(matplotlib's font cache) stays out of the log while w2v's own lines show."""

from __future__ import annotations

import os
import subprocess
import sys
import types

from w2v import hookimpl, plugin_manager
from w2v.registry import PLUGIN_API_VERSION


def _commands_listed(help_text: str) -> list[str]:
    section = help_text.split("commands (", 1)[1].splitlines()[1:]
    return [line.split()[0] for line in section if line.startswith("  ") and line[2] != " "]


def test_help_lists_every_command_with_its_help(run_cli):
    result = run_cli("--help")
    assert result.code == 0
    listed = _commands_listed(result.out)
    commands = plugin_manager.registry().commands
    for name in ("transcribe", "evaluate", "manifest", "demo-data", "export"):
        assert name in commands, f"no plugin registers `{name}`"
    assert listed == ["list", "show", "plugins", *sorted(commands)]
    # each help appears whole (wrapped at words), not cut
    flat = " ".join(result.out.split())
    for cmd in commands.values():
        assert " ".join(cmd.help.split()) in flat, cmd.name


def test_help_lists_a_plugins_command_too(run_cli):
    module = types.ModuleType("cmd_plugin")
    module.W2V_PLUGIN_API = ".".join(map(str, PLUGIN_API_VERSION))
    module.w2v_register_commands = hookimpl(lambda registrar: registrar.add_command(
        "say-hello", lambda parser: None, lambda args: 0, help="greet the user politely"))
    plugin_manager.reset(plugin_manager.load_plugins([("cmd", module)]))
    out = run_cli("--help").out
    assert "say-hello" in _commands_listed(out) and "greet the user politely" in out
    assert run_cli().out == out                     # no arguments: the same help (exit 2)


def test_list_cuts_descriptions_at_a_word(run_cli):
    result = run_cli("list")
    assert result.code == 0
    registry = plugin_manager.registry()
    long_helps = 0
    lines = {}
    kind = None
    for line in result.out.splitlines():
        if not line.startswith(" "):
            kind = line.rstrip(":")
        elif line.strip() != "(none)":
            lines[(kind, line.split()[0])] = line
    for reg in registry.all():
        words = reg.help.split()
        line = lines[(reg.kind, reg.name)]
        shown = line[2 + 28:].rsplit("[", 1)[0].split()
        if shown[-1:] == ["..."]:
            long_helps += 1
            shown = shown[:-1]
            assert len(shown) < len(words)
        assert shown == words[:len(shown)], (line, reg.help)   # whole words only
        assert line.rstrip().endswith(f"[{reg.plugin.name}]")
    assert long_helps > 0, "no description is long enough to be cut: the test proves nothing"


def test_third_party_chatter_is_quiet_and_w2v_lines_show(tmp_path):
    """With a fresh matplotlib cache, the report's plots log "generated new fontManager"
    at INFO; w2vrun's logging keeps it out and keeps its own INFO lines."""
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"stage": "s", "step": 1, "loss": 2.0}\n'
                       '{"stage": "s", "step": 2, "loss": 1.5}\n')
    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from w2v import cli\n"
        "cli.main(['plugins'])\n"                       # configures logging as w2vrun does
        "from w2v.plugins.stages.report import plot_curves\n"
        f"print(plot_curves(Path({str(metrics)!r}), Path({str(tmp_path)!r})))\n"
        "logging.getLogger('w2v').info('own line')\n")
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "s.png" in proc.stdout
    assert "[w2v] own line" in proc.stderr
    assert "fontManager" not in proc.stderr and "font cache" not in proc.stderr
