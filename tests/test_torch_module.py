"""Generated PyTorch modules are ordinary modules: state_dict keys are the IR node ids, `.to()`,
train/eval, pickling (from the written file too), torch.fx, torch.export, torch.compile; `node_shapes`
agrees with the static shapes; `graphdsl compile --run`. Parity with torchvision: test_torch_parity.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import graphdsl  # noqa: E402
from graphdsl.backends.torch import MODULE_ATTRS, SEQUENTIAL_ATTRS, node_shapes  # noqa: E402
from graphdsl.cli import main  # noqa: E402
from graphdsl.files import write_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = """
block unit(c, stride = 1) {
    conv: conv(c, 3, stride=stride, pad=1, bias=false)
    bn: bn
    relu(inplace=true)
}
network tiny(num_classes = 10) {
    \"\"\"A tiny network for the module tests.\"\"\"
    input 3x16x16
    stem: unit(8)
    layer1: [unit(16, stride=2), residual { unit(16) conv(16, 3, pad=1) bn } relu]
    side = [avgpool(global), flatten, linear(4)]
    pool: avgpool(adaptive=1)
    flatten
    dropout(0.5)
    fc: linear(num_classes)
    output fc, training: side
}
"""


def spec_path(name: str) -> Path:
    path = ROOT / "specs" / name
    if not path.exists():
        pytest.skip(f"specs/{name} is not in the spec library yet")
    return path


@pytest.fixture(scope="module")
def tiny():
    return graphdsl.load(text=TINY)


def test_module_attribute_lists_match_torch():
    def attrs(obj):  # once torch.compile has run, dynamo adds `___needs_generation_tag_patch` to nn.Module
        return {n for n in dir(obj) if not n.startswith("___")}

    assert MODULE_ATTRS >= attrs(torch.nn.Module())
    assert SEQUENTIAL_ATTRS >= attrs(torch.nn.Sequential())


def test_state_dict_keys_are_ir_node_ids(tiny):
    m = tiny.to_torch()
    g = tiny.graph
    stateful = {n for n, d in g.nodes(data=True) if d.get("params") or d.get("buffers")}
    owners = {key.rsplit(".", 1)[0] for key in m.state_dict()}
    assert owners == stateful
    assert sum(p.numel() for p in m.parameters()) == tiny.params
    assert sum(b.numel() for b in m.buffers()) == tiny.buffers


def test_resnet_state_dict_is_torchvisions():
    net = graphdsl.load(spec_path("resnet18.cnn"))
    keys = list(net.to_torch().state_dict())
    assert "layer1.0.conv1.weight" in keys and "layer2.0.downsample.0.weight" in keys
    assert "layer2.0.downsample.1.running_var" in keys and keys[-1] == "fc.bias"


def test_api_short_form_and_source(tiny):
    m = graphdsl.compile(text=TINY, num_classes=3)
    assert isinstance(m, torch.nn.Module) and m.fc.out_features == 3
    assert type(m).__name__ == "Tiny" and type(m).__doc__.startswith("A tiny network")
    assert tiny.source() == tiny.source()


def test_eval_returns_the_main_output_and_training_all(tiny):
    m = tiny.to_torch()
    x = torch.randn(2, 3, 16, 16)
    m.eval()
    out = m(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert torch.equal(out, m(x))  # dropout is off
    m.train()
    main_out, side = m(x)
    assert main_out.shape == (2, 10) and side.shape == (2, 4)
    assert all(mod.training for mod in m.modules())
    m.eval()
    assert not any(mod.training for mod in m.modules())


def test_to_device_and_dtype(tiny):
    m = tiny.to_torch(dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert m.eval()(torch.randn(1, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64
    m = tiny.to_torch(device="cpu", dtype="float32").to(torch.float16)
    assert next(m.parameters()).dtype == torch.float16


def test_pickle_and_deepcopy_in_process(tiny):
    import copy

    m = tiny.to_torch().eval()
    x = torch.randn(1, 3, 16, 16)
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert torch.equal(clone(x), m(x))


def test_pickle_through_the_written_file(tmp_path, tiny):
    """A module built from the written file pickles; another process, with the file importable, loads it."""
    write_atomic(tmp_path / "tinynet.py", tiny.source())
    save = textwrap.dedent(f"""
        import sys, pickle, torch
        sys.path.insert(0, {str(tmp_path)!r})
        from tinynet import Tiny
        torch.manual_seed(0)
        m = Tiny().eval()
        x = torch.randn(1, 3, 16, 16)
        pickle.dump((m, x, m(x)), open({str(tmp_path / 'm.pkl')!r}, "wb"))
    """)
    load = textwrap.dedent(f"""
        import sys, pickle, torch
        sys.path.insert(0, {str(tmp_path)!r})
        m, x, y = pickle.load(open({str(tmp_path / 'm.pkl')!r}, "rb"))
        assert type(m).__module__ == "tinynet", type(m).__module__
        assert torch.equal(m(x), y)
        print("ok")
    """)
    for code in (save, load):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_fx_symbolic_trace(tiny):
    m = tiny.to_torch().eval()
    gm = torch.fx.symbolic_trace(m)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(gm(x), m(x))
    names = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert {"stem.conv", "layer1.0.bn", "fc"} <= names


def test_torch_export(tiny):
    m = tiny.to_torch().eval()
    x = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(m, (x,))
    assert torch.allclose(ep.module()(x), m(x))
    assert "stem.conv.weight" in ep.state_dict


def test_torch_compile(tiny):
    m = tiny.to_torch().eval()
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(m, backend="aot_eager")
    assert torch.allclose(compiled(x), m(x))


@pytest.mark.slow
def test_torch_compile_inductor(tiny):
    m = tiny.to_torch().eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(torch.compile(m)(x), m(x), atol=1e-5)


@pytest.mark.parametrize("spec", [TINY, "cifar/resnet20.cnn", "googlenet.cnn", "examples/inception_naive.cnn"])
def test_node_shapes_match_the_static_shapes(spec):
    net = graphdsl.load(text=spec) if "\n" in spec else graphdsl.load(spec_path(spec))
    m = net.to_torch()
    was = [mod.training for mod in m.modules()]
    shapes = node_shapes(net, m, torch.randn(2, *net.input_shape))
    assert [mod.training for mod in m.modules()] == was
    assert set(shapes) == set(net.graph)
    assert {n: shapes[n] for n in net.graph} == {n: d["shape"] for n, d in net.graph.nodes(data=True)}


def test_node_shapes_with_n_ary_add_and_keyword_names():
    net = graphdsl.load(text="""
    block class(c) { def: conv(c, 1) return: bn relu }
    network n { input 3x8x8  a: conv(4, 1)  b: conv(4, 1)  c: conv(4, 1)  add(a, b, c)  self: class(4) }
    """)
    m = net.to_torch()
    shapes = node_shapes(net, m, torch.randn(1, 3, 8, 8))
    assert shapes == {n: d["shape"] for n, d in net.graph.nodes(data=True)}


def test_cli_run_on_cpu(tmp_path):
    from click.testing import CliRunner

    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    out = tmp_path / "tiny.py"
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(out), "--run"])
    assert result.exit_code == 0, result.output
    assert "ran on cpu, eval mode, batch 1: fc 1x10" in result.output
    assert "ran on cpu, training mode, batch 2: fc 2x10, side 2x4" in result.output
    assert out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cli_run_on_missing_cuda_writes_nothing(tmp_path):
    from click.testing import CliRunner

    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(tmp_path / "t.py"), "--run",
                                       "--device", "cuda"])
    assert result.exit_code == 1 and "CUDA is not available" in result.output
    assert not (tmp_path / "t.py").exists()


@pytest.mark.cuda
@cuda
def test_cuda_matches_cpu(tiny):
    m = tiny.to_torch().eval()
    x = torch.randn(2, 3, 16, 16)
    gpu = tiny.to_torch(device="cuda").eval()
    gpu.load_state_dict(m.state_dict())
    assert torch.allclose(gpu(x.cuda()).cpu(), m(x), atol=1e-4)


@pytest.mark.cuda
@cuda
def test_cli_run_on_cuda(tmp_path):
    from click.testing import CliRunner

    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(tmp_path / "t.py"), "--run",
                                       "--device", "cuda"])
    assert result.exit_code == 0, result.output
    assert "ran on cuda, eval mode, batch 1: fc 1x10" in result.output


def test_inplace_activation_after_an_op_autograd_needs_is_not_inplace():
    net = graphdsl.load(text="network n { input 3x8x8 conv(4, 3, pad=1) sigmoid relu(inplace=true) flatten linear(2) }")
    assert "inplace=True" not in net.source()
    net.to_torch().train()(torch.randn(2, 3, 8, 8)).sum().backward()


def test_a_network_without_layers_compiles():
    module = graphdsl.load(text="network n { input 3x8x8 }").to_torch()
    assert module(torch.ones(1, 3, 8, 8)).shape == (1, 3, 8, 8)
