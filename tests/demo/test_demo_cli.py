"""The `demo-data` and `install-engines` commands and their registration."""

from __future__ import annotations

import argparse

import pytest

import w2v.plugins.demo as demo
from w2v.errors import UserError
from w2v.plugins.demo import cli
from w2v.plugins.demo import corpus as corpus_module
from w2v.plugins.demo import install


class RecordingRegistrar:
    def __init__(self):
        self.commands = {}

    def add_command(self, name, configure, run, *, help=""):
        self.commands[name] = (configure, run, help)


def test_plugin_registers_both_commands():
    registrar = RecordingRegistrar()
    demo.w2v_register_commands(registrar)
    assert set(registrar.commands) == {"demo-data", "install-engines"}
    assert demo.W2V_PLUGIN_API == "2.0"
    parser = argparse.ArgumentParser()
    registrar.commands["demo-data"][0](parser)
    args = parser.parse_args(["--hours", "1.5", "--engines", "espeak,flite", "--force", "--seed", "7"])
    assert (args.hours, args.engines, args.force, args.seed) == (1.5, "espeak,flite", True, 7)
    assert args.minutes == 30 and args.labeled_minutes == 10 and args.dest is None


def _args(*argv):
    parser = argparse.ArgumentParser()
    cli.configure_demo_data(parser)
    return parser.parse_args(list(argv))


def test_demo_data_reuses_a_built_corpus_and_prints_its_path(pip_only_corpus, monkeypatch, capsys, tiny):
    monkeypatch.setattr(corpus_module, "available_sources", lambda: [])
    monkeypatch.setattr(corpus_module, "_build", lambda *a, **k: pytest.fail("must reuse"))
    args = _args("--dest", str(pip_only_corpus), "--minutes", str(tiny["minutes"]),
                 "--labeled-minutes", str(tiny["labeled_minutes"]), "--eval-minutes",
                 str(tiny["eval_minutes"]), "--unpaired-sentences", str(tiny["unpaired_sentences"]),
                 "--seed", "3", "--engines", "espeak-wheel", "--no-real")
    assert cli.run_demo_data(args) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == str(pip_only_corpus)
    assert "unlabeled" in err and "utterances" in err


def test_demo_data_hours_override_minutes(monkeypatch, tmp_path):
    seen = {}

    def fake_ensure(dest, **kwargs):
        seen.update(kwargs, dest=dest)
        raise UserError("stop here")

    monkeypatch.setattr(corpus_module, "ensure_corpus", fake_ensure)
    with pytest.raises(UserError):
        cli.run_demo_data(_args("--hours", "2", "--minutes", "5", "--dest", str(tmp_path)))
    assert seen["minutes"] == 120 and seen["engines"] is None and seen["dest"] == str(tmp_path)


def test_standalone_entry_point_reports_user_errors(capsys):
    assert cli.main(["demo-data", "--engines", "flute", "--dest", "/nonexistent/x"]) == 2
    assert "Did you mean `flite`" in capsys.readouterr().err


def test_install_engines_without_root_only_reports(monkeypatch, capsys):
    monkeypatch.setattr(install, "has_dpkg", lambda: True)
    monkeypatch.setattr(install, "missing_packages", lambda: ["flite", "wordnet-base"])
    monkeypatch.setattr(install, "can_install", lambda: (False, "installing needs root"))
    ran = []
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: ran.append(a))
    assert install.install_engines() == 0
    out = capsys.readouterr().out
    assert "apt-get update && apt-get install -y --no-install-recommends flite wordnet-base" in out
    assert "installing needs root" in out and "contrib/non-free" in out
    assert ran == []


def test_install_engines_dry_run_lists_only_main_packages(monkeypatch, capsys):
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: pytest.fail("dry run ran " + str(a)))
    monkeypatch.setattr(install, "missing_packages", lambda: list(install.MAIN_PACKAGES))
    monkeypatch.setattr(install, "has_dpkg", lambda: True)
    monkeypatch.setattr(install, "can_install", lambda: (True, ""))
    assert cli.run_install_engines(argparse.Namespace(dry_run=True)) == 0
    out = capsys.readouterr().out
    assert "Dry run; would run:" in out and "festvox-us-slt-hts" in out
    assert "mbrola" in out  # explained, never installed
    assert not any(p.startswith("mbrola") for p in install.MAIN_PACKAGES)


def test_install_engines_runs_apt_when_it_can(monkeypatch, capsys):
    calls = []

    class Done:
        returncode, stdout, stderr = 0, "", ""

    monkeypatch.setattr(install.subprocess, "run", lambda cmd, **k: calls.append(cmd) or Done())
    state = iter([["sox", "fortunes"], []])
    monkeypatch.setattr(install, "missing_packages", lambda: next(state))
    monkeypatch.setattr(install, "has_dpkg", lambda: True)
    monkeypatch.setattr(install, "can_install", lambda: (True, ""))
    assert install.install_engines() == 0
    assert calls == [["apt-get", "update"],
                     ["apt-get", "install", "-y", "--no-install-recommends", "sox", "fortunes"]]
    assert "Installed: sox fortunes" in capsys.readouterr().out
