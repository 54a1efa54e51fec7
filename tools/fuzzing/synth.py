"""Well-formed networks, drawn: what reaches elaboration, the passes and every back end.

The drawing follows the shape (channels and side) so that most draws check: convolutions with
`pad=k // 2`, strides only while the side allows, residual bodies that keep the shape, branches of
one side, named side branches merged with `add`. It uses every construct of the language:
blocks with positional, keyword and default parameters, `in.channels`, `let`, `assert`, `for` over
`range`, `enumerate` and lists, comprehensions, `if`/`else`, labels and computed labels, groups and
`* n`, `residual`/`shortcut if`, `concat { }`/`add { }`, named tensors and `from`, `(a, b) =
chunk(2)`, `inline`, several outputs with `training:`, network aliases. A few draws carry one
deliberate mistake.
"""

from __future__ import annotations

import random
import re

BLOCKS = {
    "cbr": """
block cbr(out, k = 3, stride = 1) {
    conv: conv(out, k, stride=stride, pad=k // 2, bias=false)
    bn: bn
    relu
}""",
    "basic": """
block basic(planes, stride = 1) {
    residual {
        conv1: conv(planes, 3, stride=stride, pad=1)
        bn1: bn relu
        conv2: conv(planes, 3, pad=1) bn2: bn
    } shortcut if stride != 1 or in.channels != planes {
        downsample: [conv(planes, 1, stride=stride), bn]
    }
    relu
}""",
    "se": """
block se(r = 4) {
    let c = in.channels
    avgpool: avgpool(adaptive=1)
    fc1: conv(max(1, c // r), 1) relu
    fc2: conv(c, 1) gate: sigmoid
    mul(gate, in)
}""",
    "incep": """
block incep(a, b) {
    concat {
        b1: conv(a, 1)
        b2: [conv(b, 1), relu, conv(b, 3, pad=1)]
        b3: [maxpool(3, stride=1, pad=1), conv(a, 1)]
    }
}""",
    "shuf": """
block shuf() {
    let c = in.channels
    (x1, x2) = chunk(2)
    from x2
    branch: [conv(c // 2, 1), bn, relu]
    concat(x1, branch)
    channel_shuffle(2)
}""",
    "stage": """
block stage(n, planes) {
    for i in range(n) {
        "unit{i}": cbr(planes)
    }
}""",
    "dense": """
block dense(n, growth) {
    for i in range(n) {
        concat {
            []
            "layer{i + 1}": [bn, relu, conv(growth, 3, pad=1)]
        }
    }
}""",
    "maybe": """
block maybe(flag = true) {
    if flag { relu } else if not flag { identity } else { gelu }
}""",
    "widths": """
block widths(cfg = [8, 16]) {
    for j, w in enumerate(cfg) {
        conv(w, 3, pad=1) relu
    }
}""",
    "cl": """
block cl() {
    let c = in.channels
    residual {
        [permute([0, 2, 3, 1]), layer_norm(eps=1e-6), linear(2 * c), gelu, linear(c), permute([0, 3, 1, 2])]
        ls: scale(1e-6)
    }
}""",
}


class Synth:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def spec(self) -> tuple[str, list[str]]:
        """A spec and the options to check it with (`--network`, `-D`)."""
        rng = self.rng
        self.c, self.h = rng.choice((1, 3, 4)), rng.choice((8, 16, 32))
        self.n = 0
        self.used_blocks: set[str] = set()
        self.names: list[str] = []
        head = rng.choice(("", '"""A drawn network."""\n\n'))
        body = self.body(rng.randint(2, 10))
        if rng.random() < 0.1:
            body.insert(rng.randrange(len(body) + 1), self.mistake())
        outputs, tail = self.head()
        params = rng.choice(("", "(width = 8, depth = 2, num_classes = 10, cfg = [4, 8])"))
        if not params:
            body = [re.sub(r"\bwidth\b", "8", re.sub(r"\bdepth\b", "2", re.sub(r"\bcfg\b", "[4, 8]", b)))
                    for b in body]
            tail = [t.replace("num_classes", "10") for t in tail]
        text = head + "".join(BLOCKS[b].lstrip("\n") + "\n\n" for b in sorted(self.used_blocks))
        shape = rng.choice((f"{self.c0}x{self.h0}x{self.h0}", f"({self.c0}, {self.h0}, {self.h0})"))
        lines = [f"input {shape}", *body, *tail, *outputs]
        sep = rng.choice(("\n    ", "\n    ", " ", "; "))
        text += f"network net{params} {{\n    " + sep.join(lines) + "\n}\n"
        args: list[str] = []
        if params and rng.random() < 0.3:
            args += ["-D", rng.choice(("width=4", "depth=1", "num_classes=3", "cfg=[2, 4, 6]", "depth=0"))]
        if params and rng.random() < 0.15:
            text += "\nnetwork wide = net(width=16)\n"
            args += ["--network", rng.choice(("net", "wide"))]
        return text, args

    @property
    def c0(self):
        return self._c0

    def body(self, count: int) -> list[str]:
        self._c0, self.h0 = self.c, self.h
        return [self.stmt() for _ in range(count)]

    def label(self, base: str) -> str:
        self.n += 1
        name = f"{base}{self.n}"
        self.names.append(name)
        return name

    def conv(self, out: int | str | None = None, stride: int = 1) -> str:
        rng = self.rng
        k = rng.choice((1, 3, 3, 5))
        out = out or rng.choice((4, 8, 16, "width"))
        if stride > 1 and self.h >= 4:
            self.h = (self.h + 2 * (k // 2) - k) // stride + 1
        else:
            stride = 1
        self.c = out
        extra = rng.choice(("", ", bias=false", ", groups=1", ", dilation=1"))
        return f"conv({out}, {k}" + (f", stride={stride}" if stride > 1 else "") + f", pad={k // 2}{extra})"

    def stmt(self) -> str:
        rng = self.rng
        kind = rng.choice(("conv", "conv", "act", "bn", "pool", "group", "block", "residual", "branches", "named",
                           "for", "if", "let", "split", "misc", "comprehension"))
        act = rng.choice(("relu", "relu(inplace=true)", "gelu", "silu", "hardswish", "leaky_relu(0.1)", "elu",
                          "sigmoid", "tanh", "relu6", "hardsigmoid"))
        if kind == "conv":
            return f"{self.label('conv')}: {self.conv(stride=rng.choice((1, 1, 2)))}"
        if kind == "act":
            return act
        if kind == "bn":
            return rng.choice(("bn", f"{self.label('bn')}: bn", "bn(eps=1e-3)"))
        if kind == "pool" and self.h >= 4:
            self.h //= 2
            return rng.choice(("maxpool(2)", "avgpool(2)", "maxpool(3, stride=2, pad=1, ceil=true)"))
        if kind == "group":
            c = self.c
            inner = self.conv(c)
            self.c = c
            return f"{self.label('group')}: [{inner}, bn, {act}] * {rng.choice(('2', 'depth', '1', '0'))}"
        if kind == "block":
            b = rng.choice(sorted(BLOCKS))
            self.used_blocks.add(b)
            if b == "basic":
                s = rng.choice((1, 2)) if self.h >= 4 else 1
                self.h = (self.h - 1) // s + 1
                out = rng.choice((4, 8))
                self.c = out
                return f"{self.label('layer')}: basic({out}, stride={s})"
            if b == "cbr":
                out = rng.choice((4, 8, "width"))
                self.c = out
                return rng.choice((f"cbr({out})", f"{self.label('stem')}: cbr({out}, k=1)", f"inline cbr({out})"))
            if b == "se":
                return f"se: se(r={rng.choice((1, 2, 4))})"
            if b == "incep":
                self.c = "a + b + a"
                self.c = None
                return "mix: incep(4, 8)" if rng.random() < 0.5 else "incep(a=2, b=2)"
            if b == "shuf":
                if self.c in (4, 8, 16):
                    return "shuf"
                return "shuf()"
            if b == "stage":
                self.used_blocks.add("cbr")
                out = rng.choice((4, 8))
                self.c = out
                return f"{self.label('stage')}: stage(depth, {out})" if rng.random() < 0.5 else f"stage(2, {out})"
            if b == "dense":
                self.c = None
                return f"dense(2, {rng.choice((2, 4))})"
            if b == "maybe":
                return rng.choice(("maybe", "maybe(false)", "maybe(flag=1 > 2)"))
            if b == "widths":
                self.c = None
                return rng.choice(("widths", "widths([4])", "widths(cfg=cfg)" if rng.random() < 0.5 else "widths"))
            if b == "cl":
                return "cl"
        if kind == "residual":
            c = self.c or 8
            body = f"conv({c}, 3, pad=1) bn {act} conv({c}, 3, pad=1) bn"
            if self.c is None:
                return f"residual {{ {body} }} shortcut {{ conv({c}, 1) }}"
            cond = rng.choice(("", " if true", " if in.channels > 0"))
            return f"residual{cond} {{ {body} }}"
        if kind == "branches":
            op = rng.choice(("concat", "add", "mul"))
            c = rng.choice((4, 8))
            branches = [f"conv({c}, 1)", f"[conv({c}, 3, pad=1), {act}]", f"conv({c}, 1, bias=false)"]
            branches = branches[:rng.randint(2, 3)]
            self.c = c * len(branches) if op == "concat" else c
            return f"{self.label('merge')}: {op} {{ " + " ".join(branches) + " }"
        if kind == "named":
            c = self.c or 8
            t, m = self.label("side"), self.label("main")
            self.c = c
            return f"{t} = [conv({c}, 1), bn] {m}: conv({c}, 3, pad=1) add({t}, {m})"
        if kind == "for":
            c = rng.choice((4, 8))
            self.c = c
            it = rng.choice(("range(depth)", "range(2)", "[1, 2]", "enumerate([4, 8])", "range(1, 3)"))
            var = "j, v" if it.startswith("enumerate") else "i"
            return f"for {var} in {it} {{ conv({c}, 3, pad=1) {act} }}"
        if kind == "if":
            c = self.c or 8
            cond = rng.choice(("width > 4", "depth == 2", "true", "not false and 1 < 2", "in.channels != 3"))
            return f"if {cond} {{ conv({c}, 1) }} else {{ conv({c}, 3, pad=1) }}"
        if kind == "let":
            return rng.choice(("let w = width * 2 + 1", "let a, b = (1, 2)", 'assert depth >= 0, "depth"',
                               "let cfg2 = [x * 2 for x in cfg if x > 0]", "let s = sum([1, 2][:1])",
                               'let name = "n" + str(3)', "let m = make_divisible(30, 8)", "let f = round(2.5)"))
        if kind == "split" and self.c in (4, 8, 16):
            a, b = self.label("x"), self.label("y")
            return f"({a}, {b}) = chunk(2) from {a} concat({a}, {b})"
        if kind == "comprehension":
            c = self.c or 8
            return f"for w in [{c} for i in range(2) if i >= 0] {{ conv(w, 1) }}"
        self.c = self.c
        return rng.choice(("dropout(0.1)", "identity", f"{self.label('drop')}: dropout(p=0.2)", "stochastic_depth(0.1)",
                           "upsample(scale=2) maxpool(2)", "channel_shuffle(1)"))

    def head(self) -> tuple[list[str], list[str]]:
        rng = self.rng
        tail = ["avgpool(global)" if rng.random() < 0.8 else "avgpool(adaptive=1)", "flatten"]
        outputs: list[str] = []
        if rng.random() < 0.2:
            tail.insert(0, "aux = [avgpool(global), flatten, linear(3)]")
            tail += ["fc: linear(num_classes)"]
            outputs.append(rng.choice(("output fc, training: aux", "output fc, aux")))
        else:
            tail += [rng.choice(("fc: linear(num_classes)", "linear(num_classes) softmax", "fc: linear(10)"))]
            if rng.random() < 0.1:
                outputs.append("output fc" if tail[-1].startswith("fc") else "")
        return outputs, tail

    def mistake(self) -> str:
        return self.rng.choice(("conv(0, 3)", "conv(8, 99)", "maxpool(64)", "linear(10)", "nosuchop", "add(x, y)",
                                "conv(8, 3, groups=3)", "from nowhere", "assert false, \"drawn to fail\"",
                                "relu(slope=1)", "conv(-1, 1)", "flatten conv(8, 1)", "channels(0, 99)",
                                "leaky_relu(slope=-0.5, inplace=true)", "elu(alpha=-1, inplace=true)"))
