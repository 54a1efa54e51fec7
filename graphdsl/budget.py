"""The limits of one elaboration: total work, size of values, layers. Checked before the work.

A spec is untrusted and small text can ask for a lot: `for i in range(100000) { for j in range(100000) { } }`
is one line. Counting graph nodes does not bound the work of loops with empty bodies, nor of lists built by
sharing (`let b = [a, a, a]`, ten times over, is 10^10 numbers from ten lines). So every elaboration runs
against a `Budget`: a count of steps (statements run, loop passes, repetitions, list elements made), and
size limits on every value made (elements counted through nesting, nesting depth, string length).

Loops, repetitions and block calls are weighed before they run (a static lower bound of their work, see
`graphdsl.workload`): a bomb is refused at once, with a located diagnostic naming the limit, instead of
after minutes. The limits are generous for real networks (the largest torchvision model elaborates in
about 10,000 steps) and can be raised through the environment for the rare spec that needs more.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

from .diagnostics import Diagnostic, Span


def _limit(name: str, default: int) -> int:
    """A limit, raised (or lowered) by the environment variable GRAPHDSL_<NAME>; a bad value keeps the default."""
    raw = os.environ.get(f"GRAPHDSL_{name}", "")
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        return default
    return value if value > 0 else default


MAX_STEPS = _limit("MAX_STEPS", 1_000_000)  # statements run, loop passes, repetitions, list elements made
# Nodes of the graph. Every command stays within about 5 s and 1 GB on any spec within the limits (on a
# 2-core machine; `compile` is the slowest: about 100 µs and 20 KB a layer, most of it Python parsing
# the generated source to check it). Larger networks are allowed by raising it.
MAX_LAYERS = _limit("MAX_LAYERS", 30_000)
MAX_ITEMS = _limit("MAX_ITEMS", 100_000)  # elements of one value, counted through nested lists
MAX_DEPTH = 32  # nesting of lists in a value: a network's settings table is two or three deep
MAX_STRING = _limit("MAX_STRING", 10_000)  # characters of a string value

STEPS_HELP = ("a real network elaborates in far fewer steps; if this one is meant, raise the limit with the "
              "environment variable GRAPHDSL_MAX_STEPS")


class Exhausted(Exception):
    """A budget is spent: elaboration stops as a whole, not just the statement (what is left would only
    spend more). Carries the located diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


class ValueTooLarge(Exception):
    """A value over a size limit; the caller turns it into a located diagnostic."""


class Budget:
    """The work left to one elaboration, and the measured sizes of the lists it made."""

    def __init__(self, steps: int | None = None):
        self.limit = MAX_STEPS if steps is None else steps
        self.left = self.limit
        # id -> (the list, its elements counted through nesting, its depth). The list is held so that its
        # id stays its own while it is remembered; lists made by sharing are measured once.
        self._measured: dict[int, tuple[tuple, int, int]] = {}

    def charge(self, steps: int, span: Span | None, what: str) -> None:
        """Spend `steps`, or stop with a diagnostic at `span` saying that `what` goes past the limit."""
        if steps > self.left:
            raise Exhausted(Diagnostic(
                f"{what}: past the limit of {self.limit:,} steps of elaboration", span, help=STEPS_HELP))
        self.left -= steps

    def afford(self, steps: int, span: Span | None, what: str) -> None:
        """Check, before running it, that work of at least `steps` fits in what is left (spends nothing:
        the work charges itself as it runs)."""
        if steps > self.left:
            spent = self.limit - self.left
            already = f" ({spent:,} spent before)" if spent > self.limit // 4 else ""
            raise Exhausted(Diagnostic(
                f"{what}, at least {steps:,} steps: past the limit of {self.limit:,} steps of elaboration{already}",
                span, help=STEPS_HELP))

    def measure(self, value) -> tuple[int, int]:
        """(elements, depth) of a value: a list counts its elements and theirs; a string its characters.
        Raises ValueTooLarge past MAX_ITEMS elements, MAX_DEPTH levels or MAX_STRING characters."""
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise ValueTooLarge(f"a string of {len(value):,} characters (at most {MAX_STRING:,})")
            return 1, 0
        if not isinstance(value, tuple):
            return 1, 0
        known = self._measured.get(id(value))
        if known is not None and known[0] is value:
            return known[1], known[2]
        items, depth = len(value), 1
        if items > MAX_ITEMS:
            raise ValueTooLarge(f"a list of {items:,} elements (at most {MAX_ITEMS:,})")
        for v in value:
            if isinstance(v, (tuple, str)):
                n, d = self.measure(v)
                items += n if isinstance(v, tuple) else 0
                depth = max(depth, d + 1)
                if depth > MAX_DEPTH:
                    raise ValueTooLarge(f"lists nested more than {MAX_DEPTH} deep")
                if items > MAX_ITEMS:
                    raise ValueTooLarge(f"a list of more than {MAX_ITEMS:,} elements, counting those of the lists "
                                        "inside it")
        if len(value) > 16:  # short lists are cheap to measure again; remember the ones that repay it
            self._measured[id(value)] = (value, items, depth)
        return items, depth


_current: ContextVar[Budget | None] = ContextVar("graphdsl_budget", default=None)


def current() -> Budget:
    """The budget of the elaboration under way; outside one, a fresh one (callers that evaluate outside an
    elaboration, such as `-D` literals, open their own with `spending`)."""
    budget = _current.get()
    return Budget() if budget is None else budget


class spending:
    """`with spending(budget):` makes `budget` the current one for the code inside."""

    def __init__(self, budget: Budget):
        self.budget = budget

    def __enter__(self) -> Budget:
        self._token = _current.set(self.budget)
        return self.budget

    def __exit__(self, *exc) -> None:
        _current.reset(self._token)
