"""A third-party plugin installed through an entry point loads exactly like the built-ins.

The "installation" is a directory holding the package and a
``my_w2v_plugin-0.1.dist-info`` (METADATA + entry_points.txt declaring
``[w2v] myplugin = my_w2v_plugin``), put on ``PYTHONPATH`` for the real
``w2vrun`` script, or on ``sys.path`` in-process.
"""

from __future__ import annotations

import pytest

from core_testkit import make_entry_point_dist, write
from w2v import plugin_manager

PLUGIN_SOURCE = '''\
"""A third-party w2v plugin: a framing encoder and a no-op stage."""

import attrs
import torch
from torch import nn

from w2v import hookimpl
from w2v.config import field, size
from w2v.interfaces import Encoder, EncoderOutput, Signal, Stage

W2V_PLUGIN_API = "{api}"


class FramingEncoder(Encoder):
    """Cuts the waveform into frames and projects them (third-party encoder)."""

    @attrs.define(kw_only=True)
    class Config:
        frame: int = size(160, 1, 16000, "samples per frame")
        dim: int = size(32, 1, 4096, "output width")

    def __init__(self, frame, dim, sample_rate):
        super().__init__()
        self.frame = frame
        self.proj = nn.Linear(frame, dim)
        self.signal = Signal(kind="frames", dim=dim, sample_rate=sample_rate, stride=frame,
                             receptive_field=frame)

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(config.frame, config.dim, upstream.sample_rate)

    def produces(self):
        return self.signal

    def forward(self, source, lengths=None):
        b, s = source.shape
        x = source[:, : s - s % self.frame].reshape(b, -1, self.frame)
        return EncoderOutput(features=self.proj(x), lengths=None)


class NoopStage(Stage):
    """Does nothing (third-party stage)."""

    @attrs.define(kw_only=True)
    class Config:
        note: str = field("", "ignored")

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls()

    def run(self, context):
        pass


@hookimpl
def w2v_register_components(registrar):
    registrar.add_component("encoder", "{prefix}_framing", FramingEncoder,
                            smoke={{"frame": 80, "dim": 8}})
    registrar.add_stage("{prefix}_noop", NoopStage)
'''

RECIPE = """\
model:
  encoder: {name: my_framing, frame: 160, dim: 32}
stages:
  only: {name: my_noop}
"""


def install(root, *, dist="my-w2v-plugin", entry="myplugin", module="my_w2v_plugin",
            prefix="my", api="2.0"):
    return make_entry_point_dist(root, dist, {entry: module}, modules={
        f"{module}/__init__.py": PLUGIN_SOURCE.format(api=api, prefix=prefix)})


def test_w2vrun_lists_an_entry_point_plugin(run_w2vrun, tmp_path):
    site = install(tmp_path / "site")
    result = run_w2vrun("list", "encoder", pythonpath=[site])
    assert result.code == 0, result.err
    line = next(line for line in result.out.splitlines() if "my_framing" in line)
    assert "Cuts the waveform into frames" in line and line.rstrip().endswith("[myplugin]")

    shown = run_w2vrun("plugins", pythonpath=[site])
    line = next(line for line in shown.out.splitlines() if line.startswith("myplugin "))
    assert "loaded" in line and "my-w2v-plugin 0.1" in line and "(my_w2v_plugin)" in line


def test_recipe_using_the_plugin_passes_dry_run(run_w2vrun, tmp_path):
    pytest.importorskip("w2v.train.config", reason="w2v.train.config not written yet")
    site = install(tmp_path / "site")
    recipe = write(tmp_path / "r.yaml", RECIPE)
    result = run_w2vrun(recipe, "--dry-run", pythonpath=[site], cwd=tmp_path)
    assert result.code == 0, result.err
    params = 160 * 32 + 32
    assert "my_framing" in result.out and f"{params:,} params" in result.out
    assert "frames, dim 32, 100 Hz" in result.out


def test_disabled_plugin_is_gone(run_w2vrun, tmp_path):
    site = install(tmp_path / "site")
    recipe = write(tmp_path / "r.yaml", RECIPE)
    env = {"W2V_DISABLE_PLUGINS": "someother, myplugin"}
    listed = run_w2vrun("list", pythonpath=[site], env=env)
    assert listed.code == 0 and "my_framing" not in listed.out and "my_noop" not in listed.out
    result = run_w2vrun(recipe, "--dry-run", pythonpath=[site], env=env)
    assert result.code == 2 and "Traceback" not in result.err
    assert "unknown encoder `my_framing`" in result.err


def test_disabled_plugin_is_shown_as_disabled(tmp_path, monkeypatch, run_cli):
    site = install(tmp_path / "site", dist="my-w2v-plugin-b", entry="mypluginb",
                   module="my_w2v_plugin_b", prefix="myb")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("W2V_DISABLE_PLUGINS", "mypluginb")
    plugin_manager.reset(None)
    out = run_cli("plugins").out
    line = next(line for line in out.splitlines() if line.startswith("mypluginb "))
    assert "disabled" in line
    assert "myb_framing" not in plugin_manager.registry().names("encoder")


def test_in_process_loading_matches(tmp_path, monkeypatch):
    site = install(tmp_path / "site", dist="my-w2v-plugin-c", entry="myplugin_c",
                   module="my_w2v_plugin_c", prefix="myc")
    monkeypatch.syspath_prepend(str(site))
    plugin_set = plugin_manager.load_plugins()
    reg = plugin_set.registry.get("encoder", "myc_framing")
    assert reg.plugin.name == "myplugin_c" and reg.plugin.dist == "my-w2v-plugin-c"
    assert reg.plugin.version == "0.1" and reg.smoke == {"frame": 80, "dim": 8}
    assert plugin_set.versions()["myplugin_c"] == "my-w2v-plugin-c 0.1"


def test_wrong_api_major_is_reported_as_failed(tmp_path, monkeypatch, run_cli):
    site = install(tmp_path / "site", dist="old-w2v-plugin", entry="oldplugin",
                   module="old_w2v_plugin", prefix="old", api="0.3")
    loaded_before = {s.info.name for s in plugin_manager.load_plugins().statuses if s.loaded}
    monkeypatch.syspath_prepend(str(site))
    plugin_set = plugin_manager.load_plugins()
    status = next(s for s in plugin_set.statuses if s.info.name == "oldplugin")
    assert not status.loaded
    assert "plugin API 0.3" in status.error and "speaks 2.0" in status.error
    assert "old_framing" not in plugin_set.registry.names("encoder")
    # the other plugins are unaffected
    assert {s.info.name for s in plugin_set.statuses if s.loaded} == loaded_before
    plugin_manager.reset(plugin_set)
    out = run_cli("plugins").out
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("oldplugin "))
    assert "FAILED" in lines[i] and "plugin API 0.3" in lines[i + 1]


def test_newer_api_minor_is_accepted(tmp_path, monkeypatch):
    site = install(tmp_path / "site", dist="new-w2v-plugin", entry="newplugin",
                   module="new_w2v_plugin", prefix="new", api="2.7")
    monkeypatch.syspath_prepend(str(site))
    plugin_set = plugin_manager.load_plugins()
    assert next(s for s in plugin_set.statuses if s.info.name == "newplugin").loaded
    assert "new_framing" in plugin_set.registry.names("encoder")
