"""Resource bombs: small specs that ask for a great deal of work, memory, output or depth.

Each family draws its size from a menu that runs from harmless to the issue's reproducers, so that
a run finds both the cliff and the slope (a cost that grows faster than the input). Each returns
the files of a case (parts, so that big inputs stay small in the corpus) and the command.
"""

from __future__ import annotations

import random

from .case import Parts

HEAD = b"network bomb {\n    input 3x8x8\n"
TAIL = b"\n}\n"


def _net(*body, before: bytes = b"") -> Parts:
    """A network `bomb` around `body`: each item a `(chunk, times)` pair, or a chunk followed by its
    count, or a lone chunk (once)."""
    parts: Parts = [(before + HEAD, 1)]
    items = list(body)
    while items:
        item = items.pop(0)
        if isinstance(item, tuple):
            chunk, times = item
        else:
            chunk, times = item, items.pop(0) if items and isinstance(items[0], int) else 1
        parts.append((chunk.encode() if isinstance(chunk, str) else chunk, times))
    parts.append((TAIL, 1))
    return parts


def _one(text: str) -> Parts:
    return [(text.encode(), 1)]


class Bombs:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def draw(self) -> tuple[str, dict[str, Parts], str]:
        """(family, files, main)."""
        family = self.rng.choice(self.FAMILIES)
        out = family(self)
        if isinstance(out, tuple):
            return family.__name__, out[0], out[1]
        return family.__name__, {"net.cnn": out}, "net.cnn"

    def size(self, *menu: int) -> int:
        return self.rng.choice(menu)

    def nested_for(self) -> Parts:
        n, m = self.size(10, 1000, 100_000), self.size(10, 1000, 100_000)
        body = self.rng.choice(("", "", "relu", "let z = i"))
        if self.rng.random() < 0.3:
            return _net(f"for i in range({n}) {{ for j in range({m}) {{ for k in range({m}) {{ {body} }} }} }}", 1)
        return _net(f"for i in range({n}) {{ for j in range({m}) {{ {body} }} }}", 1)

    def empty_repeat(self) -> Parts:
        n = self.size(10, 1000, 100_000)
        inner = self.rng.choice(("", "", "relu", "identity"))
        return _net(f"[[[ {inner} ] * {n}] * {n}] * {n}", 1)

    def block_chain(self) -> Parts:
        depth, fan = self.size(10, 20, 30, 40, 60), self.size(2, 2, 3)
        defs = "".join(f"block b{k}() {{ " + " ".join([f"b{k + 1}"] * fan) + " }\n" for k in range(depth))
        defs += f"block b{depth}() {{ {self.rng.choice(('relu', '', 'identity'))} }}\n"
        return _net("b0", 1, before=defs.encode())

    def big_repeat(self) -> Parts:
        n = self.size(100, 1000)
        return _net(f"[[conv(8, 1) * {n}] * {n}] * {n}", 1)

    def shared_list(self) -> Parts:
        """A list of 10^levels elements from `levels` short lines (each level repeats the one before)."""
        levels = self.size(3, 5, 7, 8, 9)
        lines = ["let l0 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"]
        lines += [f"let l{k} = [" + ", ".join([f"l{k - 1}"] * 10) + "]" for k in range(1, levels)]
        last = f"l{levels - 1}"
        use = self.rng.choice((f"conv({last}, 3)", f"blk({last})", f"assert len({last}) < 0, \"x\"", f"{last} + 1",
                               f"linear({last})", f"let q = {last}[99999999999]", f"let q = {last} == {last}",
                               f"\"s\" + {last}"))
        before = b"block blk(v) { relu }\n" if use.startswith("blk") else b""
        return _net("\n".join(lines) + "\n" + use, 1, before=before)

    def deep_list(self) -> Parts:
        d = self.size(100, 400, 1000, 3000, 100_000)
        kind = self.rng.choice(("list", "paren", "group", "not", "neg", "param", "blockarg", "index"))
        if kind == "list":
            return _net("let x = ", 1, ("[", d), ("1", 1), ("]", d), ("\nlet y = len(x)", 1))
        if kind == "paren":
            return _net("let x = ", 1, ("(", d), ("1", 1), (")", d))
        if kind == "group":
            return _net(("[", d), ("relu", 1), ("]", d))
        if kind == "not":
            return _net("let x = ", 1, ("not ", d), ("true", 1))
        if kind == "neg":
            return _net("let x = ", 1, ("- ", d), ("1", 1))
        if kind == "index":
            return _net("let x = [1]", 1, ("[0]", d))
        if kind == "param":
            return [(b"network bomb(x = ", 1), (b"[", d), (b"1", 1), (b"]", d),
                    (b") {\n    input 3x8x8\n    relu\n}\n", 1)]
        return _net("let x = ", 1, ("[", d), ("1", 1), ("]", d), ("\nblk(x)", 1), before=b"block blk(v) { relu }\n")

    def deep_statements(self) -> Parts:
        d = self.size(100, 1000, 10_000)
        kind = self.rng.choice(("if", "residual", "for", "concat"))
        if kind == "if":
            return _net(("if false { relu } else ", d), ("{ relu }", 1))
        if kind == "residual":
            return _net(("residual { ", d), ("relu", 1), (" }", d))
        if kind == "for":
            return _net(("for i in range(1) { ", d), ("relu", 1), (" }", d))
        return _net(("concat { relu ", d), ("relu", 1), (" }", d))

    def huge_int(self) -> Parts:
        digits = self.size(4300, 4301, 5000, 100_000)
        where = self.rng.choice(("let x = {}", "input 3x224x{}", "conv({}, 3)", "for i in range({}) {{ }}",
                                 "let x = 1.{}", "let x = {}e5", "let x = {} // 7", "maxpool({})", "let x = -{}"))
        pre, post = where.split("{}")
        pre, post = (t.replace("{{", "{").replace("}}", "}") for t in (pre, post))
        body = [(pre, 1), ("9", digits), (post, 1)]
        if where.startswith("input"):
            return [(b"network bomb {\n    ", 1), *[(b.encode(), n) for b, n in body], (TAIL, 1)]
        return _net(*body)

    def huge_range(self) -> Parts:
        big = self.rng.choice(("9223372036854775807", "9223372036854775808", "18446744073709551616",
                               "4611686018427387904", "100000000000000000000"))
        use = self.rng.choice((f"for i in range({big}) {{ }}", f"let n = len(range({big}))",
                               f"let x = [i for i in range({big})]", f"for i in range(-{big}, {big}) {{ }}",
                               f"let x = range({big})[{big}]", f"let x = range(0, {big}, {big})",
                               f"let x = sum(range({big}))", f"relu * {big}", f"let x = [0] * {big}",
                               f"let x = \"ab\" * {big}", f"for i, v in enumerate(range({big})) {{ }}"))
        return _net(use, 1)

    def many_errors_line(self) -> Parts:
        n = self.size(100, 1000, 10_000, 60_000)
        tok = self.rng.choice(("= ", ") ", "conv(, ", "] ", ": ", "in ", "@ ", "1x ", "\" ", "{ "))
        return _net("    ", 1, (tok, n))

    def unknown_names(self) -> Parts:
        n = self.size(100, 1000, 4000)
        defs = "".join(f"block blk_{k:05d}() {{ relu }}\n" for k in range(n))
        uses = " ".join(f"blx_{k:05d}" for k in range(n))
        return _net(uses, 1, before=defs.encode())

    def big_list(self) -> Parts:
        n = self.size(10_000, 100_000, 700_000, 3_000_000)
        end = self.rng.choice(("]", "] zz", "", "]\nconv(x, 3)"))
        return _net("let x = [", 1, ("0, ", n), ("0" + end, 1))

    def wide_merge(self) -> Parts:
        w = self.size(100, 3000, 5000, 20_000)
        kind = self.rng.choice(("concat", "add", "named-concat", "named-add"))
        if kind in ("concat", "add"):
            return _net(f"{kind} {{ ", 1, ("conv(8, 1) " if kind == "concat" else "relu ", w), ("}", 1))
        op = kind.split("-")[1]
        names = "".join(f"t{k} = relu\n" for k in range(w))
        return _net(names + f"{op}(" + ", ".join(f"t{k}" for k in range(w)) + ")", 1)

    def many_named(self) -> Parts:
        n = self.size(1000, 15_000, 20_000)
        return _net("".join(f"s{k} = conv(8, 1)\n" for k in range(n)) + "relu", 1)

    def long_chain(self) -> Parts:
        n = self.size(10_000, 100_000, 200_000)
        if self.rng.random() < 0.5:
            return _net(("relu\n", n))
        return _net(f"relu * {n}", 1)

    def error_loop(self) -> Parts:
        n = self.size(1000, 100_000)
        err = self.rng.choice(("nosuch", "conv(0, 1)", "from nowhere", "assert false, \"no\"", "let q = 1 / 0"))
        return _net(f"for i in range({n}) {{ {err} }}", 1)

    def big_file(self) -> Parts:
        n = self.size(9_999_990, 10_000_000, 10_000_001, 12_000_000)
        kind = self.rng.choice(("comment", "line", "spaces"))
        if kind == "comment":
            return [(b"#", 1), (b"x", n - 1)]
        if kind == "line":
            return [(b"network n { input 3x8x8 relu ", 1), (b"relu ", n // 5), (b"}", 1)]
        return [(b" ", n)]

    def long_line_error(self) -> Parts:
        n = self.size(1000, 100_000, 1_000_000)
        return _net(("relu ", n), ("@ nosuch(", 1))

    def long_text(self) -> Parts:
        n = self.size(1000, 100_000, 5_000_000)
        kind = self.rng.choice(("assert", "label", "name", "string", "doc", "comment"))
        if kind == "assert":
            return _net("assert false, \"", 1, ("a", n), ("\"", 1))
        if kind == "label":
            return _net("\"", 1, ("a", n), ("\": relu", 1))
        if kind == "name":
            return _net(("a", n), (": nosuch", 1))
        if kind == "string":
            return _net("let s = \"", 1, ("\\x", n), ("\"\nconv(s, 3)", 1))
        if kind == "doc":
            return [(b'"""', 1), (b"doc ", n), (b'"""\n' + HEAD + b"relu" + TAIL, 1)]
        return _net("# ", 1, ("\x1b[2J", n), ("\nnosuch", 1))

    def comprehension(self) -> Parts:
        n = self.size(100, 10_000, 1_000_000)
        return _net(f"let x = [[i * j for i in range({n})] for j in range({n})]\nlet y = len(x)", 1)

    def recursion(self) -> Parts:
        kind = self.rng.choice(("self", "mutual", "alias"))
        if kind == "self":
            return _net("r", 1, before=b"block r() { relu r }\n")
        if kind == "mutual":
            return _net("a", 1, before=b"block a() { b }\nblock b() { a }\n")
        return _one("network a = b()\nnetwork b = a()\n")

    def many_networks(self) -> Parts:
        n = self.size(100, 10_000)
        return [(b"".join(b"network n%d { input 3x8x8 relu }\n" % k for k in range(n)), 1)]

    def import_chain(self) -> tuple[dict[str, Parts], str]:
        """`net.cnn` imports m1.cnn, which imports m2.cnn, ...; or everyone imports everyone."""
        n = self.size(10, 300, 2000)
        files: dict[str, Parts] = {}
        if self.rng.random() < 0.5:
            for k in range(1, n):
                files[f"m{k}.cnn"] = _one(f'import "m{k + 1}.cnn"\nblock b{k}() {{ relu }}\n')
            files[f"m{n}.cnn"] = _one(f"block b{n}() {{ relu }}\n")
        else:
            n = min(n, 300)
            for k in range(1, n + 1):
                files[f"m{k}.cnn"] = _one("".join(f'import "m{j}.cnn"\n' for j in range(1, n + 1) if j != k))
        files["net.cnn"] = [(b'import "m1.cnn"\n' + HEAD + b"relu" + TAIL, 1)]
        return files, "net.cnn"

    FAMILIES = (nested_for, empty_repeat, block_chain, big_repeat, shared_list, shared_list, deep_list, deep_list,
                deep_statements, huge_int, huge_int, huge_range, many_errors_line, unknown_names, big_list, wide_merge,
                many_named, long_chain, error_loop, big_file, long_line_error, long_text, comprehension, recursion,
                many_networks, import_chain)
