"""Property: any network built from residual blocks (with and without projection shortcuts), Fire-style
concats, squeeze-excitation gates, ShuffleNet units (chunk, channel shuffle) and plain conv stacks
imports to a spec that keeps every module name
(its state_dict loads with strict=True), computes the same outputs, and writes each kind of module
once as a block."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import graphdsl  # noqa: E402
from graphdsl.importers.command import import_model  # noqa: E402


class Residual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class Fire(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, max(cout // 4, 1), 1, stride)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(max(cout // 4, 1), cout // 2, 1)
        self.expand3x3 = nn.Conv2d(max(cout // 4, 1), cout - cout // 2, 3, padding=1)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class Gate(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1)
        self.fc1 = nn.Conv2d(cout, max(cout // 2, 1), 1)
        self.fc2 = nn.Conv2d(max(cout // 2, 1), cout, 1)
        self.scale = nn.Sigmoid()

    def forward(self, x):
        x = F.relu(self.conv(x))
        g = self.scale(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return g * x


class Shuffle(nn.Module):
    """ShuffleNetV2's unit: split the channels in halves (or two branches where the shape changes),
    concat, channel shuffle by view/transpose/view."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        half = cout // 2
        self.split = stride == 1 and cin == cout
        if not self.split:
            self.branch1 = nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                                         nn.BatchNorm2d(cin), nn.Conv2d(cin, half, 1, bias=False), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(half if self.split else cin, half, 1), nn.ReLU(),
                                     nn.Conv2d(half, half, 3, stride, 1, groups=half))

    def forward(self, x):
        if self.split:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        n, c, h, w = out.size()
        out = out.view(n, 2, c // 2, h, w)
        return torch.transpose(out, 1, 2).contiguous().view(n, c, h, w)


class Plain(nn.Sequential):
    def __init__(self, cin, cout, stride):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())


KINDS = {"residual": Residual, "fire": Fire, "gate": Gate, "plain": Plain, "shuffle": Shuffle}


class Net(nn.Module):
    def __init__(self, stages, classes):
        super().__init__()
        c = 4
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        for i, (kind, width, n, stride) in enumerate(stages):
            blocks = []
            for j in range(n):
                blocks.append(KINDS[kind](c, width, stride if j == 0 else 1))
                c = width
            setattr(self, f"stage{i + 1}", nn.Sequential(*blocks))
        self.n = len(stages)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.n):
            x = getattr(self, f"stage{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


stage = st.tuples(st.sampled_from(sorted(KINDS)), st.sampled_from([4, 6, 8]), st.integers(1, 3),
                  st.sampled_from([1, 2]))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stages=st.lists(stage, min_size=1, max_size=3), classes=st.integers(2, 5), seed=st.integers(0, 2**16))
@example(stages=[("shuffle", 8, 2, 2), ("shuffle", 6, 2, 1)], classes=3, seed=1)  # both kinds of unit
@example(stages=[("fire", 6, 1, 1), ("residual", 4, 2, 1)], classes=2, seed=0)  # `shortcut if in.channels != 4`
def test_imported_network_keeps_names_and_outputs(stages, classes, seed):
    torch.manual_seed(seed)
    ref = Net(stages, classes).eval()
    for m in ref.modules():  # batch-norm statistics away from the identity, so that they matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    text = import_model(ref, "net", (3, 12, 12))
    net = graphdsl.load(text=text)
    assert net.params == sum(p.numel() for p in ref.parameters())
    ours = net.to_torch().eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert float((got - want).abs().max() / want.abs().max().clamp_min(1e-12)) <= 1e-5
    # lifted: a block per kind of module (and variant), never one per module
    kinds = {kind for kind, _, _, _ in stages}
    blocks = text.count("\nblock ") + text.startswith("block ")
    modules = sum(n for _, _, n, _ in stages)
    assert blocks <= 2 * len(kinds) and (blocks < modules or modules <= 2 * len(kinds)), text
