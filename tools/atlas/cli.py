"""The `atlas` command: validate the catalogue and generate everything derived from it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from atlas.exports import write_exports
from atlas.fsutil import replace_directory
from atlas.importer import import_awesome
from atlas.links import check_live, check_offline
from atlas.loader import CatalogError, Problem, check_catalog, load_catalog, load_taxonomy
from atlas.readme import readme_diff, write_readme
from atlas.scaffold import Draft, ScaffoldError, check_draft, derive_key, existing_keys, write_scaffold
from atlas.schemafiles import stale_schemas, write_schemas

DEFAULT_EXPORT_DIR = Path("build/exports")


class UserError(Exception):
    """A mistake in the command or its input: reported in one line, without a traceback."""


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        suffix = " (warning)" if problem.severity == "warning" else ""
        print(f"{problem}{suffix}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    catalog, problems = check_catalog(args.root)
    _print_problems(problems)
    errors = sum(p.severity == "error" for p in problems)
    files = {p.path for p in problems if p.severity == "error"}
    warnings = len(problems) - errors
    if catalog is None:
        print(f"{errors} error(s) in {len(files)} file(s), {warnings} warning(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(catalog.papers)} papers, 0 errors, {warnings} warning(s)")
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.root)
    if args.check:
        diff = readme_diff(catalog)
        if diff:
            print("README.md is stale; run `atlas readme`. Start of the difference:", file=sys.stderr)
            print("\n".join(diff), file=sys.stderr)
            return 1
        print("README.md is up to date")
        return 0
    print(f"wrote {write_readme(catalog)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.root)
    out = args.out if args.out.is_absolute() else args.root / args.out
    for path in write_exports(catalog, out):
        print(f"wrote {path}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.check:
        stale = stale_schemas(args.root)
        for path in stale:
            print(f"{path} is stale; run `atlas schema`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.root):
        print(f"wrote {path}")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    draft = Draft(title=args.title, arxiv=args.arxiv, category=args.category, foundation_models=args.fm or [])
    key = args.key or derive_key(args.title, existing_keys(args.root))
    check_draft(draft, load_taxonomy(args.root), key)
    path, to_fill = write_scaffold(args.root, draft, key)
    print(f"created {path}")
    print(f"fill in: {', '.join(to_fill)}")
    print("then run: atlas validate && atlas readme")
    return 0


def cmd_import_awesome(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {args.file}: {error}") from None
    report = import_awesome(load_catalog(args.root), text, write=args.write)
    for new in report.new:
        where = new.path or f"catalog/papers/{new.key}.yaml"
        print(f"new: line {new.listed.line}: {new.listed.title!r} -> {where}")
    changed = [match for match in report.matches if match.differences]
    for match in changed:
        for difference in match.differences:
            print(f"differs: line {match.listed.line}: {match.paper.key}: {difference}")
    action = (
        f"wrote {len(report.new)} scaffold(s)"
        if args.write
        else "dry run, nothing written (--write to scaffold)"
    )
    print(
        f"{len(report.listed)} listed: {len(report.matches)} in the catalogue "
        f"({len(changed)} with differences), {len(report.new)} new; {action}"
    )
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    """Build the static site into a temporary sibling of --out and swap it in only when the build is complete."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    out = args.out if args.out.is_absolute() else args.root / args.out

    def build_into(folder: Path) -> None:
        build(load_config(config_file=str(args.root / "mkdocs.yml"), site_dir=str(folder), strict=True))

    try:
        replace_directory(build_into, out)
    except MkDocsException as error:
        raise UserError(f"site build failed, {out} left as it was: {error}") from None
    print(f"wrote {out}")
    return 0


def cmd_links(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.root)
    problems = check_offline(catalog) + (check_live(catalog) if args.live else [])
    for problem in problems:
        print(f"{problem}{'' if problem.fatal else ' (reported, not an error)'}", file=sys.stderr)
    fatal = sum(problem.fatal for problem in problems)
    checked = "offline and live" if args.live else "offline (add --live to fetch every address)"
    print(f"links checked {checked}: {fatal} error(s), {len(problems) - fatal} report(s)")
    return 1 if fatal else 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root", type=Path, default=Path("."), help="project root holding catalog/ (default: current folder)"
    )
    parser = argparse.ArgumentParser(prog="atlas", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    command("validate", cmd_validate, "check every catalogue file; print each problem; exit 1 on any error")
    readme = command("readme", cmd_readme, "regenerate README.md from the catalogue")
    readme.add_argument("--check", action="store_true", help="only check: exit 1 if README.md is stale")
    export = command("export", cmd_export, "write catalog.json, papers.bib and papers.csv")
    export.add_argument(
        "--out", type=Path, default=DEFAULT_EXPORT_DIR, help=f"output folder (default: {DEFAULT_EXPORT_DIR})"
    )
    schema = command("schema", cmd_schema, "regenerate catalog/schema/*.json from the Pydantic models")
    schema.add_argument("--check", action="store_true", help="only check: exit 1 if a schema file is stale")
    new = command("new", cmd_new, "scaffold catalog/papers/<key>.yaml for a new paper")
    new.add_argument("--title", required=True, help="the paper's title")
    new.add_argument("--arxiv", help="new-style arXiv id, e.g. 2106.09685")
    new.add_argument("--key", help="file key (default: derived from the title)")
    new.add_argument("--category", help="category id from catalog/taxonomy.yaml")
    new.add_argument("--fm", nargs="+", metavar="FM", help="foundation model type ids, e.g. LLM VLM")
    site = command("site", cmd_site, "build the static site (strict) and swap it in only when complete")
    site.add_argument("--out", type=Path, default=Path("site"), help="output folder (default: site)")
    links = command("links", cmd_links, "check the catalogue's links (offline; --live fetches them)")
    links.add_argument("--live", action="store_true", help="also fetch every address (needs the network)")
    importer = command(
        "import-awesome", cmd_import_awesome, "compare an awesome-list Markdown file with the catalogue"
    )
    importer.add_argument("file", type=Path, help="the awesome-list Markdown file")
    importer.add_argument("--write", action="store_true", help="scaffold entries for papers not catalogued")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not (args.root / "catalog").is_dir():
            raise UserError(
                f"{args.root.resolve()} has no catalog/ folder; pass the project root with --root"
            )
        return args.handler(args)
    except CatalogError as error:
        errors = [p for p in error.problems if p.severity == "error"]
        _print_problems(errors)
        print(f"atlas: {len(errors)} catalogue error(s); nothing written", file=sys.stderr)
        return 1
    except (UserError, ScaffoldError, OSError) as error:
        print(f"atlas: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
