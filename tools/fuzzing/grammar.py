"""The grammar as a generator and as a measure.

`Deriver` draws random programs (or statements, or expressions) from graphdsl's own Lark grammar:
it walks the rules' expansions (after Lark has compiled `*`, `?` and `[...]` into plain rules),
picks the shortest way out past a depth bound, and fills terminals from sample tables biased
towards the language's real operators, functions and shapes, so that many draws parse and some
elaborate.

`Coverage` parses a text with the same grammar with every `?` (inline) marker removed, so that
each rule and each alias shows up in the tree as a node: the rules a run has exercised are the
node labels seen in the trees of the inputs that parse.
"""

from __future__ import annotations

import random
import re
from functools import cache
from importlib import resources

from lark import Lark, Token, Tree

OPERATORS = ("conv", "bn", "relu", "linear", "maxpool", "avgpool", "flatten", "dropout", "identity", "concat", "add",
             "mul", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softmax", "hardswish",
             "hardsigmoid", "upsample", "lrn", "layer_norm", "scale", "channel_affine", "subsample", "pad_channels",
             "stochastic_depth", "permute", "channel_shuffle", "channels", "chunk", "split")
FUNCTIONS = ("range", "len", "min", "max", "sum", "enumerate", "zip", "abs", "int", "float", "round", "ceil", "floor",
             "make_divisible", "str")
PLAIN_NAMES = ("x", "y", "a", "b", "c", "t", "n", "i", "j", "k", "width", "depth", "stride", "planes", "out", "cfg",
               "stem", "layer1", "layer2", "fc", "head", "features", "block1", "net", "gate", "branch", "num_classes",
               "pad", "kernel", "groups", "bias", "p", "channels", "eps", "adaptive", "size", "mode", "inplace")
KEYWORD_ARGS = ("stride", "pad", "bias", "groups", "dilation", "kernel", "inplace", "p", "eps", "adaptive", "scale",
                "mode", "slope", "alpha", "ceil", "start", "stop", "dims", "size", "init")
SAMPLES = {
    "INT": ("0", "1", "2", "3", "4", "7", "8", "16", "32", "64", "100", "1000", "65536", "9223372036854775808"),
    "FLOAT": ("0.5", "1e-5", "1.0", "0.", ".25", "2.5e3", "1e308", "1e999", "0.0"),
    "STRING": ('"x"', '"layer{i}"', '"stage{i + 1}"', '"""A doc."""', '"a\\"b"', '"lib.cnn"', '"{"', '"{i}.{j}"',
               '"same"', '"nearest"', '""'),
    "SHAPE": ("3x32x32", "1x28x28", "3x224x224", "64x7x7", "3x8x8", "16x1x1", "3×16×16", "0x1x1", "3x1x1x1"),
    "COMPARE": ("==", "!=", "<=", ">=", "<", ">"),
    "ADD_OP": ("+", "-"),
    "MUL_OP": ("*", "/", "//", "%"),
    "IN": ("in",),
    "CALL": ("(",),
    "INDEX": ("[",),
    "_SEP": (",", ";"),
}


@cache
def grammar_text() -> str:
    return resources.files("graphdsl").joinpath("grammar.lark").read_text(encoding="utf-8")


@cache
def _lark(inline: bool) -> Lark:
    text = grammar_text() if inline else re.sub(r"(?m)^(\s*)\?(?=\w)", r"\1", grammar_text())
    return Lark(text, parser="lalr", start=["start", "expr"], maybe_placeholders=True)


class Coverage:
    """Which rules (and aliases) of the grammar a set of inputs exercises."""

    def __init__(self):
        self.parser = _lark(inline=False)
        self.rules = frozenset(_label(r) for r in self.parser.rules if not r.origin.name.startswith("_"))
        # regex terminals that reach the tree (Lark filters `_NAME` ones out)
        self.terminals = frozenset(t.name for t in self.parser.terminals if t.pattern.type == "re"
                                   and t.name not in ("WS", "COMMENT") and not t.name.startswith("_"))

    def __call__(self, text: str) -> list[str]:
        """The rule labels and regex terminals in `text`'s parse tree; [] where it does not parse."""
        try:
            tree = self.parser.parse(text, start="start")
        except Exception:  # noqa: BLE001 - any parse failure: nothing covered
            return []
        seen: set[str] = set()
        stack: list = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, Tree):
                seen.add(str(node.data))
                stack.extend(node.children)
            elif isinstance(node, Token):
                seen.add("$" + node.type)
        return sorted(seen)


def _label(rule) -> str:
    return str(rule.alias or rule.origin.name)


class Deriver:
    """Random derivations from the grammar."""

    def __init__(self, rng: random.Random, max_depth: int = 40, max_tokens: int = 300):
        self.rng = rng
        self.max_depth = max_depth
        self.max_tokens = max_tokens
        lark = _lark(inline=True)
        self.by_origin: dict[str, list] = {}
        for r in lark.rules:
            self.by_origin.setdefault(r.origin.name, []).append(r)
        self.literals = {t.name: t.pattern.value for t in lark.terminals if t.pattern.type == "str"}
        self.cost = self._costs()

    def _costs(self) -> dict[str, int]:
        """The fewest terminals each rule can derive: the way out when the depth runs out."""
        cost: dict[str, float] = dict.fromkeys(self.by_origin, float("inf"))
        changed = True
        while changed:
            changed = False
            for name, rules in self.by_origin.items():
                best = min(sum(1 if s.is_term else cost[s.name] for s in r.expansion) for r in rules)
                if best < cost[name]:
                    cost[name], changed = best, True
        return {k: int(v) for k, v in cost.items()}

    def derive(self, start: str = "start") -> str:
        tokens: list[tuple[str, str]] = []
        self._walk(start, 0, tokens)
        return self.render(tokens)

    def _walk(self, name: str, depth: int, out: list[tuple[str, str]]) -> None:
        rules = self.by_origin[name]
        costs = [sum(1 if s.is_term else self.cost[s.name] for s in r.expansion) for r in rules]
        if depth >= self.max_depth or len(out) >= self.max_tokens:
            rule = rules[costs.index(min(costs))]
        else:
            # uniform near the root; ever more towards the short ways out as the tree deepens
            k = max(0.0, (depth - 8) / 3)
            rule = self.rng.choices(rules, weights=[(1 + c) ** -k for c in costs])[0]
        for sym in rule.expansion:
            if sym.is_term:
                out.append((sym.name, self.terminal(sym.name)))
            else:
                self._walk(sym.name, depth + 1, out)

    def terminal(self, name: str) -> str:
        rng = self.rng
        if name in self.literals:
            return self.literals[name]
        if name == "NAME":
            pool = rng.choice((OPERATORS, OPERATORS, FUNCTIONS, PLAIN_NAMES, KEYWORD_ARGS))
            return rng.choice(pool)
        if name in SAMPLES:
            return rng.choice(SAMPLES[name])
        return "x"

    def render(self, tokens: list[tuple[str, str]]) -> str:
        """Tokens as text: a `(` or `[` that must touch what it follows (CALL, INDEX) does; statements
        sometimes on lines of their own."""
        out: list[str] = []
        for kind, text in tokens:
            if out and kind not in ("CALL", "INDEX"):
                out.append("\n" if kind in ("LBRACE", "RBRACE") or self.rng.random() < 0.05 else " ")
            out.append(text)
        return "".join(out)
