"""Rolled and unrolled graph construction, checked edge by edge on hand-computable models."""
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from pipeline_lib.graphs.rolled import RolledGraphTemplate, rolled_graph, rolled_graph_of_snapshot
from pipeline_lib.graphs.tracing import UnsupportedOperation
from pipeline_lib.graphs.unrolled import UnrolledGraphTooLarge, unrolled_graph
from pipeline_lib.models import build_model


def edges(graph) -> dict[tuple[int, int], float]:
    return {(int(s), int(d)): float(w) for s, d, w in zip(graph.src, graph.dst, graph.weight)}


def assert_edges(graph, expected: dict[tuple[int, int], float]) -> None:
    got = edges(graph)
    assert set(got) == set(expected)
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-6)


def bn_scale(bn: nn.BatchNorm2d) -> np.ndarray:
    return (bn.weight.detach().abs() / torch.sqrt(bn.running_var + bn.eps)).double().numpy()


def randomise_batchnorm(*bns: nn.BatchNorm2d) -> None:
    for bn in bns:
        with torch.no_grad():
            bn.weight.uniform_(-2, 2)
            bn.running_var.uniform_(0.5, 3)


class TwoConv(nn.Module):
    """conv(2->3, 3x3) + BN -> conv(3->2, 1x1) -> flatten 2x2x2 -> linear(8->4)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 1)
        return self.fc(torch.flatten(x, 1))


def test_two_conv_net_edges_by_hand():
    torch.manual_seed(0)
    model = TwoConv()
    randomise_batchnorm(model.bn1)
    w1, w2 = model.conv1.weight.detach().double().numpy(), model.conv2.weight.detach().double().numpy()
    wf = model.fc.weight.detach().double().numpy()
    scale = bn_scale(model.bn1)
    graph = rolled_graph(model, (2, 2, 2))
    # nodes: input 0-1, conv1 2-4, conv2 5-6, fc 7-10
    expected = {(i, 2 + o): np.linalg.norm(w1[o, i]) * scale[o] for o in range(3) for i in range(2)}
    expected |= {(2 + i, 5 + o): abs(w2[o, i, 0, 0]) for o in range(2) for i in range(3)}
    expected |= {(5 + c, 7 + o): np.linalg.norm(wf[o, 4 * c:4 * c + 4]) for o in range(4) for c in range(2)}
    assert_edges(graph, expected)
    assert graph.kind.tolist() == ["input"] * 2 + ["conv"] * 5 + ["linear"] * 4
    assert graph.channel.tolist() == [0, 1, 0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert graph.layer.tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3]
    np.testing.assert_allclose(graph.relative_depth, graph.layer / 3)
    assert graph.module[2] == "conv1" and graph.module[-1] == "fc"

    unfolded = rolled_graph(model, (2, 2, 2), fold_batchnorm=False)
    expected |= {(i, 2 + o): np.linalg.norm(w1[o, i]) for o in range(3) for i in range(2)}
    assert_edges(unfolded, expected)


def test_grouped_convolution_joins_channels_within_groups_only():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2, bias=False))
    w = model[0].weight.detach().double().numpy()  # (6, 2, 3, 3)
    expected = {(2 * (o // 3) + i, 4 + o): np.linalg.norm(w[o, i]) for o in range(6) for i in range(2)}
    assert_edges(rolled_graph(model, (4, 5, 5)), expected)


class Residual(nn.Module):
    """stem -> identity block (two convs) -> projection block (two convs, 1x1 projection)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 1, bias=False)
        self.a1, self.a2 = nn.Conv2d(2, 2, 3, padding=1, bias=False), nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(2)
        self.b1, self.b2 = nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(3)
        self.proj, self.bn_p = nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(self.bn_a(self.a2(torch.relu(self.a1(h)))) + h)
        return torch.relu(self.bn_b(self.b2(torch.relu(self.b1(h)))) + self.bn_p(self.proj(h)))


def test_residual_identity_and_projection_shortcuts():
    torch.manual_seed(2)
    model = Residual()
    randomise_batchnorm(model.bn_a, model.bn_b, model.bn_p)
    w = {name: getattr(model, name).weight.detach().double().numpy() for name in ("stem", "a1", "a2", "b1", "b2", "proj")}
    s_a, s_b, s_p = bn_scale(model.bn_a), bn_scale(model.bn_b), bn_scale(model.bn_p)
    graph = rolled_graph(model, (1, 4, 4))
    # nodes: input 0, stem 1-2, a1 3-4, a2 5-6 (the identity block's output), b1 7-9, b2 10-12 (proj merged in)
    assert graph.n_nodes == 13
    expected = {(0, 1 + o): abs(w["stem"][o, 0, 0, 0]) for o in range(2)}
    expected |= {(1 + i, 3 + o): np.linalg.norm(w["a1"][o, i]) for o in range(2) for i in range(2)}
    expected |= {(3 + i, 5 + o): np.linalg.norm(w["a2"][o, i]) * s_a[o] for o in range(2) for i in range(2)}
    expected |= {(1 + c, 5 + c): 1.0 for c in range(2)}  # identity shortcut, not scaled by bn_a
    expected |= {(5 + i, 7 + o): np.linalg.norm(w["b1"][o, i]) for o in range(3) for i in range(2)}
    expected |= {(7 + i, 10 + o): np.linalg.norm(w["b2"][o, i]) * s_b[o] for o in range(3) for i in range(3)}
    expected |= {(5 + i, 10 + o): abs(w["proj"][o, i, 0, 0]) * s_p[o] for o in range(3) for i in range(2)}
    assert_edges(graph, expected)
    assert graph.layer.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 5, 5, 5]
    assert set(graph.kind) == {"input", "conv"}


def test_shortcut_around_a_single_conv_sums_parallel_edges():
    torch.manual_seed(3)

    class OneConvResidual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.conv = nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(2, 2, 3, padding=1, bias=False)

        def forward(self, x):
            h = self.stem(x)
            return self.conv(h) + h

    model = OneConvResidual()
    w = model.conv.weight.detach().double().numpy()
    got = edges(rolled_graph(model, (1, 3, 3)))
    for o in range(2):
        for i in range(2):
            assert got[(1 + i, 3 + o)] == pytest.approx(np.linalg.norm(w[o, i]) + (1.0 if i == o else 0.0))


def test_adaptive_pool_and_flatten_give_plain_linear_weights():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    w = model[3].weight.detach().double().numpy()
    got = edges(rolled_graph(model, (1, 6, 6)))
    assert {k: v for k, v in got.items() if k[0] >= 1} == pytest.approx(
        {(1 + c, 4 + o): abs(w[o, c]) for o in range(2) for c in range(3)})


@pytest.mark.parametrize("architecture, depth, nodes, edges_", [
    ("lenet", 1, 1 + 6 + 16 + 120 + 84 + 10, 6 + 6 * 16 + 16 * 120 + 120 * 84 + 84 * 10),
    ("vgg", 1, 1 + 32 + 64 + 128 + 128 + 256 + 10, 32 + 32 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 2560),
    ("alexnet", 1, 1 + 48 + 128 + 192 + 192 + 128 + 256 + 256 + 10,
     48 + 48 * 128 + 128 * 192 + 192 * 192 + 192 * 128 + 128 * 256 + 256 * 256 + 2560),
    # resnet: stem 16, blocks 16/32/64 (two convs each), projections merged; skip edges 16 + 16*32 + 32*64
    ("resnet", 1, 1 + 16 + 2 * 16 + 2 * 32 + 2 * 64 + 10,
     16 + 2 * 256 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 640 + 16 + 16 * 32 + 32 * 64),
    ("resnet", 2, 1 + 16 + 4 * 16 + 4 * 32 + 4 * 64 + 10, None),
])
def test_every_family_builds_from_a_snapshot_with_the_expected_size(architecture, depth, nodes, edges_):
    model = build_model(architecture, in_channels=1, image_size=8, num_classes=10, depth=depth)
    graph = rolled_graph_of_snapshot(model.state_dict(), architecture, 1.0, depth, "digits")
    assert graph.n_nodes == nodes
    if edges_ is not None:
        assert graph.n_edges == edges_
    assert (graph.src < graph.dst).all() and (graph.weight > 0).all()
    assert graph.relative_depth.min() == 0 and graph.relative_depth.max() == 1
    assert (graph.layer[graph.src] < graph.layer[graph.dst]).all()


def test_width_scales_the_rolled_graph_and_snapshots_of_another_width_are_refused():
    model = build_model("lenet", in_channels=1, image_size=8, num_classes=10, width=2.0)
    graph = rolled_graph_of_snapshot(model.state_dict(), "lenet", 2.0, 1, "digits")
    assert graph.n_nodes == 1 + 12 + 32 + 240 + 168 + 10
    with pytest.raises((KeyError, RuntimeError, ValueError)):
        rolled_graph_of_snapshot(model.state_dict(), "lenet", 1.0, 1, "digits")


def test_torchvision_resnet18():
    model = torchvision.models.resnet18()
    template = RolledGraphTemplate.from_model(model, (3, 32, 32))
    graph = template.build(model.state_dict())
    chain = 3 * 64 + 4 * 64 * 64 + (64 * 128 + 3 * 128 ** 2) + (128 * 256 + 3 * 256 ** 2) \
        + (256 * 512 + 3 * 512 ** 2) + 512 * 1000
    skips = 2 * 64 + (64 * 128 + 128) + (128 * 256 + 256) + (256 * 512 + 512)
    assert (graph.n_nodes, graph.n_edges) == (4907, chain + skips)
    assert graph.layer.max() == 18  # conv1, 16 block convolutions, fc


def test_non_finite_weights_and_unknown_operations_are_refused():
    model = build_model("lenet", in_channels=1, image_size=8, num_classes=10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        rolled_graph_of_snapshot(state, "lenet", 1.0, 1, "digits")
    with pytest.raises(UnsupportedOperation, match="LayerNorm"):
        rolled_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.LayerNorm([2, 2, 2])), (1, 4, 4))


def test_graph_tool_view_carries_weights_and_attributes():
    model = build_model("lenet", in_channels=1, image_size=8, num_classes=10, width=0.5)
    graph = rolled_graph(model, (1, 8, 8))
    g = graph.to_graph_tool()
    assert g.is_directed() and (g.num_vertices(), g.num_edges()) == (graph.n_nodes, graph.n_edges)
    got = {(int(s), int(d)): w for s, d, w in g.get_edges([g.ep["weight"]])}
    assert got == pytest.approx(edges(graph))
    assert list(g.vp["layer"].a) == graph.layer.tolist() and g.vp["kind"][0] == "input"


def test_unrolled_lenet5_matches_the_authors_size():
    """The paper's size: the classic LeNet-5 on 3x32x32 unrolls to about 11k nodes and 658k edges."""
    lenet5 = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                           nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                           nn.ReLU(), nn.Linear(84, 10))
    graph = unrolled_graph(lenet5, (3, 32, 32))
    pixels = 3 * 32 * 32 + 6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84 + 10
    assert (graph.n_nodes, graph.n_edges) == (pixels, 658_024)
    with pytest.raises(UnrolledGraphTooLarge, match="max_edges=100,000"):
        unrolled_graph(lenet5, (3, 32, 32), max_edges=100_000)


def test_unrolled_edges_by_hand():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 1, 2, padding=1, bias=False), nn.AvgPool2d(3), nn.Flatten(), nn.Linear(1, 1))
    w = model[0].weight.detach().double().numpy()[0, 0]
    graph = unrolled_graph(model, (1, 2, 2))
    # input pixels 0-3 (2x2), conv output 4-12 (3x3 with padding 1), pool output 13, linear 14
    got = edges(graph)
    # conv output (r, c) reads input (r - 1 + kr, c - 1 + kc)
    for r in range(3):
        for c in range(3):
            for kr in range(2):
                for kc in range(2):
                    ir, ic = r - 1 + kr, c - 1 + kc
                    if 0 <= ir < 2 and 0 <= ic < 2:
                        assert got.pop((2 * ir + ic, 4 + 3 * r + c)) == pytest.approx(abs(w[kr, kc]))
    for p in range(9):
        assert got.pop((4 + p, 13)) == pytest.approx(1 / 9)
    assert got == {(13, 14): pytest.approx(abs(model[3].weight.item()))}
    assert graph.position[4:13].tolist() == list(range(9))
