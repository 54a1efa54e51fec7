"""Training and inference memory (graphdsl.memory) against what PyTorch really keeps.

The static "saved for backward" bytes are compared with the storages `saved_tensors_hooks` sees in
one training forward of the compiled module (each storage once, parameters and buffers left out);
parameters, gradients and optimizer state with a real optimizer after one step. A representative set
of specs runs by default; every shipped spec under `-m slow`.
"""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import graphdsl
from graphdsl import memory
from graphdsl.memory import largest_batch, memory_report, parse_size
from graphdsl.ops import Op, Saved, numel

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DEFAULT = ["alexnet", "vgg11", "resnet18", "googlenet", "mobilenet_v2", "densenet121", "shufflenet_v2_x0_5",
           "squeezenet1_0", "efficientnet_b0", "convnext_tiny", "regnet_x_400mf", "cifar/resnet20",
           "alexnet_original"]
ALL = sorted(str(p.relative_to(SPECS))[:-4] for p in SPECS.rglob("*.cnn") if "lib" not in p.parts)
BATCH = 2


def torch_saved_bytes(module, input_shape, batch: int = BATCH, autocast=None) -> int:
    """Bytes of the distinct storages autograd saves in one training forward (not parameters, buffers)."""
    import torch

    module.train()
    exclude = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude and storage.nbytes():
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    torch.manual_seed(0)
    x = torch.randn(batch, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            if autocast is None:
                module(x)
            else:
                with torch.autocast("cpu", dtype=autocast):
                    module(x)
    return sum(seen.values())


def check_saved(name: str) -> tuple[int, int]:
    net = graphdsl.load(SPECS / f"{name}.cnn")
    batch = BATCH if memory_report(net, BATCH, device="cpu").saved < 1e9 else 1  # EfficientNet-B7 keeps 7.7 GB at 2
    static = memory_report(net, batch, device="cpu").saved
    real = torch_saved_bytes(net.to_torch(), net.input_shape, batch)
    assert abs(static - real) <= 0.02 * real, f"{name}: static {static:,} B, torch {real:,} B"
    return static, real


@pytest.mark.parametrize("name", DEFAULT)
def test_saved_for_backward_matches_torch(name):
    pytest.importorskip("torch")
    check_saved(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in DEFAULT])
def test_saved_for_backward_matches_torch_every_spec(name):
    """One process per spec: run in one process, the big ones (RegNetY-128GF, EfficientNet-B7) add up
    past the memory of a 24 GB machine, each alone stays under 4 GB."""
    pytest.importorskip("torch")
    code = "import sys; sys.path.insert(0, sys.argv[1]); from test_memory import check_saved; check_saved(sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), name], check=True, cwd=ROOT)


# each op's rule, in and out of place, on tiny tensors: `conv(4, 1)` first so that the op's input needs a gradient
SNIPPETS = [
    "relu", "relu(inplace=true)", "relu6", "relu6(inplace=true)", "leaky_relu", "leaky_relu(inplace=true)",
    "elu", "elu(inplace=true)", "gelu", "silu", "silu(inplace=true)", "sigmoid", "tanh", "hardswish",
    "hardswish(inplace=true)", "hardsigmoid", "hardsigmoid(inplace=true)", "softmax", "bn", "lrn(3)", "lrn(5)",
    "layer_norm", "permute([0, 2, 3, 1]) layer_norm linear(3)", "scale(0.5)", "maxpool(2)",
    "maxpool(3, stride=1, pad=1)", "maxpool(global)", "maxpool(adaptive=4)", "avgpool(2)", "avgpool(global)",
    "avgpool(adaptive=1)", "avgpool(adaptive=4)", "dropout", "dropout(0)", "dropout(1.0)", "stochastic_depth(0.5)",
    'stochastic_depth(0.5, mode="batch")', "stochastic_depth(0.0)", "upsample(scale=2)",
    'upsample(scale=2, mode="bilinear")', "pad_channels(8)", "subsample(2)", "channel_shuffle(2)",
    "channels(0, 2) conv(2, 1)", "flatten bn", "flatten layer_norm", "flatten linear(3, bias=false)",
    "channel_affine(scale=[1, 2, 3, 4], shift=[0, 0, 0, 0])", "identity", "flatten softmax",
    "residual { conv(4, 1) relu(inplace=true) } relu(inplace=true)",
    "concat { conv(2, 1)  maxpool(3, stride=1, pad=1) } conv(4, 1)",
    "mul { identity  [avgpool(global), conv(4, 1), sigmoid] }",
]


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_each_op_rule_matches_torch(snippet):
    pytest.importorskip("torch")
    image_out = "flatten" not in snippet and "permute" not in snippet
    for after in ("", " conv(4, 1)" if image_out else ""):  # and with the output read by a conv
        net = graphdsl.load(text=f"network n {{ input 4x8x8  conv(4, 1) {snippet}{after} }}")
        assert memory_report(net, BATCH, device="cpu").saved == torch_saved_bytes(net.to_torch(), net.input_shape)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_autocast_saves_half_precision_copies(name):
    """bf16 autocast on the CPU: the casts of the inputs of conv and linear, their bfloat16 outputs and
    weight copies. (The CPU's autocast lists leave layer_norm and softmax out of float32, unlike CUDA's:
    the nets here have neither.)"""
    torch = pytest.importorskip("torch")
    net = graphdsl.load(SPECS / f"{name}.cnn")
    r = memory_report(net, BATCH, dtype="bf16-amp", device="cpu")
    assert r.weight_copies > 0 and r.parameters == 4 * net.params
    assert r.saved + r.weight_copies == torch_saved_bytes(net.to_torch(), net.input_shape, autocast=torch.bfloat16)


OPTIMIZERS = {
    "sgd": lambda torch, p: torch.optim.SGD(p, lr=0.1),
    "sgd-momentum": lambda torch, p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "adam": lambda torch, p: torch.optim.Adam(p),
    "adamw": lambda torch, p: torch.optim.AdamW(p),
}


EVERY_PARAMETER = """
network every_parameter {
    input 3x16x16
    conv(8, 3, pad=1)  bn  relu
    residual { conv(8, 3, pad=1, groups=2, bias=false)  permute([0, 2, 3, 1])  layer_norm  linear(16)  gelu
               linear(8)  permute([0, 3, 1, 2])  scale(1e-6) }
    avgpool(global)  flatten  bn  linear(10)
}
"""


@pytest.mark.parametrize("name, optimizer", [("every_parameter", o) for o in OPTIMIZERS] + [("cifar/resnet20", "adam")])
def test_parameters_gradients_and_state_equal_a_real_step(name, optimizer):
    torch = pytest.importorskip("torch")
    net = graphdsl.load(text=EVERY_PARAMETER) if name == "every_parameter" else graphdsl.load(SPECS / f"{name}.cnn")
    module = net.to_torch().train()
    opt = OPTIMIZERS[optimizer](torch, module.parameters())
    out = module(torch.randn(BATCH, *net.input_shape))
    (out[0] if isinstance(out, tuple) else out).sum().backward()
    opt.step()

    def nbytes(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    r = memory_report(net, BATCH, optimizer=optimizer)
    assert r.parameters == nbytes(module.parameters())
    assert r.gradients == nbytes(p.grad for p in module.parameters())
    assert r.optimizer_state == nbytes(t for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    assert r.buffers == nbytes(module.buffers())


def test_bf16_halves_everything_but_the_integers():
    net = graphdsl.load(SPECS / "resnet18.cnn")
    full, half = (memory_report(net, 8, optimizer="adam", dtype=d) for d in ("fp32", "bf16"))
    assert half.parameters * 2 == full.parameters and half.optimizer_state < full.optimizer_state
    assert half.saved < full.saved < 2 * half.saved  # max-pool indices stay int64, BN statistics float32
    amp = memory_report(net, 8, optimizer="adam", dtype="fp16-amp")
    assert amp.parameters == full.parameters and amp.optimizer_state == full.optimizer_state
    weights = sum(numel(shape) for key, shape in graphdsl.passes.state_dict(net.graph).items()
                  if key.endswith(".weight") and net.graph.nodes[key[:-7]]["op"] in ("conv", "linear"))
    assert amp.saved < full.saved and amp.weight_copies == 2 * weights


@pytest.mark.parametrize("name", ALL)
def test_inference_peak_lies_between_the_largest_activation_and_the_sum(name):
    net = graphdsl.load(SPECS / f"{name}.cnn")
    r = memory_report(net, 4, train=False)
    outputs = [numel(d["shape"]) * 4 * 4 for _, d in net.graph.nodes(data=True)]
    assert max(outputs) <= r.activation_peak <= sum(outputs)
    assert r.peak == r.parameters + r.buffers + r.activation_peak
    train = memory_report(net, 4, optimizer="adam")
    assert train.peak > r.peak and train.saved >= train.saved_per_sample * 4


def test_memory_is_affine_in_the_batch_and_largest_batch_is_exact():
    net = graphdsl.load(SPECS / "resnet50.cnn")
    reports = {n: memory_report(net, n, optimizer="adam") for n in (1, 2, 3)}
    assert reports[3].saved - reports[2].saved == reports[2].saved - reports[1].saved
    for budget in ("3GiB", "8GB", "11.5G", 24 * 2**30):
        k = largest_batch(net, budget, optimizer="adam")
        b = parse_size(budget)
        assert k >= 1
        assert memory_report(net, k, optimizer="adam").peak <= b < memory_report(net, k + 1, optimizer="adam").peak
    assert largest_batch(net, "100MB", optimizer="adam") == 0  # the weights and Adam's state alone are larger
    fit = memory_report(net, 32, optimizer="adam", budget="24GiB")
    assert fit.fits and fit.largest_batch == largest_batch(net, "24GiB", optimizer="adam")
    assert "fits at batch ≤" in fit.format()
    k = largest_batch(net, "2GiB", train=False)
    assert memory_report(net, k, train=False).peak <= 2 * 2**30 < memory_report(net, k + 1, train=False).peak


@pytest.mark.parametrize("text, expected", [
    ("3GB", 3 * 10**9), ("3GiB", 3 * 2**30), ("3 gib", 3 * 2**30), ("1.5G", 3 * 2**29), ("512MB", 512 * 10**6),
    ("512MiB", 512 * 2**20), ("512M", 512 * 2**20), ("64KiB", 65536), ("2TB", 2 * 10**12), ("1000", 1000),
    ("1000B", 1000), (".5GiB", 2**29), (4096, 4096),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "3 GX", "-1GB", "3GB2", "1e9", "three GB", -5])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_bad_arguments_say_what_is_allowed():
    net = graphdsl.load(SPECS / "cifar" / "resnet20.cnn")
    for kwargs, word in [({"optimizer": "lamb"}, "adamw"), ({"dtype": "fp8"}, "fp16-amp"), ({"batch": 0}, "positive"),
                         ({"device": "tpu"}, "cuda")]:
        with pytest.raises(ValueError, match=word):
            memory_report(net, **{"batch": 1, **kwargs})


def test_in_place_relu_shares_its_input():
    text = "network n {{ input 3x16x16  conv(8, 3)  relu{}  maxpool(2) }}"
    inplace, copy = (graphdsl.load(text=text.format(a)) for a in ("(inplace=true)", ""))
    a, b = memory_report(inplace, 4), memory_report(copy, 4)
    assert a.saved == b.saved  # relu keeps its output either way; maxpool keeps the same tensor
    assert a.rows[1].saved == ["output"] and a.rows[2].saved == ["input (shared)", "indices int64"]
    ia, ib = memory_report(inplace, 4, train=False), memory_report(copy, 4, train=False)
    assert ia.activation_peak < ib.activation_peak  # in inference the copy costs a second 8x14x14


def test_a_plugin_op_without_a_rule_keeps_its_inputs():
    class Twice(Op):
        name = "twice_for_memory_test"
        family = "activation"

    op = Twice()
    assert op.saved_for_backward({}, [(4, 8, 8)], (4, 8, 8)) == [Saved.input(0)]

    class Declared(Op):
        name = "declared_for_memory_test"

        def saved_for_backward(self, a, ins, out, grad=None):
            return [Saved("mask", "new", out, "bool")]

    assert Declared().saved_for_backward({}, [(4,)], (4,))[0].dtype == "bool"


def test_report_text_and_json():
    net = graphdsl.load(SPECS / "resnet50.cnn")
    r = memory_report(net, 32, optimizer="adam", budget="24GiB")
    text = r.format()
    assert text.startswith("resnet50: memory at batch 32, training, Adam")
    for word in ("Parameters", "Gradients", "Optimizer state", "Saved activations", "Peak", "Fits"):
        assert re.search(rf"^{word}\s", text, re.M), word
    md = r.format("markdown", layers=False)
    assert md.startswith("**resnet50") and "| Peak |" in md and "layer1.0.conv1" not in md
    d = r.to_dict()
    assert d["peak"] == r.peak and d["largest_batch"] == r.largest_batch and d["rows"][0]["name"] == "conv1"
    assert r.to_json().startswith("{")
    with pytest.raises(ValueError):
        r.format("csv")


def test_resnet152_summary_train_is_fast():
    start = time.perf_counter()
    net = graphdsl.load(SPECS / "resnet152.cnn")
    memory_report(net, 32, optimizer="adam", budget="24GiB").format()
    elapsed = time.perf_counter() - start
    assert elapsed < 1.5, f"{elapsed:.2f} s (the target is 0.5 s on an idle machine)"


def test_the_static_path_does_not_import_torch():
    code = ("import sys, graphdsl, graphdsl.memory as m; net = graphdsl.load(sys.argv[1]); "
            "m.memory_report(net, 8, optimizer='adamw', dtype='fp16-amp').format(); "
            "m.memory_report(net, 8, train=False).format(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code, str(SPECS / "googlenet.cnn")], check=True, cwd=ROOT)


def test_module_doctest():
    assert doctest.testmod(memory).failed == 0


def test_docs_examples_run_as_shown():
    """docs/memory.md's `pycon` blocks are doctests: the figures pasted there are what the code gives."""
    text = (ROOT / "docs" / "memory.md").read_text()
    blocks = re.findall(r"```pycon\n(.*?)```", text, re.S)
    assert blocks
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    globs = {"graphdsl": graphdsl, "ROOT": ROOT}
    for i, block in enumerate(blocks):
        runner.run(parser.get_doctest(block, globs, f"memory.md[{i}]", "docs/memory.md", 0))
    assert runner.summarize(verbose=False).failed == 0


# ---- the command line ----------------------------------------------------------------------------------

def _cli(*args: str):
    from click.testing import CliRunner

    from graphdsl.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_summary_reports_training_memory_and_the_largest_batch():
    result = _cli("summary", str(SPECS / "resnet50.cnn"), "--batch", "32", "--train", "--optimizer", "adam",
                  "--fits", "3GB")
    assert result.exit_code == 0, result.output
    report = memory_report(graphdsl.load(SPECS / "resnet50.cnn"), 32, optimizer="adam", budget="3GB")
    assert report.format("table", layers=False).strip() in result.stdout
    assert f"fits at batch ≤ {report.largest_batch}" in result.stdout


def test_cli_summary_json_carries_memory_and_bad_sizes_are_usage_errors():
    data = json.loads(_cli("summary", str(SPECS / "resnet18.cnn"), "--batch", "4", "--format", "json").stdout)
    assert data["memory"]["batch"] == 4
    assert _cli("summary", str(SPECS / "resnet18.cnn"), "--fits", "3 potatoes").exit_code == 2


def test_network_memory_is_the_report():
    net = graphdsl.load(SPECS / "resnet18.cnn")
    assert net.memory(8, optimizer="sgd-momentum").peak == memory_report(net, 8, optimizer="sgd-momentum").peak
