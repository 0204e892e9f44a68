"""What the bench scripts share: the repository on ``sys.path`` (they import ``accord`` and the test fakes from
the checkout) and their command line, declared as a table of options::

    args = parse_args(__doc__, argv, {"--items": 5000, "--template": "likert_unsafe", "--no-baseline": False,
                                      "--out": Opt(None, "write the HTML here", Path)})

An option's default gives its type (``False``: a switch); ``Opt`` adds a help text, or the type a default of
None cannot give. The description is the first paragraph of the script's docstring, or all of it as written
(``whole_doc``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Opt:
    default: Any
    help: str | None = None
    type: Callable[[str], Any] | None = None     # None: the default's type


def make_parser(doc: str | None, options: Mapping[str, Any], whole_doc: bool = False) -> argparse.ArgumentParser:
    """The script's parser, with the options of the table."""
    parser = (argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
              if whole_doc else argparse.ArgumentParser(description=(doc or "").split("\n\n")[0]))
    for flag, spec in options.items():
        opt = spec if isinstance(spec, Opt) else Opt(spec)
        if opt.default is False:
            parser.add_argument(flag, action="store_true", help=opt.help)
        else:
            parser.add_argument(flag, type=opt.type or type(opt.default), default=opt.default, help=opt.help)
    return parser


def parse_args(doc: str | None, argv: list[str] | None, options: Mapping[str, Any],
               whole_doc: bool = False) -> argparse.Namespace:
    """The script's arguments (``argv``; None: the command line's) for the options of the table."""
    return make_parser(doc, options, whole_doc).parse_args(argv)
