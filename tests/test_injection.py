"""No string of a spec becomes code: doc strings, labels, block and network names, tensor names,
string parameters and file names reach the generated module only as validated identifiers, string
literals, comments or escaped docstrings. Each case checks that the source holds only imports and
classes, that the texts come back unchanged where they belong (docstrings), that the module builds and
runs, and that a tripwire the payload would set off stays untouched.
"""

from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main
from graphdsl.values import show

TRIPWIRE = Path(os.environ.get("TMPDIR", "/tmp")) / "graphdsl_injection_tripwire"

PAYLOADS = [
    '"""\nimport os\nos.system("touch TRIP")\n"""',
    "'''\nimport os; os.system('touch TRIP')\n'''",
    '\\"""; __import__("os").system("touch TRIP"); """',
    'ends with a quote"',
    "ends with a backslash \\",
    "\\n newline escape \\x00 \\u2028 and a real\ttab",
    "line\r\nbreaks\rof every\x0bkind\x0c\x1c\u2028\u2029\x85 end",
    "# comment\n    def forward(self, x): return x",
    "nested \"\"\"\"\"\" quotes \"\" and '''",
]


def expected_doc(text: str) -> str:
    """What a docstring shows for `text` (Windows line ends become newlines)."""
    return inspect.cleandoc(inspect.cleandoc(text).replace("\r\n", "\n"))


def trip(payload: str) -> str:
    return payload.replace("TRIP", str(TRIPWIRE))


def cnn_string(text: str) -> str:
    """`text` as a .cnn triple-quoted string literal, where the language can hold it."""
    return '"""' + text + '"""'


def check_source(src: str) -> ast.Module:
    tree = ast.parse(src)
    for i, stmt in enumerate(tree.body):
        assert isinstance(stmt, (ast.Import, ast.ImportFrom, ast.ClassDef)) or (
            i == 0 and isinstance(stmt, ast.Expr)), ast.dump(stmt)[:200]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("exec", "eval", "__import__", "compile", "open"), ast.unparse(node)
        if isinstance(node, ast.Attribute):
            assert node.attr != "system", ast.unparse(node)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {a.name for a in node.names}
            assert names <= {"torch", "torch.nn.functional", "nn", "OrderedDict"}, names
    return tree


def build_and_run(net):
    torch = pytest.importorskip("torch")
    m = net.to_torch().eval()
    out = m(torch.randn(1, *net.input_shape))
    assert isinstance(out, torch.Tensor)
    stateful = {n for n, d in net.graph.nodes(data=True) if d.get("params") or d.get("buffers")}
    assert {k.rsplit(".", 1)[0] for k in m.state_dict()} == stateful
    return m


@pytest.fixture(autouse=True)
def tripwire():
    TRIPWIRE.unlink(missing_ok=True)
    yield
    assert not TRIPWIRE.exists(), "a payload ran"


# ---- doc strings --------------------------------------------------------------------------------------


def language_can_hold(text: str) -> bool:
    return '"""' not in text and not text.endswith('"') and not text.endswith("\\")


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if language_can_hold(trip(p))])
def test_doc_strings(payload):
    payload = trip(payload)
    spec = (f"block blk(c) {{ {cnn_string(payload)}  conv: conv(c, 1) }}\n"
            f"network n {{ {cnn_string(payload)}  input 3x8x8  b: blk(4) }}")
    net = graphdsl.load(text=spec)
    src = net.source()
    tree = check_source(src)
    docs = {c.name: ast.get_docstring(c) for c in tree.body if isinstance(c, ast.ClassDef)}
    assert docs["Blk"] == expected_doc(net.graph.graph["scopes"][("b",)]["doc"])
    assert docs["N"].startswith(expected_doc(net.doc))
    m = build_and_run(net)
    assert inspect.getdoc(type(m)).startswith(expected_doc(net.doc))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_doc_strings_from_the_ir(payload):
    """Doc strings the language cannot even write (`\"\"\"` inside) still come out escaped: the IR is
    set directly, as a front end with other quoting rules might."""
    payload = trip(payload)
    net = graphdsl.load(text="block blk(c) { conv: conv(c, 1) }\nnetwork n { input 3x8x8  b: blk(4) }")
    net.graph.graph["doc"] = payload
    net.graph.graph["scopes"][("b",)]["doc"] = payload
    tree = check_source(net.source())
    docs = {c.name: ast.get_docstring(c) for c in tree.body if isinstance(c, ast.ClassDef)}
    expected = expected_doc(payload)
    assert docs["Blk"] == expected
    assert docs["N"].startswith(expected)
    build_and_run(net)


# ---- names ----------------------------------------------------------------------------------------------

LABELS = ["self", "torch", "nn", "F", "x", "out", "class", "def", "return", "None", "True", "lambda", "super",
          "getattr", "print", "__import__", "OrderedDict", "match", "_", "import_", "Tensor"]


@pytest.mark.parametrize("label", LABELS)
def test_labels(label):
    spec = f"""
    block blk(c) {{ {label}: conv(c, 1)  relu }}
    network n {{
        input 3x8x8
        {label}: conv(4, 1)
        g: [{label}: conv(4, 1), bn]
        h: [a: conv(4, 1), {label} = relu, add(a, {label})]
        k: blk(4)
        {label}_side = conv(2, 1)
        output g, training: {label}_side
    }}
    """
    net = graphdsl.load(text=spec)
    check_source(net.source())
    m = build_and_run(net)
    assert f"{label}.weight" in m.state_dict() and f"k.{label}.weight" in m.state_dict()


@pytest.mark.parametrize("name", ["__import__", "class", "def", "torch", "nn", "F", "None", "os", "self", "x",
                                  "Tensor", "print", "OrderedDict", "forward"])
def test_network_and_block_names(name):
    spec = f"""
    block {name}(c) {{ conv: conv(c, 1)  bn }}
    network {name} {{ input 3x8x8  a: {name}(4)  b: {name}(8) }}
    """
    net = graphdsl.load(text=spec)
    tree = check_source(net.source())
    classes = [c.name for c in tree.body if isinstance(c, ast.ClassDef)]
    assert len(classes) == len(set(classes)) == 2
    for c in classes:
        assert c.isidentifier() and c not in ("torch", "nn", "F", "None", "OrderedDict")
    build_and_run(net)


@pytest.mark.parametrize("label", ["forward", "training", "__class__", "_modules", "state_dict", "to"])
def test_module_attribute_names_are_diagnostics_not_tracebacks(label, tmp_path):
    spec = tmp_path / "s.cnn"
    spec.write_text(f"network n {{ input 3x8x8  {label}: conv(4, 1) }}")
    with pytest.raises(graphdsl.SpecError, match=f"`{label}` cannot name a layer in PyTorch"):
        graphdsl.load(spec).source()
    out = tmp_path / "out.py"
    out.write_text("earlier\n")
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(out)])
    assert result.exit_code == 1 and "cannot name a layer in PyTorch" in result.output
    assert "Traceback" not in result.output and out.read_text() == "earlier\n"


# ---- other strings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["'''; import os; os.system('touch TRIP'); '''",
                                     "x) __import__('os').system('touch TRIP')  # ",
                                     "ends with a quote'"])
def test_string_parameters(payload):
    payload = trip(payload)
    net = graphdsl.load(text=f'network n(tag = "{payload}") {{ input 3x8x8  conv(4, 1) }}')
    tree = check_source(net.source())
    assert payload in ast.get_docstring(tree, clean=False)
    build_and_run(net)


def test_string_parameters_from_overrides():
    payload = trip('"""\nimport os; os.system("touch TRIP")\n"""')
    net = graphdsl.load(text='network n(tag = "x") { input 3x8x8  conv(4, 1) }', tag=payload)
    tree = check_source(net.source())
    assert show(payload) in ast.get_docstring(tree, clean=False)  # as the spec would write it
    build_and_run(net)


@pytest.mark.parametrize("filename", ['a"""b.cnn', "new\nline.cnn", "back\\slash.cnn", "quote'.cnn"])
def test_file_names(tmp_path, filename):
    try:
        path = tmp_path / filename
        path.write_text("network n { input 3x8x8  conv(4, 1) }")
    except OSError:
        pytest.skip("the file system refuses this name")
    tree = check_source(graphdsl.load(path).source())
    assert filename in ast.get_docstring(tree, clean=False)


def test_tensor_names_in_outputs():
    net = graphdsl.load(text="network n { input 3x8x8  self: conv(4, 1)  class = relu  output self, training: class }")
    tree = check_source(net.source())
    doc = ast.get_docstring(next(c for c in tree.body if isinstance(c, ast.ClassDef)))
    assert "`self`" in doc and "`class`" in doc
    build_and_run(net)
