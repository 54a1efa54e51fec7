"""`graphdsl fmt`: every spec in one layout, comments and doc strings kept.

The layout (graphdsl/printer.py prints it):

- 4 spaces a level; one statement a line (`,` `;` and statements side by side become lines);
  blank lines between statements kept, at most one; one blank line between top-level definitions
  (imports and consecutive `network a = b(...)` lines keep theirs);
- spaces around binary operators and after commas; `k=v` in calls, `name = default` in parameters;
- lines of at most 100 columns: an argument list, a list or a `[...]` group that does not fit is filled
  onto lines aligned after its opening bracket, a comprehension breaks before its `for`; what cannot be
  broken (a long name, a long comment) stays long;
- a group written on one line (`[conv(64, 3), bn, relu]`) and a `{ }` body written on one line
  (`if act { relu }`) stay on one line where they fit and hold no comment; otherwise they are blocks;
- comments stay where they are: a trailing comment after its line (aligned with the trailing comments
  of the lines around it, two spaces after the longest of their code), an own-line comment above what
  follows it; a list whose elements have comments between them keeps its rows;
- doc strings, numbers (`1e-6`), strings, shapes (`3x224x224`) and `(3, 3)` against `[3, 3]` are kept
  as written; line ends become `\\n`.

Formatting never changes what a spec means: the printed text parses to the same syntax tree.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys

import click

from .diagnostics import Diagnostic, Span, SpecError
from .printer import Unprintable, print_module
from .syntax import parse
from .text import escape_controls, normalize_newlines


def format_source(text: str, file: str = "<string>") -> tuple[str | None, list[Diagnostic]]:
    """The spec `text` in the canonical layout, or None and the syntax errors (as `graphdsl check` gives
    them). The result is checked before it is returned: it parses to the same syntax tree and holds the
    same comments in the same order; where it would not (a bug of the printer), the spec is refused
    with a diagnostic rather than changed."""
    text = normalize_newlines(text)
    if text.startswith("\ufeff"):
        text = text[1:]
    comments: list = []
    module, errors = parse(text, file, comments=comments)
    if module is None:
        return None, errors
    problem = None
    try:
        formatted = print_module(module, text, comments)
    except Unprintable as e:
        problem = str(e)
    else:
        printed_comments: list = []
        again, _ = parse(formatted, file, comments=printed_comments)
        if again is None or _shape(again) != _shape(module):
            problem = "the formatted text would mean something else"
        elif [str(c).rstrip() for c in printed_comments] != [str(c).rstrip() for c in comments]:
            problem = "the formatted text would lose or reorder a comment"
    if problem is not None:
        return None, [Diagnostic(f"cannot format this spec: {problem}", Span(file, 1, 1, 1, 1),
                                 help="the file is left as it is; please report this with the spec")]
    return formatted, []


def _shape(node):
    """A syntax tree as plain values without its spans: what formatting must keep."""
    if isinstance(node, Span):
        return None
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(_shape(getattr(node, f.name)) for f in dataclasses.fields(node)
                                              if f.name != "file")
    if isinstance(node, tuple):
        return tuple(_shape(x) for x in node)
    if isinstance(node, (bool, int, float)):
        return (type(node).__name__, node)  # 1.0, 1 and true are different literals
    return node


def _shown(text) -> str:
    return escape_controls(str(text))


@click.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--check", is_flag=True, help="Write nothing; exit 1 listing the files that would change.")
@click.option("--diff", "show_diff", is_flag=True, help="Write nothing; print a unified diff of the changes.")
def fmt_command(files, check, show_diff):
    """Format .cnn FILEs in place in the canonical layout (`-` formats standard input to standard output).

    Exit status: 0 when done (or, with --check, nothing would change), 1 when a file has syntax errors
    (it is left as it was) or, with --check, would change."""
    from .files import OutputRefused, write_atomic
    from .program import read_source

    failed = changed = False
    for file in files:
        if file == "-":
            source = sys.stdin.read()
        else:
            source, problem = read_source(file)
            if problem is not None:
                click.echo(escape_controls(SpecError([problem], {}).render(), keep="\n"), err=True)
                failed = True
                continue
        name = "<stdin>" if file == "-" else file
        formatted, errors = format_source(source, name)
        if formatted is None:
            rendered = SpecError(errors, {name: normalize_newlines(source)}).render()
            click.echo(escape_controls(rendered, keep="\n"), err=True)
            failed = True
            continue
        if file == "-" and not (check or show_diff):
            click.echo(formatted, nl=False)
            continue
        if formatted == source:
            continue
        changed = True
        if show_diff:
            diff = difflib.unified_diff(normalize_newlines(source).splitlines(keepends=True),
                                        formatted.splitlines(keepends=True), f"{name}", f"{name} (formatted)")
            click.echo(escape_controls("".join(diff), keep="\n"), nl=False)
        if check:
            click.echo(f"would reformat {_shown(name)}", err=True)
        elif not show_diff:
            try:
                mode = os.stat(file).st_mode & 0o7777
                os.chmod(write_atomic(file, formatted), mode)  # the file keeps its permissions
            except OutputRefused as e:
                click.echo(f"error: {_shown(e.message)}\nhelp: {_shown(e.help)}", err=True)
                failed = True
                continue
            except OSError as e:
                click.echo(f"error: cannot write {_shown(file)}: {_shown(e.strerror or e)}", err=True)
                failed = True
                continue
            click.echo(f"reformatted {_shown(name)}", err=True)
    if failed or (check and changed):
        sys.exit(1)
