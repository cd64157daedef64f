"""``w2vrun``: run recipes, inspect components and plugins, and plugin commands.

    w2vrun RECIPE.yaml [dotted.key=value ...] [--dry-run] [--out DIR]
                       [--stages a,b] [--from ID] [--force] [--no-resume]
    w2vrun list [KIND]          registered components
    w2vrun show KIND NAME       a component's config fields, defaults and help
    w2vrun plugins              loaded plugins, their versions and failures
    w2vrun COMMAND ...          commands plugins add (manifest, demo-data, transcribe, ...;
                                `w2vrun --help` lists them all)

Exit codes: 0 success, 2 a user error (recipe, data, arguments), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path
from typing import Sequence

import attrs

from .errors import UserError

BUILTIN_COMMANDS = ("list", "show", "plugins")


class _Parser(argparse.ArgumentParser):
    """argparse that raises a UserError (exit 2, no usage dump) on bad arguments."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message}.", where=self.prog, hint=f"See `{self.prog} --help`.")


_BUILTIN_HELP = {"list": ("list [KIND]", "registered components, by kind, and their plugins"),
                 "show": ("show KIND NAME", "a component's config fields, defaults and help"),
                 "plugins": ("plugins", "loaded plugins, their versions and failures")}


def commands_epilog() -> str:
    """Every sub-command, built-in and from plugins, with its help wrapped at words."""
    from .plugin_manager import registry

    rows = [usage_help for usage_help in _BUILTIN_HELP.values()]
    commands = registry().commands
    rows += [(name, commands[name].help or f"(from plugin {commands[name].plugin.name})")
             for name in sorted(commands)]
    lines = ["commands (`w2vrun COMMAND --help` shows one's options):"]
    for usage, help_ in rows:
        lines.append(textwrap.fill(help_, 96, initial_indent=f"  {usage:<18}",
                                   subsequent_indent=" " * 20, break_on_hyphens=False))
    return "\n".join(lines)


def _recipe_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="w2vrun", description="Run every stage of a w2v recipe, or one of the "
                                           "commands below.",
                usage="w2vrun RECIPE.yaml [dotted.key=value ...] [options]\n"
                      "       w2vrun COMMAND ...",
                epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.lr=3e-5")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, build every component on the meta device, print the resolved "
                        "recipe and exit")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<recipe name>)")
    p.add_argument("--stages", help="comma-separated stage ids to run")
    p.add_argument("--from", dest="from_", help="run this stage and every later one again")
    p.add_argument("--force", action="store_true", help="rerun stages already marked done")
    p.add_argument("--resume", dest="resume", action="store_true", default=True,
                   help="continue from the last checkpoint in the run directory (default)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start the stage from scratch even if it has checkpoints")
    return p


def run_recipe(argv: Sequence[str]) -> int:
    from .config.recipe import load_recipe
    from .stages import dry_run, plan_stages, run_stages

    args = _recipe_parser().parse_intermixed_args(list(argv))
    overrides = list(args.overrides)
    raw = load_recipe(args.recipe, overrides)
    plans = plan_stages(raw)
    if args.dry_run:
        dry_run(raw, plans)
        return 0
    out = args.out or Path("runs") / Path(args.recipe).stem
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    run_stages(raw, plans, out, stages=stages, from_=args.from_, force=args.force,
               resume=args.resume)
    return 0


# ------------------------------------------------------------- inspection
def cmd_list(argv: Sequence[str]) -> int:
    from .plugin_manager import registry

    p = _Parser(prog="w2vrun list", description="List registered components.")
    p.add_argument("kind", nargs="?", help="only this kind (encoder, quantizer, ...)")
    args = p.parse_args(list(argv))
    reg = registry()
    kinds = [args.kind] if args.kind else list(reg.kinds)
    if args.kind and args.kind not in reg.kinds:
        reg.get(args.kind, "")  # raises the did-you-mean error for the kind
    for kind in kinds:
        regs = reg.of_kind(kind)
        print(f"{kind}:")
        if not regs:
            print("  (none)")
        for r in regs:
            help_ = textwrap.shorten(r.help, 60, placeholder=" ...")   # whole words
            print(f"  {r.name:<28}{help_:<62}[{r.plugin.name}]")
    return 0


def cmd_show(argv: Sequence[str]) -> int:
    from .plugin_manager import registry

    p = _Parser(prog="w2vrun show", description="Show a component's config fields.")
    p.add_argument("kind")
    p.add_argument("name")
    args = p.parse_args(list(argv))
    r = registry().get(args.kind, args.name, where="command line")
    print(f"{r.kind} `{r.name}`: {r.help}")
    print(f"  class  {r.cls.__module__}.{r.cls.__qualname__}")
    print(f"  plugin {r.plugin.describe()}")
    print("  fields:")
    attrs.resolve_types(r.config_cls)
    for f in attrs.fields(r.config_cls):
        default = "(required)" if f.default is attrs.NOTHING else (
            f"{f.default.factory()!r}" if isinstance(f.default, attrs.Factory) else repr(f.default))
        if "component_kind" in f.metadata:
            comp_default = f.metadata.get("component_default")
            default = f"{{name: {comp_default['name']}}}" if comp_default else "null"
        typ = f.type.__name__ if isinstance(f.type, type) else \
            str(f.type).replace("typing.", "").replace("w2v.config.spec.", "")
        print(f"    {f.name}: {typ} = {default}")
        help_ = f.metadata.get("help", "")
        if help_:
            print(textwrap.indent(textwrap.fill(help_, 88), "        "))
    return 0


def cmd_plugins(argv: Sequence[str]) -> int:
    from .plugin_manager import plugins

    _Parser(prog="w2vrun plugins", description="Show loaded plugins.").parse_args(list(argv))
    ps = plugins()
    reg = ps.registry
    for st in ps.statuses:
        state = "disabled" if st.disabled else ("loaded" if st.loaded else "FAILED")
        print(f"{st.info.name:<14}{state:<10}{st.info.dist} {st.info.version}  ({st.info.module})")
        if st.error:
            print(f"{'':<14}{st.error}")
        provided = [f"{r.kind}:{r.name}" for r in reg.all() if r.plugin.name == st.info.name]
        provided += [f"command:{c}" for c, cmd in reg.commands.items()
                     if cmd.plugin.name == st.info.name]
        provided += [f"format:{n}" for n, imp in reg.importers.items()
                     if imp.plugin.name == st.info.name]
        provided += [f"corpus:{n}" for n, corpus in reg.corpora.items()
                     if corpus.plugin.name == st.info.name]
        if provided:
            print(textwrap.indent(textwrap.fill(", ".join(provided), 86), " " * 14))
    return 0


def run_plugin_command(name: str, argv: Sequence[str]) -> int:
    from .plugin_manager import registry

    cmd = registry().commands[name]
    p = _Parser(prog=f"w2vrun {name}", description=cmd.help)
    cmd.configure(p)
    args = p.parse_args(list(argv))
    return int(cmd.run(args) or 0)


def dispatch(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        _recipe_parser(commands_epilog()).print_help()
        return 0 if argv else 2
    head = argv[0]
    if head in BUILTIN_COMMANDS:
        return {"list": cmd_list, "show": cmd_show, "plugins": cmd_plugins}[head](argv[1:])
    if not head.startswith("-") and not head.endswith((".yaml", ".yml")) and not Path(head).is_file():
        from .plugin_manager import registry

        if head in registry().commands:
            return run_plugin_command(head, argv[1:])
        from .errors import did_you_mean
        choices = list(BUILTIN_COMMANDS) + sorted(registry().commands)
        raise UserError(f"`{head}` is neither a recipe file nor a command.",
                        where="command line", hint=did_you_mean(head, choices, "commands"))
    return run_recipe(argv)


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the exceptions ``exc`` was raised while handling."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


def _environment_error(exc: BaseException) -> UserError | None:
    """The machine, not the code, failed: out of memory, a disk full or not writable. Such an
    error, met anywhere outside the places that already explain it, becomes one paragraph."""
    import errno

    from .errors import is_out_of_memory, out_of_memory_error, storage_error

    if is_out_of_memory(exc):
        return out_of_memory_error(
            exc, "", "Lower `data.max_tokens` or `data.max_sample_size` (batch and utterance "
                     "sizes in samples), or use a smaller model.")
    storage = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
    if isinstance(exc, OSError) and exc.errno in storage:
        return storage_error(exc.filename or "a file", exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``w2vrun``; user errors exit 2 without a traceback."""
    # w2v's own messages at INFO; other libraries' chatter (matplotlib's "generated new
    # fontManager", ...) only from WARNING, matplotlib's font-cache notice not at all
    logging.basicConfig(level=logging.WARNING, format="[w2v] %(message)s")
    logging.getLogger("w2v").setLevel(logging.INFO)
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    try:
        code = dispatch(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"w2vrun: error: {exc.render()}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("w2vrun: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # a bug or a divergence: say it plainly, keep the traceback
        clean = _environment_error(exc)
        if _interrupted(exc):  # Ctrl-C inside a library that raised its own error on top
            print("w2vrun: interrupted", file=sys.stderr)
            code = 130
        elif clean is not None:
            print(f"w2vrun: error: {clean.render()}", file=sys.stderr)
            code = clean.exit_code
        elif getattr(exc, "w2v_clean", False):
            print(f"w2vrun: {exc}", file=sys.stderr)
            code = 1
        else:
            raise
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
