#!/usr/bin/env python3
"""PEFT-layout adapters written outside Hone, with float64 reference logits of base + adapter.

For the tiny llama-hf-f32 fixture model: a LoRA adapter (r=4, alpha=8, q/v/o/gate/down targets) and a DoRA adapter
(all linear, with lora_magnitude_vector), each written as adapter_config.json + adapter_model.safetensors with PEFT's
key names (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...), F32 and BF16-free, plus the logits
of the float64 reference forward pass with the adapter applied (DoRA norm per output row of W + s*B*A).

Run: /usr/bin/python3 tools/reference/make_peft_fixtures.py tests/Hone.Tests/Fixtures
"""
import json, os, sys
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import write_safetensors  # noqa: E402
from make_gradient_fixtures import read_safetensors, forward_loss  # noqa: E402
import make_model_fixtures as mm  # noqa: E402

torch.set_default_dtype(torch.float64)


def logits_with_adapters(cfg, w, tokens, adapters, scale, dora):
    merged = dict(w)
    for name, a in adapters.items():
        W = w[name + ".weight"]
        V = W + scale * a["B"] @ a["A"]
        merged[name + ".weight"] = V * (a["m"] / V.norm(dim=1))[:, None] if dora else V
    return mm.forward(cfg, merged, tokens)


def main(root):
    d = os.path.join(root, "models", "llama-hf-f32")
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["rotary_dims"] = cfg["head_dim"]
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    tokens = list(range(3, 43))
    for kind, targets in [("lora", ["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]), ("dora", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])]:
        g = torch.Generator().manual_seed(5 if kind == "lora" else 6)
        rank, alpha = 4, 8.0
        adapters = {}
        for l in range(cfg["num_hidden_layers"]):
            for m in targets:
                module = ("self_attn." if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp.") + m
                name = f"model.layers.{l}.{module}"
                W = w[name + ".weight"]
                a = {"A": torch.randn(rank, W.shape[1], generator=g) * 0.2, "B": torch.randn(W.shape[0], rank, generator=g) * 0.2}
                if kind == "dora":
                    a["m"] = (W + (alpha / rank) * a["B"] @ a["A"]).norm(dim=1) * (1 + 0.2 * torch.randn(W.shape[0], generator=g))
                adapters[name] = a
        logits = logits_with_adapters(cfg, w, tokens, adapters, alpha / rank, kind == "dora")
        out = os.path.join(root, "adapters", f"llama-hf-f32-{kind}")
        os.makedirs(out, exist_ok=True)
        tensors = []
        for name in sorted(adapters):
            a = adapters[name]
            prefix = "base_model.model." + name
            tensors.append((prefix + ".lora_A.weight", "F32", list(a["A"].shape), a["A"].to(torch.float32).numpy().tobytes()))
            tensors.append((prefix + ".lora_B.weight", "F32", list(a["B"].shape), a["B"].to(torch.float32).numpy().tobytes()))
            if kind == "dora":
                tensors.append((prefix + ".lora_magnitude_vector", "F32", list(a["m"].shape), a["m"].to(torch.float32).numpy().tobytes()))
        write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors)
        config = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "llama-hf-f32", "bias": "none",
                  "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
                  "layers_to_transform": None, "loftq_config": {}, "lora_alpha": alpha, "lora_dropout": 0.05,
                  "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA",
                  "r": rank, "rank_pattern": {}, "revision": None, "target_modules": sorted(targets), "task_type": "CAUSAL_LM",
                  "use_dora": kind == "dora", "use_rslora": False}
        json.dump(config, open(os.path.join(out, "adapter_config.json"), "w"), indent=2)
        json.dump({"tokens": tokens, "logits": [round(float(v), 9) for v in logits.flatten()]}, open(os.path.join(out, "expected.json"), "w"))
        print(out, float(logits.abs().max()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/Hone.Tests/Fixtures")
