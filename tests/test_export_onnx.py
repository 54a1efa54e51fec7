"""`graphdsl export --format onnx`: torch's exporter on the compiled module, checked with onnx.checker,
node names after the spec's modules, and numeric parity with onnxruntime on CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import graphdsl  # noqa: E402
from graphdsl.export import PARITY_TOLERANCE, ExportError, export, export_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
cli = click.Group(commands=[export])  # graphdsl's `main` registers the same command object

SMALL = """network small {
    input 3x16x16
    stem: [conv(8, 3, pad=1, bias=false), bn, relu]
    residual {
        conv1: conv(8, 3, pad=1)  bn1: bn  relu
        conv2: conv(8, 3, pad=1)
    }
    pool: maxpool(2)
    avgpool(global)  flatten
    fc: linear(5)
}
"""


def run_onnx(data: bytes, x):
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def relative(got, want) -> float:
    return float(abs(got - want).max() / abs(want).max())


def test_cli_exports_a_checked_model_with_the_spec_names(tmp_path):
    spec = tmp_path / "small.cnn"
    spec.write_text(SMALL)
    out = tmp_path / "small.onnx"
    result = CliRunner().invoke(cli, ["export", str(spec), "--format", "onnx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "onnx.checker  ok" in result.output and "max relative difference" in result.output
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    names = [n.name for n in model.graph.node]
    # nodes are named after the module they come from; initializers are the state_dict keys
    assert "stem.0/Conv" in names and "conv1/Conv" in names and "fc/Gemm" in names, names
    assert "stem.1/BatchNormalization" in names  # optimize=False: batch norm is not folded away
    # constants folded: one node per layer (the exporter's zero biases and shape arithmetic are gone)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 3 and ops.count("BatchNormalization") == 2 and "Expand" not in ops, ops
    initializers = {i.name for i in model.graph.initializer}
    assert {"stem.0.weight", "conv1.weight", "conv1.bias", "fc.weight", "stem.1.running_mean"} <= initializers


def test_onnxruntime_matches_the_torch_module_with_its_weights():
    net = graphdsl.load(ROOT / "specs" / "cifar" / "resnet20.cnn")
    module = net.to_torch().eval()
    exported = export_onnx(net, module=module, verify=False)
    x = torch.randn(2, *net.input_shape)  # a batch the model was not exported for: static batch 1 refuses it
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(exported.data, x)
    x = torch.randn(1, *net.input_shape)
    (got,) = run_onnx(exported.data, x)
    with torch.no_grad():
        want = module(x).numpy()
    assert relative(got, want) <= PARITY_TOLERANCE


def test_dynamic_batch_runs_at_any_batch(tmp_path):
    net = graphdsl.load(text=SMALL)
    module = net.to_torch().eval()
    exported = export_onnx(net, module=module, dynamic_batch=True)
    assert exported.parity is not None and exported.parity <= PARITY_TOLERANCE
    model = onnx.load_from_string(exported.data)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for batch in (1, 5):
        x = torch.randn(batch, *net.input_shape)
        (got,) = run_onnx(exported.data, x)
        with torch.no_grad():
            assert relative(got, module(x).numpy()) <= PARITY_TOLERANCE


def test_invalid_spec_is_a_located_error_and_nothing_is_written(tmp_path):
    spec = tmp_path / "bad.cnn"
    spec.write_text("network bad {\n    input 3x8x8\n    conv(8, 3, strid=2)\n}\n")
    out = tmp_path / "bad.onnx"
    result = CliRunner().invoke(cli, ["export", str(spec), "--format", "onnx", "-o", str(out)])
    assert result.exit_code == 1
    assert "bad.cnn:3:" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_output_that_is_a_directory_is_refused(tmp_path):
    spec = tmp_path / "small.cnn"
    spec.write_text(SMALL)
    result = CliRunner().invoke(cli, ["export", str(spec), "--format", "onnx", "-o", str(tmp_path)])
    assert result.exit_code == 1 and "not a regular file" in result.output


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch):
    spec = tmp_path / "small.cnn"
    spec.write_text(SMALL)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    result = CliRunner().invoke(cli, ["export", str(spec), "--format", "onnx"])
    assert result.exit_code == 1
    assert "onnxruntime" in result.output and "pip install -e '.[onnx]'" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(ExportError):
        export_onnx(graphdsl.load(text=SMALL))


@pytest.mark.slow
@pytest.mark.parametrize("spec, defines", [
    ("resnet18.cnn", {}),
    ("googlenet.cnn", {"aux_logits": False}),
    ("mobilenet_v2.cnn", {}),
])
def test_zoo_parity_with_onnxruntime(spec, defines):
    net = graphdsl.load(ROOT / "specs" / spec, **defines)
    module = net.to_torch().eval()
    exported = export_onnx(net, module=module, verify=False)
    torch.manual_seed(1)
    x = torch.randn(1, *net.input_shape)
    (got,) = run_onnx(exported.data, x)
    with torch.no_grad():
        want = module(x).numpy()
    assert relative(got, want) <= PARITY_TOLERANCE
