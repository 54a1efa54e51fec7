"""`graphdsl import FILE` end to end through the real command line, one source of each file format.

Each format's file is imported with the `graphdsl` command (click's runner on `graphdsl.cli:main`, and once
the installed executable in a subprocess); the written spec must pass `graphdsl check` and `graphdsl
compile`; the `--state-dict` file must load with strict=True into both the spec's module and the compiled
Python source, whose outputs must equal the source's own: onnxruntime on the ONNX file (exported here from
specs/cifar/resnet20.cnn with `graphdsl export`), and for Darknet a forward pass written below with
torch.nn.functional from Darknet's definitions (a .weights file written here). Caffe prototxts carry no
weights: the spec's module and the compiled source must agree on the same random weights.

Then the command's contract: `-o -` prints the spec and writes nothing; every failing import exits 1 with
`error:` and `help:`, no traceback, and leaves existing output files byte for byte as they were.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
RESNET_STAGE = DATA / "caffe" / "resnet_stage.prototxt"
INCEPTION = DATA / "caffe" / "inception_stage.prototxt"


def cli(*args: str | Path, ok: bool = True):
    """`graphdsl ARGS` in this process; stdout and stderr kept apart."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def checked(spec: Path) -> dict:
    """`graphdsl check --format json` of a written spec."""
    report = json.loads(cli("check", spec, "--format", "json").stdout)
    assert report["ok"] is True
    return report


def compiled_class(spec: Path, tmp_path: Path):
    """`graphdsl compile` of the spec, the generated source imported: its nn.Module class."""
    out = tmp_path / f"{spec.stem}_compiled.py"
    result = cli("compile", spec, "-o", out)
    class_name = re.search(r"class (\w+)", result.stdout).group(1)
    loader = importlib.util.spec_from_file_location(f"compiled_{spec.stem}", out)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return getattr(module, class_name)


def loaded_modules(spec: Path, state_dict: Path, tmp_path: Path) -> list:
    """The spec's module (graphdsl.load(spec).to_torch()) and the compiled source's, each with the
    --state-dict file loaded with strict=True, in eval mode."""
    torch = pytest.importorskip("torch")
    state = torch.load(state_dict)
    modules = [graphdsl.load(spec).to_torch(), compiled_class(spec, tmp_path)()]
    for module in modules:
        module.load_state_dict(state, strict=True)
        module.eval()
    return modules


def outputs(module, x: np.ndarray) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        y = module(torch.from_numpy(x))
    return [t.double().numpy() for t in (y if isinstance(y, tuple) else (y,))]


def relative_difference(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    assert [g.shape for g in got] == [w.shape for w in want]
    return max(float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)) for g, w in zip(got, want))


# ---- ONNX: graphdsl export -> graphdsl import -> check -> compile -> onnxruntime ---------------------------


@pytest.fixture(scope="module")
def resnet20_onnx(tmp_path_factory) -> Path:
    """specs/cifar/resnet20.cnn exported by `graphdsl export --format onnx` (the one export of this file),
    its BatchNorms given random statistics and affine weights (a fresh module's are 0 and 1 throughout,
    which would hide a mean taken for a variance)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    path = tmp_path_factory.mktemp("onnx") / "resnet20.onnx"
    result = cli("export", ROOT / "specs" / "cifar" / "resnet20.cnn", "--format", "onnx", "-o", path)
    assert "onnxruntime" in result.stdout and path.is_file()
    model, rng = onnx.load(str(path)), np.random.default_rng(7)
    draws = {"running_var": lambda n: rng.uniform(0.5, 1.5, n), "running_mean": lambda n: rng.normal(0, 0.2, n),
             "weight": lambda n: rng.uniform(0.5, 1.5, n), "bias": lambda n: rng.normal(0, 0.2, n)}
    changed = 0
    for tensor in model.graph.initializer:
        kind = tensor.name.rpartition(".")[2]
        if ".bn" in f".{tensor.name}" and kind in draws:
            tensor.CopyFrom(numpy_helper.from_array(draws[kind](tensor.dims[0]).astype(np.float32), tensor.name))
            changed += 1
    assert changed == 4 * 19  # resnet20: a stem bn and two per block, 9 blocks
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_import_checks_compiles_and_matches_onnxruntime(resnet20_onnx, tmp_path):
    import onnxruntime

    spec, state = tmp_path / "net.cnn", tmp_path / "net.pt"
    result = cli("import", resnet20_onnx, "-o", spec, "--state-dict", state)
    assert f"wrote {spec}" in result.stdout and f"wrote {state}" in result.stdout
    report = checked(spec)
    original = graphdsl.load(ROOT / "specs" / "cifar" / "resnet20.cnn")
    assert (report["params"], report["macs"]) == (original.params, original.macs)
    assert report["input"] == [3, 32, 32] and report["outputs"] == {"output": [10]}
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(resnet20_onnx), providers=["CPUExecutionProvider"])
    want = [a.astype(np.float64) for a in session.run(None, {session.get_inputs()[0].name: x})]
    for module in loaded_modules(spec, state, tmp_path):
        assert relative_difference(outputs(module, x), want) <= 1e-4


# ---- Caffe: the installed executable, then check and compile ---------------------------------------------


def test_caffe_import_through_the_installed_executable(tmp_path):
    torch = pytest.importorskip("torch")
    executable = shutil.which("graphdsl", path=str(Path(sys.executable).parent)) or shutil.which("graphdsl")
    if executable is None:
        pytest.skip("the graphdsl executable is not installed")
    spec = tmp_path / "stage.cnn"
    run = subprocess.run([executable, "import", str(RESNET_STAGE), "-o", str(spec)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {spec}: network `ResNet_50`") and "Traceback" not in run.stderr
    report = checked(spec)
    assert report["params"] == graphdsl.load(spec).params == 482_344  # tests/test_import_caffe.py's hand count
    # no weights in a prototxt: the spec's module and the compiled source agree on the same random ones
    reference, compiled = graphdsl.load(spec).to_torch(), compiled_class(spec, tmp_path)()
    torch.manual_seed(0)
    for p in reference.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    compiled.load_state_dict(reference.state_dict(), strict=True)
    x = np.random.default_rng(1).standard_normal((1, *report["input"])).astype(np.float32)
    assert relative_difference(outputs(compiled.eval(), x), outputs(reference.eval(), x)) <= 1e-5


# ---- Darknet: a .cfg and the .weights written here; Darknet's forward in torch.nn.functional --------------

SMALL_CFG = """\
[net]
width=16
height=16
channels=3

# 0: 8x16x16
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

# 1: 8x8x8
[maxpool]
size=2
stride=2

# 2: 8x8x8
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

# 3: layers 2 + 1
[shortcut]
from=-2
activation=linear

# 4: 8x16x16
[upsample]
stride=2

# 5: layers 4 and 0, 16x16x16
[route]
layers=-1,0

# 6: 4x16x16, a bias and no batch norm
[convolutional]
filters=4
size=1
stride=1
pad=1
activation=linear
"""


def darknet_weights(rng) -> tuple[bytes, list[dict]]:
    """A .weights file for SMALL_CFG in Darknet's layout (version 0.2: int64 `seen`), and each
    convolutional's arrays."""
    layers, floats = [], []
    for cin, cout, size, bn in [(3, 8, 3, True), (8, 8, 3, True), (16, 4, 1, False)]:
        layer = {"bias": rng.normal(0, 0.5, cout), "weight": rng.normal(0, 0.3, (cout, cin, size, size))}
        floats.append(layer["bias"])
        if bn:
            layer |= {"scale": rng.normal(1, 0.2, cout), "mean": rng.normal(0, 0.3, cout),
                      "var": rng.uniform(0.5, 1.5, cout)}
            floats += [layer["scale"], layer["mean"], layer["var"]]
        floats.append(layer["weight"])
        layers.append(layer)
    data = struct.pack("<3iq", 0, 2, 0, 32_000) + np.concatenate([f.ravel() for f in floats]).astype("<f4").tobytes()
    # what Darknet computes is on the float32 values the file holds
    return data, [{k: v.astype(np.float32).astype(np.float64) for k, v in layer.items()} for layer in layers]


def darknet_forward(layers: list[dict], x: np.ndarray) -> np.ndarray:
    """Darknet's forward of SMALL_CFG: batch norm divides by sqrt(variance) + 1e-6 (normalize_cpu),
    leaky is 0.1x below 0, the maxpool's padding is size - 1 = 1 cell after (none needed on 16x16)."""
    import torch
    import torch.nn.functional as F

    def conv(t, layer, size):
        y = F.conv2d(t, torch.from_numpy(layer["weight"]), padding=size // 2)
        if "scale" in layer:
            mean, var, scale = (torch.from_numpy(layer[k])[:, None, None] for k in ("mean", "var", "scale"))
            y = (y - mean) / (var.sqrt() + 1e-6) * scale
        return y + torch.from_numpy(layer["bias"])[:, None, None]

    def leaky(t):
        return torch.where(t > 0, t, 0.1 * t)

    out0 = leaky(conv(torch.from_numpy(x).double(), layers[0], 3))
    out1 = F.max_pool2d(out0, 2, 2)
    out3 = leaky(conv(out1, layers[1], 3)) + out1
    out4 = out3.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return conv(torch.cat([out4, out0], dim=1), layers[2], 1).numpy()


def test_darknet_weights_import_checks_compiles_and_matches_darknet(tmp_path):
    pytest.importorskip("torch")
    cfg, weights = tmp_path / "small.cfg", tmp_path / "small.weights"
    cfg.write_text(SMALL_CFG)
    data, layers = darknet_weights(np.random.default_rng(2))
    weights.write_bytes(data)
    spec, state = tmp_path / "small.cnn", tmp_path / "small.pt"
    result = cli("import", cfg, "--weights", weights, "-o", spec, "--state-dict", state)
    assert "network `small`" in result.stdout and f"wrote {state}" in result.stdout
    report = checked(spec)
    # 3*3*3*8 + 2*8 (bn) + 3*3*8*8 + 2*8 + 16*4 + 4 (bias) = 216 + 16 + 576 + 16 + 68 = 892
    assert report["params"] == 892 and report["input"] == [3, 16, 16]
    assert list(report["outputs"].values()) == [[4, 16, 16]]
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = [darknet_forward(layers, x)]
    for module in loaded_modules(spec, state, tmp_path):
        assert relative_difference(outputs(module, x), want) <= 1e-4


# ---- the contract: -o -, errors, nothing half-written --------------------------------------------------


@pytest.fixture(params=["onnx", "prototxt", "cfg"])
def source(request, tmp_path) -> Path:
    """A small file of each format, in tmp_path."""
    if request.param == "onnx":
        return plain_onnx(tmp_path)
    if request.param == "prototxt":
        return Path(shutil.copy(INCEPTION, tmp_path / "inception.prototxt"))
    path = tmp_path / "small.cfg"
    path.write_text(SMALL_CFG)
    return path


def plain_onnx(tmp_path: Path, op: str = "Relu") -> Path:
    """x (1x3x8x8) -> Conv 3x3 (4 filters) -> `op` -> y, written with onnx.helper."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.1, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], "conv_0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c"], ["y"], "act_0")]
    graph = helper.make_graph(nodes, "plain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"plain_{op.lower()}.onnx"
    onnx.save(model, str(path))
    return path


def test_dash_prints_the_spec_and_writes_nothing(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("import", source.name, "-o", "-")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert "wrote" not in result.output
    net = graphdsl.load(text=result.stdout)  # stdout is the spec alone (warnings go to stderr)
    assert net.params > 0
    # the same spec as the one written to a file
    cli("import", source.name, "-o", "written.cnn")
    assert (tmp_path / "written.cnn").read_text() == result.stdout


def truncated(path: Path, cut: int, tmp_path: Path) -> Path:
    out = tmp_path / f"truncated{path.suffix}"
    out.write_bytes(path.read_bytes()[:cut])
    return out


def failing_sources(tmp_path: Path) -> dict[str, tuple[list, str]]:
    """name -> (the import's arguments before -o, what the error says)."""
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SMALL_CFG)
    prototxt = INCEPTION.read_text()
    unknown_cfg = tmp_path / "unknown.cfg"
    unknown_cfg.write_text(SMALL_CFG + "\n[gaussian_yolo]\nmask=0\n")
    unknown_prototxt = tmp_path / "unknown.prototxt"
    unknown_prototxt.write_text('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
                                'layer { name: "warp" type: "Warp" bottom: "data" top: "y" }\n')
    short_weights = tmp_path / "short.weights"
    short_weights.write_bytes(darknet_weights(np.random.default_rng(0))[0][:-4])
    cases = {
        # cut inside `[convolutional]` (SMALL_CFG's third section header)
        "truncated cfg": ([truncated(cfg, SMALL_CFG.index("[conv", 100) + 5, tmp_path)], "is not closed"),
        "truncated prototxt": ([truncated(INCEPTION, prototxt.index("convolution_param {", 3000) + 20, tmp_path)],
                               "the file ends before this `{` is closed"),
        "unknown cfg layer": ([unknown_cfg], "[gaussian_yolo] is not supported"),
        "unknown prototxt layer": ([unknown_prototxt], "`Warp`, which is not supported"),
        "missing file": ([tmp_path / "missing.cfg"], "no such file"),
        "--weights with a prototxt": ([INCEPTION, "--weights", short_weights], "--weights goes with a Darknet .cfg"),
        "NAME=VALUE with a file": ([INCEPTION, "num_classes=10"], "NAME=VALUE arguments are for PyTorch modules"),
        "--state-dict of a prototxt": ([INCEPTION, "--state-dict", tmp_path / "out.pt"], "carries no weights"),
        "--state-dict of a cfg without --weights": ([cfg, "--state-dict", tmp_path / "out.pt"], "carries no weights"),
        "short .weights": ([cfg, "--weights", short_weights, "--state-dict", tmp_path / "out.pt"], "too short"),
    }
    if importlib.util.find_spec("onnx") is not None:
        onnx_file = plain_onnx(tmp_path)
        cases["truncated onnx"] = ([truncated(onnx_file, onnx_file.stat().st_size // 2, tmp_path)],
                                   "is not a readable ONNX model")
        cases["unknown onnx operator"] = ([plain_onnx(tmp_path, "Cos")], "act_0: Cos: this operator is not supported")
    return cases


def test_failing_imports_exit_1_located_and_leave_outputs_alone(tmp_path):
    cases = failing_sources(tmp_path)
    out, state = tmp_path / "out.cnn", tmp_path / "out.pt"
    out.write_text("network kept { }\n")
    state.write_bytes(b"\x80\x02an earlier state_dict")
    kept = {p: p.read_bytes() for p in (out, state)}
    for name, (args, message) in cases.items():
        # --state-dict to the existing file for every case that does not say it already
        extra = [] if "--state-dict" in args else ["--state-dict", state]
        result = cli("import", *args, "-o", out, *extra, ok=False)
        assert result.exit_code == 1, (name, result.output)
        assert "error: " in result.stderr and "help: " in result.stderr, (name, result.stderr)
        assert message in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), name
        assert result.stdout == "", (name, result.stdout)
        assert {p: p.read_bytes() for p in kept} == kept, name
        assert sorted(p.name for p in tmp_path.glob(".graphdsl-*")) == [], name  # no temporary left behind


def test_a_failing_import_without_state_dict_leaves_the_spec_alone(tmp_path):
    """Most failures above fail before --state-dict is looked at; the same without it, with -o -."""
    out = tmp_path / "out.cnn"
    out.write_text("network kept { }\n")
    for name, (args, message) in failing_sources(tmp_path).items():
        if "--state-dict" in args:
            continue
        for output in (out, "-"):
            result = cli("import", *args, "-o", output, ok=False)
            assert result.exit_code == 1 and message in result.stderr and result.stdout == "", (name, result.output)
        assert out.read_text() == "network kept { }\n", name


# ---- hostile inputs: a cheap, deterministic sample of tools-style fuzzing --------------------------------

NET16 = "[net]\nwidth=16\nheight=16\nchannels=3\n"
CONV8 = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
PROTOTXT_INPUT = 'name: "t"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
CAFFE_CONV = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
              'convolution_param { num_output: %s kernel_size: 3 } }\n')


@pytest.mark.parametrize("suffix, text, message", [
    (".cfg", NET16 + CONV8.replace("filters=8", "filters=99999999"), "`filters=99999999` is out of range"),
    (".cfg", NET16.replace("width=16", "width=100000") + CONV8, "`width=100000` is out of range"),
    (".cfg", NET16 + CONV8 + "[route]\nlayers=1\n", "layer 1 is not a layer before it"),  # itself
    (".cfg", NET16 + CONV8 + "[shortcut]\nfrom=5\n", "layer 5 is not a layer before it"),  # a later one
    (".cfg", NET16 + CONV8 + "[shortcut]\nfrom=0\n", "adds layer 0's output to itself"),
    (".prototxt", PROTOTXT_INPUT.replace("input_dim: 8\ninput_dim: 8", "input_dim: 100000\ninput_dim: 8")
     + CAFFE_CONV % 8, "out of range"),
    (".prototxt", PROTOTXT_INPUT + CAFFE_CONV % 99999999, "`num_output: 99999999` is out of range"),
    (".prototxt", PROTOTXT_INPUT + 'layer { name: "x" ' + "a { " * 1000 + "} " * 1000 + "}\n",
     "messages nested more than 32 deep"),
    (".prototxt", PROTOTXT_INPUT + 'layer { name: "a" type: "ReLU" bottom: "b" top: "a" }\n'
     'layer { name: "b" type: "ReLU" bottom: "a" top: "b" }\n', "which no layer before it writes"),
    (".prototxt", PROTOTXT_INPUT.replace("input_dim: 8\n", "input_dim: " + "9" * 5000 + "\n", 1),
     "a number of 5000 characters"),
], ids=["cfg filters=99999999", "cfg width=100000", "cfg route to itself", "cfg shortcut forward",
        "cfg shortcut of itself", "prototxt input_dim 100000", "prototxt num_output 99999999",
        "prototxt braces 1000 deep", "prototxt cycle", "prototxt 5000-digit number"])
def test_hostile_text_files_are_located_errors(suffix, text, message, tmp_path):
    path = tmp_path / f"hostile{suffix}"
    path.write_text(text)
    result = cli("import", path, "-o", tmp_path / "out.cnn", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith(f"{path}:") and message in result.stderr and "\nhelp: " in result.stderr
    assert not (tmp_path / "out.cnn").exists()


def onnx_graph_file(tmp_path: Path, nodes, initializers, name: str, input_shape=(1, 3, 8, 8)) -> Path:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "hostile",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def hostile_onnx(tmp_path: Path, case: str) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node
    if case == "cycle":
        return onnx_graph_file(tmp_path, [node("Relu", ["b"], ["a"], "r1"), node("Relu", ["a"], ["b"], "r2"),
                                          node("Add", ["x", "b"], ["y"], "sum")], [], case)
    weight = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT)
    if case == "10^9-element initializer without data":
        weight.dims.extend([100_000, 10_000, 1, 1])
        return onnx_graph_file(tmp_path, [node("Conv", ["x", "w"], ["y"], "conv_0", kernel_shape=[1, 1])], [weight],
                               "big", input_shape=(1, 10_000, 8, 8))
    if case == "2^62-element initializer":
        weight.dims.extend([2 ** 31, 2 ** 31, 3, 3])
        return onnx_graph_file(tmp_path, [node("Conv", ["x", "w"], ["y"], "conv_0", kernel_shape=[3, 3])], [weight],
                               "huge")
    if case == "input 3x100000x100000":
        return onnx_graph_file(tmp_path, [node("Relu", ["x"], ["y"], "relu")], [], "wide",
                               input_shape=(1, 3, 100_000, 100_000))
    if case == "output no node computes":
        return onnx_graph_file(tmp_path, [node("Relu", ["x"], ["z"], "relu")], [], "dangling")
    raise AssertionError(case)


@pytest.mark.parametrize("case, where, message", [
    ("cycle", "r1", "the graph has a cycle through this node"),
    ("10^9-element initializer without data", "w", "initializer `w` cannot be read"),
])
def test_hostile_onnx_files_are_located_errors(case, where, message, tmp_path):
    path = hostile_onnx(tmp_path, case)
    result = cli("import", path, "-o", tmp_path / "out.cnn", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith(f"error: {where}: ") and message in result.stderr and "\nhelp: " in result.stderr
    assert not (tmp_path / "out.cnn").exists()


# ---- bugs found by the hostile review, fixed: each test failed before its fix ----


@pytest.mark.parametrize("case", ["2^62-element initializer", "input 3x100000x100000", "output no node computes"])
def test_every_onnx_error_has_help(case, tmp_path):
    result = cli("import", hostile_onnx(tmp_path, case), "-o", tmp_path / "out.cnn", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "\nhelp: " in result.stderr, result.stderr


def small_darknet(tmp_path: Path) -> tuple[Path, Path]:
    cfg, weights = tmp_path / "small.cfg", tmp_path / "small.weights"
    cfg.write_text(SMALL_CFG)
    weights.write_bytes(darknet_weights(np.random.default_rng(5))[0])
    return cfg, weights


def test_a_refused_spec_path_leaves_the_state_dict_alone(tmp_path):
    cfg, weights = small_darknet(tmp_path)
    state = tmp_path / "out.pt"
    state.write_bytes(b"an earlier state_dict")
    (tmp_path / "folder.cnn").mkdir()
    result = cli("import", cfg, "--weights", weights, "--state-dict", state, "-o", tmp_path / "folder.cnn", ok=False)
    assert result.exit_code == 1 and "is a directory" in result.stderr
    assert state.read_bytes() == b"an earlier state_dict"



@pytest.mark.parametrize("over", ["--state-dict", "-o"])
def test_the_weights_input_is_never_overwritten(over, tmp_path):
    cfg, weights = small_darknet(tmp_path)
    before = weights.read_bytes()
    args = {"--state-dict": tmp_path / "out.pt", "-o": tmp_path / "out.cnn"} | {over: weights}
    result = cli("import", cfg, "--weights", weights, *[a for kv in args.items() for a in kv], ok=False)
    assert weights.read_bytes() == before
    assert result.exit_code == 1 and "is an input of this run" in result.stderr


def test_spec_and_state_dict_to_one_file_is_an_error(tmp_path):
    cfg, weights = small_darknet(tmp_path)
    same = tmp_path / "both.out"
    result = cli("import", cfg, "--weights", weights, "--state-dict", same, "-o", same, ok=False)
    assert result.exit_code == 1 and "error: " in result.stderr and not same.exists()


def test_weights_without_state_dict_say_they_are_not_kept(tmp_path):
    cfg, weights = small_darknet(tmp_path)
    result = cli("import", cfg, "--weights", weights, "-o", tmp_path / "out.cnn")
    assert "warning: the --weights are read and checked" in result.stderr and "--state-dict" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.cnn", "small.cfg", "small.weights"]


def test_a_folder_named_like_a_file_is_no_file(tmp_path):
    (tmp_path / "model.prototxt").mkdir()
    result = cli("import", tmp_path / "model.prototxt", "-o", tmp_path / "out.cnn", ok=False)
    assert result.exit_code == 1 and "is not a regular file" in result.stderr and "\nhelp: " in result.stderr


@pytest.mark.parametrize("op", ["Add", "Mul", "Concat"])
def test_merge_of_a_tensor_with_itself(op, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.1, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], "conv_0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c", "c"], ["y"], "merge", **({"axis": 1} if op == "Concat" else {}))]
    result = cli("import", onnx_graph_file(tmp_path, nodes, [weight], op), "-o", tmp_path / "out.cnn", ok=False)
    assert onnx is not None and "does not check" not in result.stderr, result.stderr
    assert result.exit_code == 0 or result.stderr.startswith("error: merge: ")


def test_a_long_chain_imports(tmp_path):
    layers = "".join(f'layer {{ name: "c{i}" type: "Convolution" bottom: "{"data" if i == 0 else f"c{i - 1}"}" '
                     f'top: "c{i}" convolution_param {{ num_output: 3 kernel_size: 1 }} }}\n' for i in range(1200))
    path = tmp_path / "chain.prototxt"
    path.write_text(PROTOTXT_INPUT + layers)
    result = cli("import", path, "-o", tmp_path / "out.cnn", ok=False)
    assert "Traceback" not in result.output and not isinstance(result.exception, RecursionError)
    assert result.exit_code == 0, result.stderr


def test_a_network_past_the_limits_of_a_spec_is_an_error_not_a_bug(tmp_path, monkeypatch):
    """Front ends may read larger networks than a spec may be: that is the user's limit, said as such (not
    "a bug of the importer"), with what raises it. The token limit through the CLI; the layer limit (which
    the Caffe front end also checks as it reads) on a layer graph."""
    from graphdsl.importers.command import lifted_text
    from graphdsl.importers.ir import INPUT, ImportFailure, Layer, LayerGraph

    layers = "".join(f'layer {{ name: "c{i}" type: "Convolution" bottom: "{"data" if i == 0 else f"c{i - 1}"}" '
                     f'top: "c{i}" convolution_param {{ num_output: {i + 1} kernel_size: 1 }} }}\n' for i in range(60))
    path = tmp_path / "convs.prototxt"
    path.write_text(PROTOTXT_INPUT + layers)
    monkeypatch.setattr(importlib.import_module("graphdsl.syntax"), "MAX_TOKENS", 100)
    result = cli("import", path, "-o", tmp_path / "out.cnn", ok=False)
    assert result.exit_code == 1 and "the imported spec has more than 100 tokens" in result.stderr, result.stderr
    assert "\nhelp: " in result.stderr and "bug" not in result.stderr and not (tmp_path / "out.cnn").exists()

    monkeypatch.setattr(importlib.import_module("graphdsl.budget"), "MAX_LAYERS", 40)
    chain = [Layer(f"r{i}", "relu", {}, (f"r{i - 1}" if i else INPUT,), shape=(3, 8, 8)) for i in range(60)]
    with pytest.raises(ImportFailure, match="the network has 60 layers, more than a spec may have [(]39[)]") as e:
        lifted_text(LayerGraph("relus", (3, 8, 8), chain, "r59"))
    assert "GRAPHDSL_MAX_LAYERS" in e.value.help
