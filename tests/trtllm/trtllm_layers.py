"""Build MoE layers through the double's own factory (``create_moe``), load synthetic
checkpoints, run them; and a stand-in decode kernel to plug in (the runner's torch fallback:
dequantize, bf16 GEMMs — not the float32 oracle the tests compare with)."""

import importlib
import inspect
from pathlib import Path
from types import SimpleNamespace

import torch

from cutlass_layout import checkpoint_from_bundle
from trtllm_b12x.models import MoEShape, make_moe_weights

FAKES = Path(__file__).parent / "fakes"  # the TensorRT-LLM double
PACKAGES = {"G1": "tensorrt_llm._torch.modules.fused_moe", "G2": "tensorrt_llm._torch.moe.fused_moe"}
# the double's stages (``tensorrt_llm._stage``): "G2" above is G2c; these play the others
STAGE_PACKAGES = {"G2a": PACKAGES["G1"], "G2b": PACKAGES["G2"], "G3": PACKAGES["G2"]}

# H a multiple of 128 (TensorRT-LLM swizzles FC2 scales over H rows); 2*I = 192 pads to 256
GATED = MoEShape("t-gated", 128, 96, 6, 2, "swiglu", "synthetic")
RELU2 = MoEShape("t-relu2", 128, 48, 4, 2, "relu2", "synthetic")


class StandInDecode:
    """A decode kernel computed by the runner's torch fallback (its own dequantization and
    bf16 GEMMs, so a wrong bundle or wrong ids show against the oracle); records the batch
    sizes it served. The adapter's load-time launch check is its first call: ``[1]``."""

    instances: list = []

    def __init__(self, runner):
        self.runner = runner
        self.calls = []
        StandInDecode.instances.append(self)

    def __call__(self, x, ids, w, out, workspace=None):
        self.calls.append(x.shape[0])
        self.runner.fallback(x, ids, w, out)

    def workspace_bytes(self, num_tokens, top_k, dtype):
        return 0


def stand_in_factory(runner):
    return StandInDecode(runner)


def mod(name):
    return importlib.import_module(name)


def package_of(gen):
    return PACKAGES.get(gen) or STAGE_PACKAGES[gen]


def model_config(*, quant="NVFP4", dtype=torch.bfloat16, backend="CUTLASS", ep=(1, 0), tp=(1, 0), attention_dp=False,
                 tp_size=None, eplb=None):
    mc = mod("tensorrt_llm._torch.model_config")
    qa = mod("tensorrt_llm.models.modeling_utils")
    mapping = mc.Mapping(tp_size=tp_size or ep[0] * tp[0], moe_tp_size=tp[0], moe_tp_rank=tp[1], moe_ep_size=ep[0],
                         moe_ep_rank=ep[1], enable_attention_dp=attention_dp)
    quant_config = qa.QuantConfig(qa.QuantAlgo[quant]) if quant else None
    return mc.ModelConfig(moe_backend=backend, quant_config=quant_config, mapping=mapping,
                          pretrained_config=SimpleNamespace(torch_dtype=dtype), moe_load_balancer=eplb)


def make_layer(gen, shape, *, activation=None, dtype=torch.bfloat16, layer_kw=None, **cfg):
    """``create_moe`` of the double: returns the backend module (G2: ``ConfigurableMoE.backend``)
    and the callable layer. ``cfg`` goes to :func:`model_config`, ``layer_kw`` to ``create_moe``."""
    fm = mod(package_of(gen))
    act_type = mod("tensorrt_llm._torch.utils").ActivationType
    activation = activation or ("Swiglu" if shape.gated else "Relu2")
    kw = dict(layer_kw or {})
    if "activation" in inspect.signature(fm.create_moe).parameters:  # G2c: the activation carrier
        kw["activation"] = activation_carrier(activation, **{k: kw.pop(k) for k in list(kw) if k.startswith("swiglu_")})
    else:
        kw["activation_type"] = act_type[activation]
    layer = fm.create_moe(routing_method=fm.RenormalizeMoeRoutingMethod(shape.top_k), num_experts=shape.num_experts,
                          hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size, dtype=dtype,
                          model_config=model_config(dtype=dtype, **cfg), layer_idx=3, **kw)
    return getattr(layer, "backend", layer), layer


def activation_carrier(name, swiglu_alpha=None, swiglu_beta=None, swiglu_limit=None):
    """The G2c carrier for an activation name and the old-style constants (as upstream's own
    test helper maps them: alpha or beta given -> SwigluBias, a limit alone -> Swiglu(clamp))."""
    act = mod("tensorrt_llm._torch.moe.fused_moe.activation")
    kind = mod("tensorrt_llm._torch.utils").ActivationType[name]
    if swiglu_alpha is not None or swiglu_beta is not None:
        return act.SwigluBiasActivation(swiglu_alpha, swiglu_beta, swiglu_limit)
    if name == "Swiglu":
        return act.SwigluActivation(clamp=swiglu_limit)
    return act.SimpleActivation(kind)


def loaded_layer(gen, shape, weights, **kw):
    be, layer = make_layer(gen, shape, **kw)
    layer.load_weights([checkpoint_from_bundle(weights)])
    layer.post_load_weights()
    return be, layer


def weights_for(shape, seed=0):
    """Synthetic weights with one FC1 weight_scale_2 per expert, which is what TensorRT-LLM
    keeps (it takes the larger of w1's and w3's), so the oracle of the bundle is the truth."""
    w = make_moe_weights(shape, seed=seed)
    if w.gated:
        w.w13_global[:, 1] = w.w13_global[:, 0]
    return w


def run(layer, shape, m, seed=0, dtype=torch.bfloat16):
    """``(out, x, ids, scales)`` for ``m`` tokens with seeded router logits."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, shape.hidden_size, generator=gen).to(dtype)
    logits = torch.randn(m, shape.num_experts, generator=gen)
    vals, ids = logits.topk(shape.top_k, dim=-1)
    return layer(x, logits), x, ids.to(torch.int32), torch.softmax(vals, -1)
