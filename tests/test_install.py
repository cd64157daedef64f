"""The README's first command installs every package its main job (recipes/demo.yaml, all
stages) needs: the requirements the demo's components declare when they register
(``requires=``) are read from the registry and compared with what the command installs,
parsed from README.md and pyproject.toml. CI catches a missing one without a fresh
virtualenv."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def normalise(name: str) -> str:
    """PEP 503 name: ``Flashlight_Text`` -> ``flashlight-text``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """``flashlight-text>=0.0.7; python_version>'3'`` -> ``flashlight-text``."""
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1))


def quickstart_command(readme: str) -> str:
    """The first command of the README's Quickstart (the first line of its first bash block)."""
    quickstart = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quickstart, re.S).group(1)
    return block.strip().splitlines()[0]


def installed_by(command: str, pyproject: dict) -> set[str]:
    """Distributions the ``pip install`` parts of ``command`` install from this checkout:
    the core dependencies plus those of every extra named (``-e '.[demo]'``), by normalised
    name; other arguments (``pip install kenlm``) count as themselves."""
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    found: set[str] = set()
    for part in command.split("&&"):
        words = shlex.split(part)
        if words[:2] != ["pip", "install"]:
            continue
        for word in words[2:]:
            if word.startswith("-"):
                continue
            target = re.fullmatch(r"\.(?:\[([^\]]*)\])?", word)
            if target is None:
                found.add(requirement_name(word))
                continue
            found |= {requirement_name(r) for r in project["dependencies"]}
            for extra in filter(None, (target.group(1) or "").split(",")):
                assert extra.strip() in extras, f"the README installs an unknown extra `{extra}`"
                found |= {requirement_name(r) for r in extras[extra.strip()]}
    return found


def recipe_requirements(recipe: Path) -> dict[str, set[str]]:
    """``{package: {"stage_id: kind name", ...}}`` over every component every stage names."""
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages, stage_registrations

    needs: dict[str, set[str]] = {}
    for sid, plan in plan_stages(load_recipe(recipe, [])).items():
        for reg, _, _ in stage_registrations(plan):
            for req in reg.requires:
                needs.setdefault(normalise(req.package), set()).add(f"{sid}: {reg.kind} "
                                                                    f"{reg.name}")
    return needs


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_readme_first_command_installs_what_the_demo_declares(pyproject):
    command = quickstart_command((ROOT / "README.md").read_text())
    assert "recipes/demo.yaml" in command, command
    needs = recipe_requirements(ROOT / "recipes" / "demo.yaml")
    # the walk reaches the evaluate stage's own decoders (the LM beam search)
    assert "evaluate: decoder ctc_beam" in needs.get("flashlight-text", set()), needs
    missing = {pkg: sorted(users) for pkg, users in needs.items()
               if pkg not in installed_by(command, pyproject)}
    assert not missing, (f"`{command}` does not install {missing}: add them to the extra the "
                         "README installs (pyproject.toml)")


def test_the_check_catches_a_command_without_the_extra(pyproject):
    """The README's earlier command (`pip install -e .`) fails this check: the class of bug
    that let the demo die at its evaluate stage after half an hour."""
    needs = recipe_requirements(ROOT / "recipes" / "demo.yaml")
    bare = installed_by("pip install -e . && w2vrun recipes/demo.yaml", pyproject)
    assert "flashlight-text" in needs and "flashlight-text" not in bare
    assert "torch" in bare


def test_every_declared_requirement_has_an_extra_that_installs_it(pyproject):
    """A registration's ``extra=`` names an extra of pyproject.toml listing its packages, so
    the install hint it prints (`pip install -e '.[decode]'`) works."""
    from w2v.plugin_manager import registry

    extras = pyproject["project"]["optional-dependencies"]
    declared = [r for r in registry().all() if r.requires and r.plugin.dist == "w2v"]
    assert any(r.name == "ctc_beam" for r in declared)
    for reg in declared:
        if reg.extra is None:                  # the hint is then `pip install PACKAGE` alone
            continue
        assert reg.extra in extras, f"{reg.kind} {reg.name}: extra `{reg.extra}` not in pyproject"
        listed = {requirement_name(r) for r in extras[reg.extra]}
        assert {normalise(q.package) for q in reg.requires} <= listed, (reg.name, listed)


def test_the_test_extra_still_covers_the_decoders(pyproject):
    test = {requirement_name(r) for r in pyproject["project"]["optional-dependencies"]["test"]}
    assert {"flashlight-text", "kenlm", "pytest", "transformers"} <= test
