"""Property tests of the language constructs the modern CNNs need: each is checked against what it
must mean, on random instances.

(a) list indexing, slicing, comprehensions, unpacking and the numeric builtins evaluate as Python does;
(b) a computed label names exactly what the same labels written out would;
(c) `inline b(...)` elaborates to the IR of `b`'s body written in the caller's place;
(d) `residual if c { body }` is `residual { body }` where `c` holds and the body alone where not;
(e) `(a, b, ...) = chunk(n)` / `split(...)` slices the channels: static shapes are the runtime ones,
    and concatenating the parts back gives the input;
(f) a squeeze-excitation gate with `in` and `mul` computes `x * sigmoid(fc2(relu(fc1(pool(x)))))`, and
    every node's runtime shape is its static shape;
(g) `output a, b, training: c` returns (a, b) in eval and (a, b, c) in training.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdsl

FEW = settings(max_examples=25, deadline=None, derandomize=True)
SOME = settings(max_examples=60, deadline=None, derandomize=True)

try:
    import torch

    from graphdsl.backends import torch as torch_backend
except ImportError:  # the static properties (a)-(d) need no torch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def value_of(expr: str):
    """The value of an expression, as the default of a network parameter."""
    net = graphdsl.load(text=f"network n(v = {expr}) {{ input 1x1x1 }}")
    return net.graph.graph["params"]["v"]


def ir(net: graphdsl.Network) -> list:
    g = net.graph
    return [(n, d["op"], sorted(d["attrs"].items(), key=str), tuple(d["shape"]), sorted(g.predecessors(n)))
            for n, d in g.nodes(data=True)]


ints = st.integers(min_value=-50, max_value=50)
int_lists = st.lists(ints, min_size=1, max_size=8)


def lit(values) -> str:
    return "[" + ", ".join(map(str, values)) + "]"


# ---- (a) values ---------------------------------------------------------------------------------


@SOME
@given(int_lists, st.data())
def test_index_and_slice_as_python(xs, data):
    i = data.draw(st.integers(min_value=-len(xs), max_value=len(xs) - 1))
    lo = data.draw(st.one_of(st.none(), st.integers(-10, 10)))
    hi = data.draw(st.one_of(st.none(), st.integers(-10, 10)))
    assert value_of(f"{lit(xs)}[{i}]") == xs[i]
    spelled = f"{'' if lo is None else lo}:{'' if hi is None else hi}"
    assert value_of(f"{lit(xs)}[{spelled}]") == tuple(xs[lo:hi])


@SOME
@given(int_lists, st.integers(-5, 5))
def test_comprehension_enumerate_zip_sum_as_python(xs, k):
    assert value_of(f"[x * 2 for x in {lit(xs)} if x > {k}]") == tuple(x * 2 for x in xs if x > k)
    assert value_of(f"enumerate({lit(xs)}, {k})") == tuple(enumerate(xs, k))
    assert value_of(f"zip({lit(xs)}, {lit(xs[::-1])})") == tuple(zip(xs, xs[::-1]))
    assert value_of(f"sum({lit(xs)})") == sum(xs)
    assert value_of(f"[a + b for a, b in zip({lit(xs)}, {lit(xs)})]") == tuple(2 * x for x in xs)


@SOME
@given(st.floats(min_value=0.01, max_value=2000, allow_nan=False), st.sampled_from([4, 8, 16]))
def test_numeric_builtins(v, divisor):
    text = repr(v)
    assert value_of(f"int({text})") == int(v)
    assert value_of(f"ceil({text})") == math.ceil(v)
    assert value_of(f"floor({text})") == math.floor(v)
    assert value_of(f"round({text})") == round(v)
    # torchvision.models._utils._make_divisible
    expected = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if expected < 0.9 * v:
        expected += divisor
    assert value_of(f"make_divisible({text}, {divisor})") == expected


@SOME
@given(st.lists(st.tuples(ints, ints, ints), min_size=1, max_size=5))
def test_unpacking_in_for(rows):
    # sum of t * c + n over the rows, through a running `let` counter
    spec = f"""network n {{
        input 1x1x1
        let total = 0
        for i, (t, c, n) in enumerate({lit([f"({t}, {c}, {n})" for t, c, n in rows])}) {{
            let total = total + t * c + n + i
        }}
        assert total == {sum(t * c + n + i for i, (t, c, n) in enumerate(rows))}, "running counter"
    }}"""
    graphdsl.load(text=spec)


# ---- (b) computed labels -------------------------------------------------------------------------


@FEW
@given(st.integers(1, 6), st.integers(0, 3), st.sampled_from(["layer", "block2-", "x_"]))
def test_computed_labels_are_the_written_ones(n, start, prefix):
    computed = graphdsl.load(text=f"""network n {{ input 4x8x8
        features: [ for i in range({n}) {{ "{prefix}{{i + {start}}}": conv(4, 3, pad=1) }} ] }}""")
    written = "\n".join(f'"{prefix}{i + start}": conv(4, 3, pad=1)' for i in range(n))
    literal = graphdsl.load(text=f"network n {{ input 4x8x8  features: [ {written} ] }}")
    assert ir(computed) == ir(literal)
    assert [n for n in computed.graph if n != "input"] == [f"features.{prefix}{i + start}" for i in range(n)]


# ---- (c) inline calls, (d) conditional residuals -----------------------------------------------------



def _one_label(items: list[str]) -> list[str]:
    """Drop repeats of the labelled layer: a label names one layer of a scope."""
    labelled = [i for i, it in enumerate(items) if it.startswith("c1:")]
    return [it for i, it in enumerate(items) if i not in labelled[1:]]


bodies = st.lists(st.sampled_from(["conv(c, 3, pad=1)", "bn", "relu", "c1: conv(c, 1)", "maxpool(3, stride=1, pad=1)"]),
                  min_size=1, max_size=5).map(_one_label)


@FEW
@given(bodies, st.integers(1, 8), st.integers(0, 2))
def test_inline_is_the_body_written_in_place(body, c, before):
    head = " ".join(["relu"] * before)
    text = "\n".join(body)
    inlined = graphdsl.load(text=f"""block b(c) {{ {text} }}
        network n {{ input 8x8x8  features: [ {head} inline b({c}) relu ] }}""")
    literal = graphdsl.load(text=f"network n {{ input 8x8x8  let c = {c}  features: [ {head} {text} relu ] }}")
    assert ir(inlined) == ir(literal)


@FEW
@given(bodies, st.booleans())
def test_residual_if(body, condition):
    text = "\n".join(body)
    cond = "true" if condition else "false"
    conditional = graphdsl.load(text=f"network n {{ input 8x8x8  let c = 8  s: [residual if {cond} {{ {text} }}] }}")
    expected = (f"network n {{ input 8x8x8  let c = 8  s: [residual {{ {text} }}] }}" if condition else
                f"network n {{ input 8x8x8  let c = 8  s: [{text}] }}")
    assert ir(conditional) == ir(graphdsl.load(text=expected))


# ---- (e) channel splits, (f) gates, (g) outputs: against torch -----------------------------------------


def runtime_matches_static(net, x):
    module = net.to_torch().eval()
    shapes = torch_backend.node_shapes(net, module, x)
    for node, d in net.graph.nodes(data=True):
        assert shapes[node] == tuple(d["shape"]), node
    return module


@needs_torch
@FEW
@given(st.integers(2, 4), st.integers(1, 6), st.booleans())
def test_chunk_and_split(parts, width, use_split):
    c = parts * width
    names = [f"p{i}" for i in range(parts)]
    call = f"split({', '.join([str(width)] * parts)})" if use_split else f"chunk({parts})"
    spec = f"network n {{ input {c}x5x5  ({', '.join(names)}) = {call}  concat({', '.join(names)}) }}"
    net = graphdsl.load(text=spec)
    for i in range(parts):
        d = net.graph.nodes[f"p{i}"]
        assert d["op"] == "channels" and d["shape"] == (width, 5, 5)
        assert (d["attrs"]["start"], d["attrs"]["stop"]) == (i * width, (i + 1) * width)
    x = torch.randn(2, c, 5, 5)
    module = runtime_matches_static(net, x)
    with torch.no_grad():
        assert torch.equal(module(x), x)


@needs_torch
@FEW
@given(st.integers(2, 12), st.integers(1, 4), st.integers(3, 6))
def test_squeeze_excitation_gate(c, squeeze, size):
    spec = f"""block se(squeeze) {{
        let c = in.channels
        avgpool: avgpool(adaptive=1)  fc1: conv(squeeze, 1)  relu
        fc2: conv(c, 1)  gate: sigmoid
        mul(gate, in)
    }}
    network n {{ input {c}x{size}x{size}  se: se({squeeze}) }}"""
    net = graphdsl.load(text=spec)
    x = torch.randn(2, c, size, size)
    module = runtime_matches_static(net, x)
    fc1, fc2 = module.se.fc1, module.se.fc2
    with torch.no_grad():
        gate = torch.sigmoid(fc2(torch.relu(fc1(x.mean((2, 3), keepdim=True)))))
        torch.testing.assert_close(module(x), x * gate)


@needs_torch
@FEW
@given(st.integers(1, 3), st.integers(0, 2))
def test_training_outputs(always, training):
    heads = [f"h{i}" for i in range(always + training)]
    binds = "\n".join(f"{h} = [avgpool(global), flatten, linear({i + 2})]" for i, h in enumerate(heads))
    out = ", ".join(heads[:always]) + (", training: " + ", ".join(heads[always:]) if training else "")
    net = graphdsl.load(text=f"network n {{ input 3x8x8  conv(4, 3)  {binds}  output {out} }}")
    assert net.graph.graph["training_outputs"] == heads[always:]
    module = net.to_torch()
    x = torch.randn(2, 3, 8, 8)
    module.eval()
    got = module(x)
    got = got if isinstance(got, tuple) else (got,)
    assert [tuple(t.shape) for t in got] == [(2, i + 2) for i in range(always)]
    module.train()
    got = module(x)
    got = got if isinstance(got, tuple) else (got,)
    assert [tuple(t.shape) for t in got] == [(2, i + 2) for i in range(always + training)]
