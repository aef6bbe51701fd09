"""The decode call as a custom op: one node under torch.compile(fullgraph=True); the CPU
implementation is the runner's fallback, and the compiled module equals eager."""

import pytest
import torch

from helpers import SMALL_GATED, small_weights
from trtllm_b12x import ops
from trtllm_b12x.models import make_hidden_states, make_routing
from trtllm_b12x.moe import MoERunner
from trtllm_b12x.reference import moe_reference, relative_error


class _Layer(torch.nn.Module):
    def __init__(self, runner):
        super().__init__()
        self.runner = runner

    def forward(self, x, ids, w):
        out = torch.empty(x.shape[0], self.runner.weights.hidden_size, dtype=x.dtype, device=x.device)
        ops.moe_decode(x, ids, w, out, self.runner)
        return out * 2 + 1  # work around the op, so the graph is not just the op


def test_fullgraph_compile_traces_the_op_as_one_node_and_equals_eager():
    weights = small_weights(SMALL_GATED)
    runner = MoERunner(weights, SMALL_GATED.default_activation())
    ops.register(runner)
    layer = _Layer(runner)
    seen = []

    def backend(gm, example_inputs):
        seen.append([n.target for n in gm.graph.nodes if n.op == "call_function"])
        return gm

    compiled = torch.compile(layer, fullgraph=True, backend=backend)
    x = make_hidden_states(5, SMALL_GATED, seed=1)
    ids, w = make_routing(5, SMALL_GATED.num_experts, SMALL_GATED.top_k, seed=1)
    got = compiled(x, ids, w)
    assert torch.equal(got, layer(x, ids, w))
    (targets,) = seen
    op = torch.ops.trtllm_b12x.moe_decode
    assert sum(t in (op, op.default) for t in targets) == 1, targets
    ref = moe_reference(x, ids, w, weights, SMALL_GATED.default_activation())
    assert relative_error(((got.float() - 1) / 2), ref) < 2e-2


def test_aot_eager_functionalizes_the_mutation():
    weights = small_weights(SMALL_GATED)
    runner = MoERunner(weights, SMALL_GATED.default_activation())
    ops.register(runner)
    compiled = torch.compile(_Layer(runner), fullgraph=True, backend="aot_eager")
    x = make_hidden_states(3, SMALL_GATED, seed=2)
    ids, w = make_routing(3, SMALL_GATED.num_experts, SMALL_GATED.top_k, seed=2)
    assert torch.equal(compiled(x, ids, w), _Layer(runner)(x, ids, w))


def test_the_op_names_an_unregistered_handle():
    ops.register(MoERunner(small_weights(SMALL_GATED), SMALL_GATED.default_activation()))
    x = make_hidden_states(1, SMALL_GATED)
    ids, w = make_routing(1, SMALL_GATED.num_experts, SMALL_GATED.top_k)
    with pytest.raises(RuntimeError, match="no runner is registered under handle 999999"):
        torch.ops.trtllm_b12x.moe_decode(x, ids, w, torch.empty(1, SMALL_GATED.hidden_size, dtype=x.dtype), 999999)
