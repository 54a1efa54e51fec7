"""Mutations of specs: token-level (aware of the language's words, numbers, strings and statements)
and byte-level (bit flips, chunks, and the bytes that hurt: NUL, escape sequences, bidi overrides,
line separators, invalid UTF-8, invisible and look-alike characters)."""

from __future__ import annotations

import random
import re

from .grammar import FUNCTIONS, OPERATORS, PLAIN_NAMES, Deriver
from .seeds import Seed

TOKEN = re.compile(r'"""[\s\S]*?(?:"""|\Z)|"(?:[^"\\\n]|\\.)*"?|#[^\n]*|\d+(?:[x×]\d+)+|\d+\.\d*(?:[eE][+-]?\d+)?'
                   r'|\.\d+|\d+(?:[eE][+-]?\d+)?|[A-Za-z_]\w*|//|==|!=|<=|>=|\s+|.', re.S)
KEYWORDS = ("network", "block", "import", "let", "if", "else", "for", "in", "input", "output", "from", "assert",
            "residual", "shortcut", "inline", "true", "false", "same", "global", "not", "and", "or", "training")
PUNCT = ("{", "}", "(", ")", "[", "]", ",", ";", ":", "=", "*", ".", "-", "+", "/", "//", "%", "==", "<", "\"", "#",
         "x", "\\", "@", "`")
NUMBERS = ("0", "-1", "1", "2", "3", "100000", "2147483648", "9223372036854775807", "9223372036854775808",
           "18446744073709551616", "1" + "0" * 30, "9" * 4301, "1e308", "1e999", "0.0", "-0.0", "1e-320", "0x10",
           "1_000", "00", "3x224x224", "0x0x0", "99999x99999x99999", "1.5", "(1, 2)", "[]", "-2147483649", "65536")
# Text that a terminal acts on, or that hides or disguises what a line says.
INJECT = ("\x1b]0;pwned\x07", "\x1b[2J\x1b[H", "\x1b[31mred\x1b[0m", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "\x07",
          "\x08\x08\x08", "\r", "\x00", "\u202e", "\u2066", "\u202d\u202e", "\u2028", "\u2029", "\x0c", "\x0b",
          "\u200b", "\ufeff", "\u00a0", "\u0441", "\u03bf", "\u0430", "\x85", "\x9b31m", "\t", "\x7f", "\u2067",
          "\u061c", "\u200d", "\U000e0041", "\u00ad", "\ud7ff", "\x1bP0;0\x1b\\")
BAD_BYTES = (b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x80", b"\xc0\xaf", b"\x80",
             b"\xef\xbb\xbf", b"\x00", b"\x1b", b"\r", b"\xc2\x9b", b"\xe2\x80\xae")
LINE_ENDS = ("\r\n", "\r", "\u2028", "\x0c\n", "\u0085", "\n\n\n", "\t\n", " \\\n")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


class Mutator:
    def __init__(self, rng: random.Random, seeds: tuple[Seed, ...]):
        self.rng = rng
        self.seeds = seeds
        self.deriver = Deriver(rng, max_tokens=60)

    # ---- token level -----------------------------------------------------------------------------

    def tokens(self, text: str, rounds: int | None = None) -> str:
        toks = tokens(text)
        if not toks:
            toks = [""]
        for _ in range(rounds or self.rng.choice((1, 1, 1, 2, 2, 3, 5))):
            op = self.rng.choice(self.TOKEN_OPS)
            toks = op(self, toks) or toks
        return "".join(toks)

    def _pos(self, toks: list[str], kind: str | None = None) -> int | None:
        """A random index of a token of `kind` (number, name, string, comment), or of any non-space one."""
        def fits(t: str) -> bool:
            if kind == "number":
                return t[:1].isdigit()
            if kind == "name":
                return bool(re.match(r"[A-Za-z_]", t))
            if kind == "string":
                return t.startswith('"')
            if kind == "comment":
                return t.startswith("#")
            return not t.isspace()

        idx = [i for i, t in enumerate(toks) if fits(t)]
        return self.rng.choice(idx) if idx else None

    def t_delete(self, toks):
        i = self._pos(toks)
        if i is not None:
            del toks[i:i + self.rng.choice((1, 1, 2, 5, 20))]
        return toks

    def t_duplicate(self, toks):
        i = self._pos(toks)
        if i is not None:
            span = toks[i:i + self.rng.choice((1, 2, 4, 10, 40))]
            toks[i:i] = span * self.rng.choice((1, 1, 2, 10, 100))
        return toks

    def t_swap(self, toks):
        i, j = self._pos(toks), self._pos(toks)
        if i is not None and j is not None:
            toks[i], toks[j] = toks[j], toks[i]
        return toks

    def t_number(self, toks):
        i = self._pos(toks, "number")
        if i is not None:
            toks[i] = self.rng.choice(NUMBERS)
        return toks

    def t_name(self, toks):
        i = self._pos(toks, "name")
        if i is not None:
            names = [t for t in toks if re.match(r"[A-Za-z_]\w*$", t)]
            pool = self.rng.choice((names, KEYWORDS, OPERATORS, FUNCTIONS, PLAIN_NAMES,
                                    ("unknown_thing", "x" * 300, "in", "output", "conv2d", "Conv", "relU")))
            toks[i] = self.rng.choice(pool)
        return toks

    def t_insert(self, toks):
        i = self.rng.randrange(len(toks) + 1)
        toks.insert(i, self.rng.choice((*KEYWORDS, *PUNCT, *OPERATORS[:10], " ", "\n")) + " ")
        return toks

    def t_splice(self, toks):
        other = tokens(self._other_text())
        if other:
            a = self.rng.randrange(len(other))
            span = other[a:a + self.rng.choice((1, 3, 10, 50, 200))]
            i = self.rng.randrange(len(toks) + 1)
            toks[i:i] = span
        return toks

    def t_payload(self, toks):
        """An injection payload where text is echoed: into a string, a comment, a name, or anywhere."""
        payload = self.rng.choice(INJECT)
        where = self.rng.choice(("string", "comment", "name", None))
        i = self._pos(toks, where)
        if i is None:
            i = self.rng.randrange(len(toks))
        t = toks[i]
        cut = self.rng.randint(1, max(1, len(t) - 1)) if len(t) > 1 else len(t)
        toks[i] = t[:cut] + payload + t[cut:]
        return toks

    def t_wrap(self, toks):
        """A statement (a line of a body) inside a loop, a repetition, a group, a branch, or nested."""
        lines = "".join(toks).split("\n")
        idx = [k for k, ln in enumerate(lines) if ln.startswith((" ", "\t")) and ln.strip()
               and not ln.strip().startswith(("#", '"'))]
        if not idx:
            return toks
        k = self.rng.choice(idx)
        n = self.rng.choice(("2", "3", "0", "100", "100000", "depth"))
        body = lines[k]
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            body = self.rng.choice((f"for i in range({n}) {{ {body} }}", f"[{body}] * {n}",
                                    f"concat {{ {body} {body} }}",
                                    f"residual {{ {body} }}", f"if true {{ {body} }}", f"{body} * {n}",
                                    f"add {{ [{body}] [] }}", f"[for j in range({n}) {{ {body} }}]"))
        lines[k] = body
        return tokens("\n".join(lines))

    def t_fragment(self, toks):
        """A statement or expression derived from the grammar, at a statement start or for a number."""
        if self.rng.random() < 0.5:
            i = self._pos(toks, "number")
            if i is not None:
                toks[i] = "(" + self.deriver.derive("expr") + ")"
                return toks
        lines = "".join(toks).split("\n")
        k = self.rng.randrange(len(lines))
        lines.insert(k, "    " + self.deriver.derive("stmt"))
        return tokens("\n".join(lines))

    def t_chain(self, toks):
        """Blocks calling blocks: a chain of `depth` blocks each calling the next `fan` times, called from
        the first statement of the spec's first body."""
        depth, fan = self.rng.choice(((3, 2), (10, 2), (20, 2), (40, 2), (5, 10), (100, 1), (600, 1)))
        defs = "".join(f"block fz{k}() {{ " + " ".join([f"fz{k + 1}"] * fan) + " }\n" for k in range(depth))
        defs += f"block fz{depth}() {{ relu }}\n"
        text = "".join(toks)
        m = re.search(r"input [^\n]*\n", text)
        if m:
            text = text[:m.end()] + "    fz0\n" + text[m.end():]
        return tokens(defs + text)

    def t_line_ends(self, toks):
        text = "".join(toks)
        end = self.rng.choice(LINE_ENDS)
        if self.rng.random() < 0.5:
            return tokens(text.replace("\n", end))
        parts = text.split("\n")
        k = self.rng.randrange(len(parts))
        return tokens("\n".join(parts[:k]) + end + "\n".join(parts[k:]))

    TOKEN_OPS = (t_delete, t_duplicate, t_swap, t_number, t_number, t_name, t_name, t_insert, t_splice, t_payload,
                 t_payload, t_wrap, t_wrap, t_fragment, t_fragment, t_chain, t_line_ends)

    def _other_text(self) -> str:
        seed = self.rng.choice(self.seeds)
        return seed.files[seed.main].decode("utf-8", "replace")

    # ---- byte level ------------------------------------------------------------------------------

    def bytes(self, data: bytes, rounds: int | None = None) -> bytes:
        buf = bytearray(data)
        for _ in range(rounds or self.rng.choice((1, 1, 2, 3, 8))):
            op = self.rng.choice(self.BYTE_OPS)
            op(self, buf)
        return bytes(buf)

    def b_flip(self, buf: bytearray):
        if buf:
            i = self.rng.randrange(len(buf))
            buf[i] ^= 1 << self.rng.randrange(8)

    def b_set(self, buf: bytearray):
        if buf:
            buf[self.rng.randrange(len(buf))] = self.rng.randrange(256)

    def b_insert(self, buf: bytearray):
        i = self.rng.randint(0, len(buf))
        buf[i:i] = bytes(self.rng.randrange(256) for _ in range(self.rng.choice((1, 2, 4, 16))))

    def b_delete(self, buf: bytearray):
        if buf:
            i = self.rng.randrange(len(buf))
            del buf[i:i + self.rng.choice((1, 4, 16, 256))]

    def b_duplicate(self, buf: bytearray):
        if buf:
            i = self.rng.randrange(len(buf))
            chunk = buf[i:i + self.rng.choice((1, 8, 64, 512))]
            j = self.rng.randint(0, len(buf))
            buf[j:j] = chunk * self.rng.choice((1, 2, 16))

    def b_interesting(self, buf: bytearray):
        i = self.rng.randint(0, len(buf))
        if self.rng.random() < 0.6:
            buf[i:i] = self.rng.choice(INJECT).encode("utf-8", "surrogatepass")
        else:
            buf[i:i] = self.rng.choice(BAD_BYTES)

    def b_truncate(self, buf: bytearray):
        if buf:
            del buf[self.rng.randrange(len(buf)):]

    BYTE_OPS = (b_flip, b_set, b_insert, b_delete, b_duplicate, b_interesting, b_interesting, b_interesting, b_truncate)
