"""The PyTorch code generator (graphdsl.backends.torch): golden files, the shape of the generated code,
names, determinism, and the `graphdsl compile` command. Nothing here imports torch: generating code
must not need it (tests/test_torch_module.py runs the code).

The golden files are tests/golden/torch/<name>.py. After a deliberate change of the generated code:

    GRAPHDSL_REGEN=1 pytest tests/test_torch_codegen.py
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from golden_files import check_golden
from hypothesis import example, given
from hypothesis import strategies as st

import graphdsl
from graphdsl.backends.torch import MODULE_ATTRS, Namespace, camel, comment, docstring
from graphdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "torch"

SMALL = '''
"""A small network for the golden file: every kind of scope the generator tells apart."""

block unit(c, stride = 1) {
    """conv, batch norm, ReLU."""
    conv: conv(c, 3, stride=stride, pad=1, bias=false)
    bn: bn
    relu(inplace=true)
}

block res(c) {
    residual { a: unit(c)  b: conv(c, 3, pad=1)  bn } shortcut if in.channels != c { proj: conv(c, 1) }
    relu
}

network small(num_classes = 10) {
    """Small but complete: blocks, a labelled repeat, branches, an auxiliary output."""
    input 3x32x32
    stem: unit(16, stride=2)
    body: [res(24), res(24) * 2]
    branches: concat { p: maxpool(3, stride=1, pad=1)  q: [conv(8, 1), relu] }
    head = [avgpool(global), flatten, linear(5)]
    pool: avgpool(adaptive=1)
    flatten
    dropout(0.2)
    fc: linear(num_classes)
    output fc, training: head
}
'''

GOLDEN_SPECS = {
    "small": SMALL,
    "resnet18": "specs/resnet18.cnn",
    "resnet152": "specs/resnet152.cnn",
    "googlenet": "specs/googlenet.cnn",
    "cifar_resnet20": "specs/cifar/resnet20.cnn",
    "mobilenet_v2": "specs/mobilenet_v2.cnn",
}


def spec(name: str) -> str:
    text = GOLDEN_SPECS[name]
    if "\n" in text:
        return text
    path = ROOT / text
    if not path.exists():
        pytest.skip(f"{text} is not in the spec library yet")
    return str(path)


def source(text: str, **overrides) -> str:
    return graphdsl.load(text=text, **overrides).source()


def net(body: str, params: str = "") -> str:
    return f"network n{params} {{\n{body}\n}}"


# ---- golden files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN_SPECS))
def test_golden(name):
    text_or_path = spec(name)
    net = graphdsl.load(text=text_or_path) if "\n" in text_or_path else graphdsl.load(text_or_path)
    check_golden(GOLDEN / f"{name}.py", net.source())


def test_goldens_are_lint_clean():
    """The generated code passes the project's own linter (the same rules as graphdsl itself)."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed")
    files = sorted(p for p in GOLDEN.glob("*.py") if p.name != "conftest.py")
    assert files
    result = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--line-length", "120",
                             "--select", "E,F,W,I,B,UP", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generation_is_deterministic_across_processes():
    """Same spec, same bytes, whatever the hash seed of the process."""
    path = str(spec("resnet18"))
    code = f"import graphdsl, sys; sys.stdout.write(graphdsl.load({path!r}).source())"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outs == {graphdsl.load(path).source()}


def test_generating_source_does_not_import_torch():
    code = """
import sys
import graphdsl
from click.testing import CliRunner
from graphdsl.cli import main
net = graphdsl.load(text=sys.argv[1])
assert "class Small(nn.Module)" in net.source()
result = CliRunner().invoke(main, ["compile", "specs/googlenet.cnn", "-o", "-"])
assert result.exit_code == 0, result.output
bad = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
assert not bad, bad[:5]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code, SMALL], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---- what the code looks like ---------------------------------------------------------------------------


def test_forward_lines_carry_static_shapes():
    text = source(SMALL)
    forward = text.split("class Small(nn.Module):")[1].split("def forward(self, x):")[1]
    steps = [line for line in forward.splitlines() if " = " in line]
    assert len(steps) == 8 and all("  # N x " in line for line in steps)
    assert "x = self.fc(x)  # N x 10" in " ".join(forward.split()).replace(" # ", "  # ")


def test_sequential_for_plain_chains_and_classes_for_blocks():
    text = source(net("input 3x16x16\nfeatures: [conv(8, 3, pad=1), relu(inplace=true), maxpool(2)]\n"
                      "layer: [c: conv(8, 1), bn]\nflatten\nclassifier: [linear(10)]"))
    assert "self.features = nn.Sequential(\n            nn.Conv2d(3, 8, kernel_size=3, padding=1)," in text
    assert "nn.ReLU(inplace=True)" in text and "nn.MaxPool2d(kernel_size=2)" in text
    assert "self.layer = nn.Sequential(OrderedDict([\n            ('c', nn.Conv2d(8, 8, kernel_size=1))," in text
    assert "from collections import OrderedDict" in text
    assert "x = torch.flatten(x, 1)" in text


def test_positional_names_in_classes_use_add_module():
    text = source(net("input 3x8x8\nb: [conv(4, 3), relu, x = conv(4, 1), y = conv(4, 1), add(x, y)]"))
    assert "self.add_module('0', nn.Conv2d(3, 4, kernel_size=3))" in text
    assert "getattr(self, '0')(x)" in text


def test_identical_blocks_share_a_class_and_literals_that_differ_become_parameters():
    text = source("block blk(width) { conv1: conv(width, 3, pad=1)  bn1: bn  relu }\n"
                  + net("input 3x8x8\nfor c in [8, 16, 32] { conv(c, 1)  blk(c) * 2 }"))
    assert text.count("class Blk(") == 1 and "class Blk2" not in text
    assert "def __init__(self, width) -> None:" in text
    assert "self.conv1 = nn.Conv2d(width, width, kernel_size=3, padding=1)" in text
    assert "self.add_module('1', Blk(8))" in text and "self.add_module('8', Blk(32))" in text


def test_class_parameters_follow_the_block_arguments_and_input_channels():
    text = graphdsl.load(spec("resnet18")).source()
    classes = [n.name for n in ast.parse(text).body if isinstance(n, ast.ClassDef)]
    assert classes == ["Bottleneck", "BasicBlock", "ResnetStage", "Resnet18"]
    assert "def __init__(self, inplanes, planes, stride=1) -> None:" in text
    assert "class ResnetStage(nn.Sequential):" in text
    assert "            for _ in range(n - 1):\n                layers.append(BasicBlock(planes, planes))" in text
    assert ("def __init__(self, *, n1=2, n2=2, n3=2, n4=2, bottleneck=False, num_classes=1000, groups=1,\n"
            "                 width_per_group=64) -> None:") in text
    assert "self.layer2 = ResnetStage(256 if bottleneck else 64, 128, n2, 2, bottleneck, groups" in text
    assert "self.fc = nn.Linear(2048 if bottleneck else 512, num_classes)" in text


def test_optional_submodules_and_python_conditions():
    text = graphdsl.load(spec("resnet152")).source()
    assert "        if stride != 1 or inplanes != out:\n            self.downsample = nn.Sequential(" in text
    assert "        else:\n            self.downsample = None" in text
    assert "        if self.downsample is not None:\n            identity = self.downsample(x)" in text
    assert "        width = planes * width_per_group // 64 * groups\n" in text
    googlenet = graphdsl.load(spec("googlenet")).source()
    assert ("        if aux_logits:\n"
            "            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)") in googlenet
    assert "        if self.aux1 is not None and self.training:\n            aux1 = self.aux1(x)" in googlenet
    assert ("        if self.aux_logits and self.training:\n"
            "            return x, aux2, aux1\n        return x") in googlenet


def test_module_docstring_names_the_spec_and_the_command(tmp_path):
    path = write(tmp_path, "s.cnn", SMALL)
    text = graphdsl.load(path, num_classes=3).source()
    assert ast.get_docstring(ast.parse(text)).startswith(
        "PyTorch module of the network `small`, generated by graphdsl from s.cnn.\n\n"
        "Regenerate it rather than editing it: `graphdsl compile s.cnn --network small -D num_classes=3`.")


def code_lines(text: str, names=None) -> int:
    """Lines of code of a module (or of its top-level definitions `names`, imports included): no blank
    lines, comments or docstrings."""
    tree = ast.parse(text)
    docs: set = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docs |= set(range(body[0].lineno, body[0].end_lineno + 1))
    keep: set = set()
    for node in tree.body:
        if names is None or isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "name", None) in names:
            keep |= set(range(node.lineno - len(getattr(node, "decorator_list", ())), node.end_lineno + 1))
    lines = text.splitlines()
    return sum(1 for i in keep - docs if lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_golden_resnet152_is_no_longer_than_torchvisions_resnet():
    """The generated resnet152.py against torchvision's resnet.py model code for the same network (conv3x3,
    conv1x1, BasicBlock, Bottleneck, ResNet, _resnet, resnet152 and the imports; no weights enums), both
    counted without blank lines, comments and docstrings (torchvision 0.29.1: 224 against our 103)."""
    resnet = pytest.importorskip("torchvision.models.resnet")
    theirs = code_lines(Path(resnet.__file__).read_text(), {"conv3x3", "conv1x1", "BasicBlock", "Bottleneck",
                                                             "ResNet", "_resnet", "resnet152"})
    ours = code_lines((GOLDEN / "resnet152.py").read_text())
    assert ours <= theirs, (ours, theirs)


def test_auxiliary_outputs_only_in_training():
    text = source(SMALL)
    assert "        if self.training:\n            head = self.head(x)" in text
    assert "        if self.training:\n            return x, head\n        return x" in text
    assert "In eval mode `forward` computes and returns the main output alone" in text


def test_doc_strings_become_docstrings():
    tree = ast.parse(source(SMALL))
    docs = {n.name: ast.get_docstring(n) for n in tree.body if isinstance(n, ast.ClassDef)}
    assert docs["Unit"] == "conv, batch norm, ReLU."
    assert docs["Small"].startswith("Small but complete: blocks, a labelled repeat, branches, an auxiliary output.")
    assert "Input N x 3 x 32 x 32; main output `fc` N x 10; auxiliary outputs `head` N x 5." in docs["Small"]
    assert ast.get_docstring(tree).startswith("PyTorch module of the network `small`")


def test_inplace_only_where_the_input_is_not_needed_elsewhere():
    # the relu reads `c`, which the add reads too: in place would change the add's input
    text = source(net("input 3x8x8\nc: conv(4, 1)\nt = relu(inplace=true)\nadd(t, c)"))
    assert "self.t = nn.ReLU()" in text and "inplace=True" not in text
    text = source(net("input 3x8x8\nc: conv(4, 1)\nrelu(inplace=true)"))
    assert "x = F.relu(x, inplace=True)" in text
    text = source(net("input 3x8x8\nrelu(inplace=true)"))
    assert "x = F.relu(x)" in text  # never in place on the caller's input


def test_n_ary_add_and_concat():
    text = source(net("input 3x8x8\na: conv(4, 1)\nb: conv(4, 1)\nc: conv(4, 1)\nadd(a, b, c)\nconcat(a, c)"))
    assert " + " in text and "torch.cat([" in text


def test_functional_forms_of_unlabelled_ops():
    text = source(net("input 16x8x8\nsubsample(2)\npad_channels(32)\nlrn(5)\nmaxpool(global)\nflatten\n"
                      "dropout(0.3)\nsoftmax"))
    for expected in ("x[:, :, ::2, ::2]", "F.pad(x, (0, 0, 0, 0, 8, 8))", "F.local_response_norm(x, 5)",
                     "F.adaptive_max_pool2d(x, (1, 1))", "F.dropout(x, p=0.3, training=self.training)",
                     "F.softmax(x, dim=1)"):
        assert expected in text


def test_labelled_parameter_free_ops_are_modules_like_torchvision():
    text = source(net("input 3x8x8\nconv(3, 1)\nrelu: relu(inplace=true)\nmaxpool: maxpool(3, stride=2, pad=1)\n"
                      "avgpool: avgpool(adaptive=1)"))
    assert "self.relu = nn.ReLU(inplace=True)" in text
    assert "self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)" in text
    assert "self.avgpool = nn.AdaptiveAvgPool2d((1, 1))" in text


def test_reserved_module_names_are_diagnostics():
    with pytest.raises(graphdsl.SpecError) as e:
        source(net("input 3x8x8\nforward: conv(4, 3)\ntraining: [conv(4, 1)]"))
    messages = [d.message for d in e.value.diagnostics]
    assert any("`forward` cannot name a layer in PyTorch" in m for m in messages)
    assert any("`training` cannot name a scope in PyTorch" in m for m in messages)
    assert all(d.span is not None for d in e.value.diagnostics)
    # parameter-free: computed functionally, no module needed
    assert "F.relu(x)" in source(net("input 3x8x8\nforward: relu"))
    # a Sequential cannot hold `append`: the group becomes a class
    assert "self.append = nn.Conv2d" in source(net("input 3x8x8\ng: [append: conv(4, 1)]"))


def test_ops_without_lowering_are_diagnostics():
    from graphdsl.ops import REGISTRY, Op, register

    class Mystery(Op):
        name = "mystery_op_for_test"
        family = "reshape"

    register(Mystery)
    try:
        with pytest.raises(graphdsl.SpecError, match="has no PyTorch lowering"):
            source(net("input 3x8x8\nmystery_op_for_test"))
    finally:
        del REGISTRY["mystery_op_for_test"]


def test_custom_ops_lower_through_the_registry():
    from graphdsl.ops import REGISTRY, Op, register

    class Double(Op):
        name = "double_for_test"
        family = "reshape"
        torch_imports = ("import math",)

        def torch_call(self, a, args, ins):
            return f"torch.mul({args[0]}, 2)"

    register(Double)
    try:
        text = source(net("input 3x8x8\ndouble_for_test"))
        assert "x = torch.mul(x, 2)" in text and "import math" in text
    finally:
        del REGISTRY["double_for_test"]


# ---- identifiers and escaping ------------------------------------------------------------------------


def test_namespace():
    ns = Namespace()
    assert [ns.claim(n) for n in ("x", "x", "class", "self", "torch", "F", "print", "0", "__foo", "a-b")] == [
        "x", "x_2", "class_", "self_", "torch_", "F_", "print_", "v_0", "foo", "a_b"]
    classes = Namespace(sep="")
    assert [classes.claim(n) for n in ("Block", "Block", "Resnet18", "Resnet18", "None")] == [
        "Block", "Block2", "Resnet18", "Resnet18_2", "None_"]


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_namespace_claims_only_safe_identifiers(base):
    name = Namespace().claim(base)
    assert name.isidentifier() and name.isascii() and not name.startswith("__")
    import builtins
    import keyword

    assert not keyword.iskeyword(name) and not keyword.issoftkeyword(name) and name not in dir(builtins)


def test_camel():
    assert [camel(n) for n in ("basic_conv", "resnet18", "ResNet", "__import__", "_")] == [
        "BasicConv", "Resnet18", "ResNet", "Import", ""]


@given(st.text(max_size=80), st.sampled_from(["", "    "]))
@example('\\"""; x; """', "    ")
@example('a"', "")
@example('"""" """""', "    ")
@example('\\', "")
@example("x\n  \n\ty  \n", "    ")
@example("\r\n\u2028\x00\x85", "")
def test_docstring_literal_round_trips(text, indent):
    code = "\n".join(docstring(text, indent))
    if indent:
        tree = ast.parse("class C:\n" + code + "\n    pass\n")
        value = ast.get_docstring(tree.body[0], clean=False)
    else:
        value = ast.literal_eval(code)
        assert not code.splitlines() or code.splitlines()[0].startswith('"""')
    assert inspect.cleandoc(value) == inspect.cleandoc(inspect.cleandoc(text).replace("\r\n", "\n"))
    assert all(line == line.rstrip() for line in code.splitlines())  # no trailing whitespace


@given(st.text(max_size=80))
def test_comments_stay_on_one_line(text):
    c = comment(text)
    assert len(("#" + c + "\n").splitlines()) == 1 and all(ch.isprintable() for ch in c)


def test_module_attrs_list_is_a_frozen_set_of_identifiers():
    assert "forward" in MODULE_ATTRS and "training" in MODULE_ATTRS and "conv1" not in MODULE_ATTRS


# ---- graphdsl compile ---------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_compile_writes_the_module_and_says_where(tmp_path, monkeypatch):
    spec_path = write(tmp_path, "small.cnn", SMALL)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["compile", str(spec_path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("wrote small.py: class Small, the network `small` of ")
    assert "parameters" in result.output and "from small import Small" in result.output
    assert (tmp_path / "small.py").read_text() == graphdsl.load(spec_path).source()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.cnn", "small.py"]  # no temporary files left


def test_compile_output_option_overrides_and_network(tmp_path):
    spec_path = write(tmp_path, "two.cnn",
                      "network a { input 3x8x8 relu }\nnetwork b(c = 4) { input 3x8x8 conv(c, 1) }")
    out = tmp_path / "b_net.py"
    result = CliRunner().invoke(main, ["compile", str(spec_path), "-n", "b", "-D", "c=6", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "def __init__(self, *, c=6) -> None:" in out.read_text()
    assert "nn.Conv2d(3, c, kernel_size=1)" in out.read_text()
    assert "Network parameters: c=6." in out.read_text()


def test_compile_to_stdout(tmp_path):
    spec_path = write(tmp_path, "s.cnn", SMALL)
    result = CliRunner().invoke(main, ["compile", str(spec_path), "-o", "-"])
    assert result.exit_code == 0
    assert result.output == graphdsl.load(spec_path).source()


def test_compile_never_writes_on_error_and_keeps_the_earlier_file(tmp_path):
    out = write(tmp_path, "out.py", "# the earlier file\n")
    for text in ("network n { input 3x8x8 conv(4, 9) }",  # invalid spec
                 "network n { input 3x8x8 forward: conv(4, 1) }",  # valid, but not expressible in PyTorch
                 "network n { input 3x8x8 conv(4, "):  # syntax error
        spec_path = write(tmp_path, "bad.cnn", text)
        result = CliRunner().invoke(main, ["compile", str(spec_path), "-o", str(out)])
        assert result.exit_code == 1
        assert "error" in result.output and "Traceback" not in result.output
        assert out.read_text() == "# the earlier file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.cnn", "out.py"]


def test_compile_makes_the_output_folder_and_reports_unwritable_paths(tmp_path):
    spec_path = write(tmp_path, "s.cnn", SMALL)
    result = CliRunner().invoke(main, ["compile", str(spec_path), "-o", str(tmp_path / "build" / "s.py")])
    assert result.exit_code == 0 and (tmp_path / "build" / "s.py").exists()
    (tmp_path / "afile").write_text("")
    result = CliRunner().invoke(main, ["compile", str(spec_path), "-o", str(tmp_path / "afile" / "s.py")])
    assert result.exit_code == 1 and result.output.startswith("error: cannot write")
    assert isinstance(result.exception, SystemExit)


def test_default_file_names_do_not_shadow_modules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, expected in (("torch", "torch_model.py"), ("copy", "copy_model.py"), ("resnet", "resnet.py")):
        spec_path = write(tmp_path, "n.cnn", f"network {name} {{ input 3x8x8 relu }}")
        result = CliRunner().invoke(main, ["compile", str(spec_path)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"wrote {expected}:")


def test_compile_command_runs_as_a_program(tmp_path):
    spec_path = write(tmp_path, "s.cnn", SMALL)
    result = subprocess.run([sys.executable, "-m", "graphdsl.cli", "compile", str(spec_path), "-o",
                             str(tmp_path / "s.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s.py").exists()
