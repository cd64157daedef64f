"""Running a recipe's stages: validation, dry runs, completion markers, hand-over.

Each stage runs in ``RUN_DIR/<stage id>/`` and marks completion there with a
``DONE`` file; a later stage reaches an earlier one's outputs through
:meth:`StageContext.output_of` (``init: {from: pretrain}``), never by
re-creating components. ``--stages``, ``--from`` and ``--force`` choose what
runs again.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import attrs
import yaml

from .build import Sections, build_model, build_objective, describe_model, inherited_values, \
    on_meta, structure_sections, count_parameters
from .config import ComponentSpec
from .config.recipe import SECTIONS, RawRecipe, stage_sections
from .config.source import SourceMap
from .config.structure import structure_component, unstructure
from .errors import ConfigError, DataError, UserError, did_you_mean
from .interfaces import Stage

log = logging.getLogger("w2v")

DONE = "DONE"


@attrs.define(kw_only=True)
class StagePlan:
    """A validated stage: its id, spec (name + own config) and structured sections."""

    stage_id: str
    spec: ComponentSpec
    sections: Sections
    srcmap: SourceMap


@attrs.define(kw_only=True)
class StageContext:
    """What a running stage gets.

    Attributes:
        stage_id: the stage's id in the recipe.
        run_dir: the run directory (``resolved.yaml``, ``metrics.jsonl``, ``checkpoints/``).
        stage_dir: ``run_dir / stage_id``, where the stage writes its outputs.
        sections: the stage's structured data/model/objective/decoder/trainer.
        config: the stage's own config (its registration's config class).
        plans: every stage of the recipe by id (for ``init: {from: ...}``).
        resume: continue from the stage's last checkpoint when there is one.
    """

    stage_id: str
    run_dir: Path
    stage_dir: Path
    sections: Sections
    config: Any
    plans: dict[str, StagePlan]
    resume: bool = True
    recipe_path: Path | None = None

    def output_of(self, stage_id: str) -> Path:
        """The directory of an earlier stage, which must have completed."""
        if stage_id not in self.plans:
            raise ConfigError(f"unknown stage `{stage_id}`.", key=f"stages.{self.stage_id}.init.from",
                              hint=did_you_mean(stage_id, list(self.plans), "stage ids"))
        out = self.run_dir / stage_id
        if not (out / DONE).exists():
            raise ConfigError(f"stage `{self.stage_id}` needs the output of stage `{stage_id}`, "
                              f"which has not completed in {self.run_dir}.",
                              hint=f"Run it first (`--stages {stage_id}`) or run the whole recipe.")
        return out

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints" / self.stage_id


def plan_stages(raw: RawRecipe) -> dict[str, StagePlan]:
    """Structure every stage of the recipe (all errors surface before anything runs)."""
    from .build import _data_config_cls  # noqa: F401  (fail early if the data layer is missing)

    plans: dict[str, StagePlan] = {}
    # the top-level sections are validated on their own first, so an error
    # there is reported at its own key path, not under a stage
    top = {k: v for k, v in raw.data.items() if k in ("data", "model", "objective", "decoder",
                                                     "trainer", "fairseq_compat")}
    structure_sections(top, raw.srcmap)
    for sid, (sections, own, smap) in stage_sections(raw).items():
        prefix = ("stages", sid)
        if "name" not in own:
            own = {"name": sid, **own}
        spec = structure_component("stage", own, srcmap=smap, path=prefix,
                                   inherited=inherited_values(sections, smap))
        sec = structure_sections(sections, smap, ())
        plans[sid] = StagePlan(stage_id=sid, spec=spec, sections=sec, srcmap=smap)
    return plans


def select(plans: dict[str, StagePlan], stages: Sequence[str] | None, from_: str | None
           ) -> tuple[list[str], set[str]]:
    """Stage ids to run, in order, and those forced by ``--from``."""
    ids = list(plans)
    for sid in list(stages or []) + ([from_] if from_ else []):
        if sid not in plans:
            raise ConfigError(f"unknown stage `{sid}`.", where="command line",
                              hint=did_you_mean(sid, ids, "stage ids"))
    chosen = [s for s in ids if not stages or s in stages]
    forced: set[str] = set()
    if from_:
        start = ids.index(from_)
        chosen = [s for s in chosen if ids.index(s) >= start]
        forced = set(chosen)
    return chosen, forced


def resolved(raw: RawRecipe, plans: dict[str, StagePlan]) -> dict[str, Any]:
    """The fully resolved recipe: every stage with its sections, defaults filled in."""
    out: dict[str, Any] = {"stages": {}}
    for sid, plan in plans.items():
        sec = plan.sections
        out["stages"][sid] = {
            **unstructure(plan.spec),
            "data": unstructure(sec.data), "model": unstructure(sec.model),
            "objective": unstructure(sec.objective), "decoder": unstructure(sec.decoder),
            "trainer": unstructure(sec.trainer),
        }
    return out


def stage_components(plan: StagePlan) -> list[ComponentSpec]:
    """Every component a stage names, at any depth: the stage itself, components inside its
    own config (the evaluate stage's decoders), and those of its sections (data sources,
    model slots, objective, decoder)."""
    found: list[ComponentSpec] = []

    def walk(value: Any) -> None:
        if isinstance(value, ComponentSpec):
            found.append(value)
            walk(value.config)
        elif attrs.has(type(value)):
            for f in attrs.fields(type(value)):
                walk(getattr(value, f.name))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(plan.spec)
    walk(plan.sections)
    return found


def stage_registrations(plan: StagePlan) -> list[tuple[Any, str | None, str]]:
    """``(registration, file:line, key)`` of every component a stage names
    (:func:`stage_components`) and of its data source (``data: {name: ...}``)."""
    from .plugin_manager import registry

    reg = registry()
    found = [(reg.get(spec.kind, spec.name, where=spec.where, key=spec.key), spec.where,
              spec.key) for spec in stage_components(plan)]
    source = getattr(plan.sections.data, "name", None)
    if source is not None and "data_source" in reg.kinds:
        found.append((reg.get("data_source", source, key="data.name"),
                      plan.srcmap.where(("data", "name")), "data.name"))
    return found


def check_stages(plans: dict[str, StagePlan], stage_ids: Sequence[str] | None = None, *,
                 dry: bool = False) -> list[str]:
    """The checks that stop a run in seconds instead of at the stage that would fail: every
    component each stage names is registered and its packages import (``requires=``), each
    stage's own settings check out (:meth:`~w2v.interfaces.Stage.check`), and what it reads
    (:meth:`~w2v.interfaces.Stage.inputs`) is set and exists. Missing inputs are errors, or
    with ``dry`` warnings (returned: a dry run may validate a recipe away from its data)."""
    from .plugin_manager import registry

    reg = registry()
    warnings: list[str] = []
    ids = list(plans)
    for sid in (ids if stage_ids is None else stage_ids):
        plan = plans[sid]
        for registration, where, key in stage_registrations(plan):
            registration.check_requirements(where=where, key=key)
        stage_cls = reg.get("stage", plan.spec.name).cls
        if stage_cls.inputs is Stage.inputs and stage_cls.check is Stage.check:
            continue                    # nothing to ask: the stage is built when it runs
        stage = plan.spec.build(None)

        def absolute(key: str) -> tuple[str, ...]:     # stage keys live under stages.<id>
            parts = tuple(key.split("."))
            return parts if parts[0] in (*SECTIONS, "stages") else ("stages", sid, *parts)

        try:
            stage.check(sid, plan.sections, ids)
        except UserError as exc:
            raise exc.located(where=plan.srcmap.where(absolute(exc.key)) if exc.key else
                              plan.spec.where, key=plan.spec.key) from None
        for key, path in stage.inputs(plan.sections).items():
            key = ".".join(absolute(key))
            problem = _input_problem(path, reg)
            if problem is None:
                continue
            message = f"stage `{sid}` reads `{key}`, which {problem}"
            where = plan.srcmap.where(tuple(key.split(".")))
            hint = _DATA_HINT if key.startswith("data.") else \
                f"Check the path, or give another with `{key}=PATH`."
            if dry:
                message += f" A run would stop before its first stage. {hint}"
                warnings.append(f"{where}: {message}" if where else message)
            else:
                raise DataError(message, where=where, hint=hint)
    return warnings


_DATA_HINT = ("Set it in the recipe or on the command line (`data.train=DIR/train.tsv`; "
              "`w2vrun manifest AUDIO_DIR --dest DIR` makes manifests), or run "
              "recipes/demo.yaml on the demo corpus.")


def _input_problem(path: str | None, reg) -> str | None:
    """What is wrong with the input ``path`` (``is not set (null).``), or None."""
    import os
    import re

    if path is None:
        return "is not set (null)."
    if os.path.exists(path):
        return None
    corpus = re.match(r"^([A-Za-z][A-Za-z0-9_\-]*):([A-Za-z0-9_\-]+)$", str(path))
    if corpus is not None:
        if corpus.group(1) in reg.corpora:
            return None                 # built on first use
        return (f"is `{path}`, but no plugin provides a corpus `{corpus.group(1)}`. " +
                did_you_mean(corpus.group(1), list(reg.corpora), "corpora"))
    return f"is `{path}`, a path that does not exist."


def dry_run(raw: RawRecipe, plans: dict[str, StagePlan], echo=print) -> None:
    """Check every stage (:func:`check_stages`), build its model and objective on the meta
    device and print what they are; missing data are warnings."""
    warnings = check_stages(plans, dry=True)
    echo(yaml.safe_dump(resolved(raw, plans), sort_keys=False, width=100).rstrip())
    echo("")
    for sid, plan in plans.items():
        sec = plan.sections
        echo(f"stage `{sid}` ({plan.spec.name}):")
        slots = ("encoder", "quantizer", "aggregator", "masker", "head")
        if all(getattr(sec.model, slot) is None for slot in slots):
            echo("  (no model)")
            continue
        dictionary = _dry_run_dictionary(sec) if sec.model.head is not None else None
        with on_meta():
            sample_rate = getattr(sec.data, "sample_rate", 16000)
            model = build_model(sec.model, sample_rate, dictionary=dictionary)
            for line in describe_model(model, sec.model):
                echo(line)
            if sec.objective is not None:
                objective = build_objective(sec.objective, model, dictionary=dictionary)
                echo(f"  {'objective':<11}{sec.objective.name:<26}"
                     f"{count_parameters(objective):>13,} params")
        total = count_parameters(model)
        echo(f"  total model parameters: {total:,}")
    for warning in warnings:
        print(f"w2vrun: warning: {warning}", file=sys.stderr)


def _dry_run_dictionary(sec: Sections):
    """The stage's label dictionary when it is on disk already; otherwise the head's
    placeholder for these labels (``dry_run_dictionary``; a dry run never builds a corpus
    or reads audio), or one symbol when the head has none."""
    import os

    from .data.dictionary import Dictionary
    from .plugin_manager import registry

    data = sec.data
    head = registry().get("head", sec.model.head.name).cls
    if data.labels is None:    # a head sized by something else (wav2vec-U: the text's phones)
        return head.dry_run_dictionary(None)
    candidates = [data.dictionary] if data.dictionary else []
    if data.train and os.path.exists(data.train):
        base = data.train if os.path.isdir(data.train) else os.path.dirname(data.train)
        candidates.append(os.path.join(base, f"dict.{data.labels}.txt"))
    for path in candidates:
        if path and os.path.isfile(path):
            return Dictionary.load(path)
    placeholder = head.dry_run_dictionary(data.labels)
    return placeholder if placeholder is not None else Dictionary.from_symbols(["|"])


def run_stages(raw: RawRecipe, plans: dict[str, StagePlan], run_dir: Path, *,
               stages: Sequence[str] | None = None, from_: str | None = None,
               force: bool = False, resume: bool = True, echo=print) -> list[str]:
    """Run the chosen stages in order; returns the ids that ran.

    The run directory is locked for this job (:class:`~w2v.run_lock.RunLock`) and proved
    writable before anything runs. A finished stage is skipped, unless its config changed
    since it trained: then this stops with the changed keys (``--force`` reruns it). A stage
    that starts from scratch moves its old checkpoints aside; one that resumes with another
    config names the changes and records them (see :mod:`w2v.run_record`).
    """
    from .errors import check_writable
    from .run_lock import RunLock

    chosen, forced = select(plans, stages, from_)
    check_stages(plans, [sid for sid in chosen if force or sid in forced or
                         not (Path(run_dir) / sid / DONE).exists()])
    check_writable(run_dir)
    with RunLock(run_dir):
        return _run_locked(raw, plans, Path(run_dir), chosen, forced, force, resume, echo)


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _run_locked(raw: RawRecipe, plans: dict[str, StagePlan], run_dir: Path, chosen: list[str],
                forced: set[str], force: bool, resume: bool, echo) -> list[str]:
    from .errors import check_writable
    from .run_record import (config_changes, describe_changes, read_stage_config,
                             write_stage_config)

    configs = resolved(raw, plans)["stages"]
    reruns = {sid for sid in chosen if force or sid in forced or not (run_dir / sid / DONE).exists()}
    trained = {sid: read_stage_config(run_dir / sid) for sid in plans
               if (run_dir / sid / DONE).exists() and sid not in reruns}
    differing = {sid: changes for sid in chosen if trained.get(sid) is not None
                 and (changes := config_changes(trained[sid], configs[sid]))}
    if differing:
        listing = " ".join(f"Stage `{sid}` trained with a different config: "
                           f"{describe_changes(ch, f'stages.{sid}.')}."
                           for sid, ch in differing.items())
        raise ConfigError(f"{listing} Its outputs in {run_dir} do not belong to this recipe.",
                          where="command line",
                          hint="Rerun it with `--force` (its old checkpoints are moved aside), "
                               "put the values back, or use another `--out`.")
    main = _is_main()
    if main:  # what each stage trained with: finished stages keep their own config
        whole = {"stages": {sid: trained.get(sid) or configs[sid] for sid in plans}}
        (run_dir / "resolved.yaml").write_text(yaml.safe_dump(whole, sort_keys=False, width=100))
    ran = []
    for sid in chosen:
        plan = plans[sid]
        stage_dir = run_dir / sid
        marker = stage_dir / DONE
        if sid not in reruns:
            echo(f"[w2v] stage `{sid}` already done ({marker}); skipping (use --force to rerun).")
            continue
        if marker.exists() and main:
            marker.unlink()
        check_writable(stage_dir)
        stage_resume = resume and not (force or sid in forced)
        context = StageContext(stage_id=sid, run_dir=run_dir, stage_dir=stage_dir,
                               sections=plan.sections, config=plan.spec.config, plans=plans,
                               resume=stage_resume, recipe_path=raw.path)
        if main:
            _prepare_checkpoints(context, configs[sid], echo)
            write_stage_config(stage_dir, configs[sid])
        echo(f"[w2v] stage `{sid}` ({plan.spec.name}) -> {stage_dir}")
        started = time.time()
        seed = getattr(plan.sections.trainer, "seed", None)
        if seed is not None:  # model and objective initialisation follow `trainer.seed`
            from .train.rng import seed_initialisation
            seed_initialisation(seed)
        stage = plan.spec.build(None)
        stage.run(context)
        marker.write_text(json.dumps({"stage": sid, "name": plan.spec.name,
                                      "seconds": round(time.time() - started, 1),
                                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        ran.append(sid)
    return ran


def _prepare_checkpoints(context: StageContext, config: dict[str, Any], echo) -> None:
    """Before a stage runs: move its old checkpoints aside when it starts from scratch, or name
    (and record) what changed since its checkpoints were written when it resumes."""
    from .run_record import (config_changes, describe_changes, move_aside, read_stage_config,
                             record_changes)

    sid, ckpt = context.stage_id, context.checkpoint_dir
    trainer = context.sections.trainer
    if not context.resume or getattr(trainer, "resume", True) is False:
        moved = move_aside(ckpt)
        if moved is not None:
            echo(f"[w2v] stage `{sid}` starts from scratch: its earlier checkpoints were moved "
                 f"to {moved}.")
        return
    last = ckpt / "last.pt"
    before = read_stage_config(context.stage_dir)
    if before is None or not last.is_file():
        return
    changes = config_changes(before, config)
    if changes:
        path = record_changes(context.stage_dir, changes, last)
        log.warning("stage `%s` resumes from %s with a changed config: %s (recorded in %s)",
                    sid, last, describe_changes(changes), path)
