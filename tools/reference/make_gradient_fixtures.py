#!/usr/bin/env python3
"""Float64 PyTorch gradients of the training loss of tiny checkpoints, for full fine-tuning, LoRA and DoRA.

For each case: the model is read from tests/Hone.Tests/Fixtures/models/<variant>/ (written by make_model_fixtures.py),
a batch of B x T tokens with some ignored targets is run through a float64 reference (same architecture as in
make_model_fixtures.py, with LoRA/DoRA on every linear projection of every layer), the loss is the mean NLL over the
non-ignored targets, and autograd gives the gradient of every parameter. DoRA treats the row norm of W + s*B*A as a
constant, as PEFT does. Output: <case>.safetensors (inputs, adapter values, loss and gradients as F32 tensors with
Hugging Face / PEFT-style names) next to the models.

Run:  /usr/bin/python3 tools/reference/make_gradient_fixtures.py tests/Hone.Tests/Fixtures
"""
import json, math, os, struct, sys
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import rms_norm, inv_freq, rope_halves, write_safetensors  # noqa: E402

torch.set_default_dtype(torch.float64)
MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy()).to(torch.float64).reshape(v["shape"])
    return out


def forward_loss(cfg, w, tokens, targets, adapters, method, rank, alpha):
    D, H, Hkv, Dh, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["num_hidden_layers"]
    eps = cfg["rms_norm_eps"]
    B, T = tokens.shape
    scale = alpha / rank
    inv = inv_freq(dict(cfg, rotary_dims=Dh))
    pos = torch.arange(T, dtype=torch.float64)
    mask = torch.full((T, T), float("-inf")).triu(1)

    def linear(x, name):
        y = x @ w[name + ".weight"].T
        if name + ".bias" in w:
            y = y + w[name + ".bias"]
        if adapters is not None and name in adapters:
            a = adapters[name]
            z = y + scale * (x @ a["A"].T) @ a["B"].T
            if method == "dora":
                v = w[name + ".weight"] + scale * a["B"] @ a["A"]
                norm = v.norm(dim=1).detach()
                return z * (a["m"] / norm)
            return z
        return y

    x = w["model.embed_tokens.weight"][tokens]                         # [B, T, D]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").view(B, T, H, Dh)
        k = linear(h, p + "self_attn.k_proj").view(B, T, Hkv, Dh)
        v = linear(h, p + "self_attn.v_proj").view(B, T, Hkv, Dh)
        q = torch.stack([rope_halves(q[b], pos, inv) for b in range(B)])
        k = torch.stack([rope_halves(k[b], pos, inv) for b in range(B)])
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=2); v = v.repeat_interleave(rep, dim=2)
        s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(Dh) + mask
        att = torch.einsum("bhts,bshd->bthd", torch.softmax(s, -1), v).reshape(B, T, H * Dh)
        x = x + linear(att, p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + linear(torch.nn.functional.silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    logits = x @ head.T
    lp = torch.log_softmax(logits, -1)
    keep = targets >= 0
    nll = -lp[keep, targets[keep]]
    return nll.sum() / keep.sum()


def main(root):
    for variant, method in [("llama-hf-f32", "full"), ("qwen2-hf-f32", "full"), ("llama-hf-f32", "lora"), ("qwen2-hf-f32", "dora")]:
        d = os.path.join(root, "models", variant)
        cfg = json.load(open(os.path.join(d, "config.json")))
        w = read_safetensors(os.path.join(d, "model.safetensors"))
        g = torch.Generator().manual_seed(99)
        B, T, rank, alpha = 2, 12, 4, 8.0
        tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
        targets = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
        targets[0, :3] = -1
        targets[1, 7] = -1
        adapters = None
        if method in ("lora", "dora"):
            adapters = {}
            for l in range(cfg["num_hidden_layers"]):
                for m in MODULES:
                    name = f"model.layers.{l}.{m}"
                    W = w[name + ".weight"]
                    a = {"A": torch.randn(rank, W.shape[1], generator=g) * 0.3, "B": torch.randn(W.shape[0], rank, generator=g) * 0.3}
                    if method == "dora":
                        a["m"] = (W + (alpha / rank) * a["B"] @ a["A"]).norm(dim=1) * (1 + 0.1 * torch.randn(W.shape[0], generator=g))
                    adapters[name] = a
        params = []
        if method == "full":
            for t in w.values():
                t.requires_grad_(True); params.append(t)
        else:
            for a in adapters.values():
                for t in a.values():
                    t.requires_grad_(True); params.append(t)
        loss = forward_loss(cfg, w, tokens, targets, adapters, method, rank, alpha)
        loss.backward()
        out = [("input.tokens", "F32", [B, T], tokens.to(torch.float32).numpy().tobytes()),
               ("input.targets", "F32", [B, T], targets.to(torch.float32).numpy().tobytes()),
               ("loss", "F32", [1], np.array([loss.item()], dtype=np.float32).tobytes())]
        def add(name, t):
            out.append((name, "F32", list(t.shape), t.detach().to(torch.float32).contiguous().numpy().tobytes()))
        if method == "full":
            for k, t in w.items():
                add("grad." + k, t.grad)
        else:
            for name, a in adapters.items():
                add(f"value.{name}.lora_A", a["A"]); add(f"value.{name}.lora_B", a["B"])
                add(f"grad.{name}.lora_A", a["A"].grad); add(f"grad.{name}.lora_B", a["B"].grad)
                if method == "dora":
                    add(f"value.{name}.magnitude", a["m"]); add(f"grad.{name}.magnitude", a["m"].grad)
        path = os.path.join(root, "gradients", f"{variant}-{method}.safetensors")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_safetensors(path, out)
        print(path, "loss", loss.item())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/Hone.Tests/Fixtures")
