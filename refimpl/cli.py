"""`python -m refimpl` / `refimpl`: browse the reference implementations from the command line."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence

from .core.errors import RefimplError
from .core.registry import CATEGORIES, FOUNDATION_MODELS, get_method, methods


def _list(args: argparse.Namespace) -> int:
    rows = [
        info
        for info in methods()
        if (args.category is None or info.category == args.category)
        and (args.fm is None or args.fm in info.foundation_models)
    ]
    width = max((len(info.name) for info in rows), default=0)
    for info in rows:
        print(
            f"{info.name:<{width}}  {info.category:<18}  {'/'.join(info.foundation_models):<20}  {info.summary}"
        )
    print(f"{len(rows)} method(s)", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    method = get_method(args.method)
    info = method.info()
    module = sys.modules[info.module]
    print(f"{info.name} ({info.category}; {', '.join(info.foundation_models)})")
    print(f"papers:      {', '.join(info.papers)}")
    print(f"update rule: {info.update_rule}")
    print(f"trainable:   {info.trainable}")
    print(f"mergeable:   {'yes' if info.mergeable else 'no'}")
    print(f"models:      {', '.join(info.model_types)}")
    print("options:")
    for name, field in method.Options.model_fields.items():
        print(f"  {name} = {info.options[name]!r}  {field.description or ''}".rstrip())
    formula = type(method).__dict__.get("expected_trainable")
    print(
        f"trainable parameters: {inspect.getdoc(formula) if formula and formula.__doc__ else 'see the source'}"
    )
    print(f"source: {inspect.getsourcefile(module)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refimpl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list the registered methods")
    listing.add_argument("--category", choices=CATEGORIES)
    listing.add_argument("--fm", choices=FOUNDATION_MODELS, help="foundation-model type")
    listing.set_defaults(handler=_list)
    info = commands.add_parser("info", help="paper, update rule, options and parameter formula of a method")
    info.add_argument("method")
    info.set_defaults(handler=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RefimplError as error:
        print(f"refimpl: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
