"""The model's dataflow as a flat list of operations, from torch.fx tracing plus shape propagation.

Both graph builders (rolled and unrolled) walk this list instead of hand-wiring each family:
every operation is classified into the few kinds that matter for a weight graph, and carries its
output shape (from `ShapeProp` on a single dummy input) and how many operations consume it.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

INPUT, CONV, LINEAR, BATCHNORM, ADD, CAT, POOL, PASSTHROUGH, OUTPUT = (
    "input", "conv", "linear", "batchnorm", "add", "cat", "pool", "passthrough", "output")

_POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_PASSTHROUGH_MODULES = (nn.Flatten, nn.Identity, nn.modules.dropout._DropoutNd)
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_PASSTHROUGH_FUNCTIONS = {torch.flatten, torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.elu, F.leaky_relu,
                          torch.sigmoid, torch.tanh, F.dropout, F.max_pool2d, F.avg_pool2d,
                          F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_PASSTHROUGH_METHODS = {"view", "reshape", "flatten", "contiguous", "relu", "sigmoid", "tanh"}


class UnsupportedOperation(ValueError):
    """The traced model holds an operation the weight-graph builders do not know how to map."""


@dataclass(frozen=True)
class TracedOp:
    """One tensor-valued operation of the traced model."""

    name: str                    # the fx node name (unique)
    kind: str                    # one of the kinds above
    inputs: tuple[str, ...]      # names of the tensor operands, in order
    shape: tuple[int, ...]       # output shape for a batch of one
    users: int                   # how many operations consume the output
    target: str = ""             # qualified module name for module calls
    module: nn.Module | None = None


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == "torch.nn.modules.activation"


def _module_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return CONV
    if isinstance(module, nn.Linear):
        return LINEAR
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return BATCHNORM
    if isinstance(module, _POOL_MODULES):
        return POOL
    if isinstance(module, _PASSTHROUGH_MODULES) or _is_activation(module):
        return PASSTHROUGH
    raise UnsupportedOperation(f"module {type(module).__name__} has no rolled-graph mapping")


def _kind(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "placeholder":
        return INPUT
    if node.op == "output":
        return OUTPUT
    if node.op == "call_module":
        return _module_kind(gm.get_submodule(node.target))
    if node.op == "call_function":
        if node.target in _ADD_FUNCTIONS:
            return ADD
        if node.target is torch.cat:
            return CAT
        if node.target in _PASSTHROUGH_FUNCTIONS:
            return PASSTHROUGH
    if node.op == "call_method" and node.target in _PASSTHROUGH_METHODS:
        return PASSTHROUGH
    raise UnsupportedOperation(f"operation {node.op} {node.target!r} ({node.name}) has no rolled-graph mapping")


def _tensor_args(node: fx.Node) -> tuple[str, ...]:
    args = node.args[0] if node.op == "call_function" and node.target is torch.cat else node.args
    return tuple(a.name for a in args if isinstance(a, fx.Node) and "tensor_meta" in a.meta)


def trace_model(model: nn.Module, input_shape: tuple[int, int, int]) -> list[TracedOp]:
    """Trace `model` (in eval mode) on one dummy image of shape (C, H, W); operations in topological order."""
    model = model.eval()
    gm = fx.symbolic_trace(model)
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros((1, *input_shape)))
    ops = []
    for node in gm.graph.nodes:
        if node.op != "output" and not isinstance(node.meta.get("tensor_meta"), fx.passes.shape_prop.TensorMetadata):
            continue  # sizes, attributes: no tensor flows on
        kind = _kind(node, gm)
        if kind == CAT and node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0) not in (1, -3):
            raise UnsupportedOperation(f"{node.name}: torch.cat is supported along the channel dimension only")
        shape = tuple(node.meta["tensor_meta"].shape) if kind != OUTPUT else ()
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        ops.append(TracedOp(node.name, kind, _tensor_args(node), shape, len(node.users),
                            node.target if module is not None else "", module))
    return ops
