#!/usr/bin/env python3
"""Float64 PyTorch gradients of the training loss of tiny checkpoints, for full fine-tuning, LoRA and DoRA, and of
mixtures of experts (Mixtral, Qwen2-MoE) with their router losses.

For each case: the model is read from tests/Hone.Tests/Fixtures/models/<variant>/ (written by make_model_fixtures.py),
a batch of B x T tokens with some ignored targets is run through a float64 reference (same architecture as in
make_model_fixtures.py, with LoRA/DoRA on every linear projection of every layer), the loss is the mean NLL over the
non-ignored targets, and autograd gives the gradient of every parameter. DoRA treats the row norm of W + s*B*A as a
constant, as PEFT does. Output: <case>.safetensors (inputs, adapter values, loss and gradients as F32 tensors with
Hugging Face / PEFT-style names) next to the models.

Mixture-of-experts cases (<variant>-moe): the sparse MLPs as make_model_fixtures.py defines them (HF's
MixtralSparseMoeBlock / Qwen2MoeSparseMoeBlock), and the loss is
    mean NLL + aux_coef * load_balancing_loss_func(all sparse layers' router logits, top_k, attention_mask)
             + z_coef * mean over the unmasked rows of logsumexp(router logits)^2
with HF's load-balancing formula written out (masked means over layers x tokens; the top-k choice carries no
gradient). The second sequence ends in padding (attention_mask 0, targets -1), which the router losses leave out.
The case also stores the router gradients of the NLL alone (ce_grad.*), so a test can see the router losses act.

Run:  /usr/bin/python3 tools/reference/make_gradient_fixtures.py tests/Hone.Tests/Fixtures [--moe-only]
"""
import json, math, os, struct, sys
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import rms_norm, inv_freq, rope_halves, write_safetensors, is_sparse, moe, qk_norm  # noqa: E402

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


def load_balancing_loss(router_logits, E, k, mask):
    """Hugging Face's load_balancing_loss_func with an attention mask: router_logits [L*B*T, E], mask [B, T]."""
    L = len(router_logits)
    logits = torch.cat(router_logits, 0)
    probs = torch.softmax(logits, -1)
    _, selected = torch.topk(probs, k, -1)
    expert_mask = torch.nn.functional.one_hot(selected, E).to(torch.float64)             # [L*B*T, k, E]
    B, T = mask.shape
    m = mask[None, :, :].expand(L, B, T).reshape(-1).to(torch.float64)                   # [L*B*T]
    tokens_per_expert = (expert_mask * m[:, None, None]).sum(0) / m.sum()                # [k, E]
    router_prob_per_expert = (probs * m[:, None]).sum(0) / m.sum()                       # [E]
    return (tokens_per_expert * router_prob_per_expert[None, :]).sum() * E


def z_loss(router_logits, mask):
    logits = torch.cat(router_logits, 0)
    m = mask.reshape(-1).repeat(len(router_logits)).to(torch.float64)
    return ((torch.logsumexp(logits, -1) ** 2) * m).sum() / m.sum()


def forward_loss(cfg, w, tokens, targets, adapters, method, rank, alpha, router_logits=None, gaps=None):
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
        q = linear(h, p + "self_attn.q_proj")
        k = linear(h, p + "self_attn.k_proj")
        if qk_norm(cfg) == "whole":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps); k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q.view(B, T, H, Dh); k = k.view(B, T, Hkv, Dh)
        if qk_norm(cfg) == "head":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps); k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        v = linear(h, p + "self_attn.v_proj").view(B, T, Hkv, Dh)
        q = torch.stack([rope_halves(q[b], pos, inv) for b in range(B)])
        k = torch.stack([rope_halves(k[b], pos, inv) for b in range(B)])
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=2); v = v.repeat_interleave(rep, dim=2)
        s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(Dh) + mask
        att = torch.einsum("bhts,bshd->bthd", torch.softmax(s, -1), v).reshape(B, T, H * Dh)
        x = x + linear(att, p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if is_sparse(cfg, l):
            pre = p + ("block_sparse_moe." if cfg["model_type"] == "mixtral" else "mlp.")
            flat = h.reshape(B * T, D)
            router_logits.append(flat @ w[pre + "gate.weight"].T)
            x = x + moe(cfg, w, p, flat, gaps).reshape(B, T, D)
            continue
        x = x + linear(torch.nn.functional.silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    logits = x @ head.T
    lp = torch.log_softmax(logits, -1)
    keep = targets >= 0
    nll = -lp[keep, targets[keep]]
    return nll.sum() / keep.sum()


def moe_case(root, variant, aux_coef, z_coef):
    d = os.path.join(root, "models", variant)
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    E = cfg.get("num_local_experts") or cfg["num_experts"]
    k = cfg["num_experts_per_tok"]
    g = torch.Generator().manual_seed(77)
    B, T, length = 2, 12, 9                      # the second sequence: 9 tokens, then padding
    tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    targets[0, :3] = -1
    targets[1, length - 1:] = -1
    tokens[1, length:] = 0
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, length:] = 0
    for t in w.values():
        t.requires_grad_(True)

    def losses():
        router_logits, gaps = [], []
        nll = forward_loss(cfg, w, tokens, targets, None, "full", 1, 1.0, router_logits, gaps)
        return nll, load_balancing_loss(router_logits, E, k, mask), z_loss(router_logits, mask), min(gaps)

    nll, balance, z, gap = losses()
    loss = nll + aux_coef * balance + z_coef * z
    loss.backward()
    out = [("input.tokens", "F32", [B, T], tokens.to(torch.float32).numpy().tobytes()),
           ("input.targets", "F32", [B, T], targets.to(torch.float32).numpy().tobytes()),
           ("input.lengths", "F32", [B], np.array([T, length], dtype=np.float32).tobytes()),
           ("coef.aux", "F32", [1], np.array([aux_coef], dtype=np.float32).tobytes()),
           ("coef.z", "F32", [1], np.array([z_coef], dtype=np.float32).tobytes()),
           ("loss", "F32", [1], np.array([loss.item()], dtype=np.float32).tobytes()),
           ("loss.nll", "F32", [1], np.array([nll.item()], dtype=np.float32).tobytes()),
           ("loss.balance", "F32", [1], np.array([balance.item()], dtype=np.float32).tobytes()),
           ("loss.z", "F32", [1], np.array([z.item()], dtype=np.float32).tobytes()),
           ("routing_gap", "F32", [1], np.array([gap], dtype=np.float32).tobytes())]
    for name, t in w.items():
        out.append(("grad." + name, "F32", list(t.shape), t.grad.to(torch.float32).contiguous().numpy().tobytes()))
    routers = [name for name in w if name.endswith(".gate.weight")]
    for t in w.values():
        t.grad = None
    nll, _, _, _ = losses()
    nll.backward()
    for name in routers:
        out.append(("ce_grad." + name, "F32", list(w[name].shape), w[name].grad.to(torch.float32).contiguous().numpy().tobytes()))
    path = os.path.join(root, "gradients", f"{variant}-moe.safetensors")
    write_safetensors(path, out)
    print(path, "loss", loss.item(), "nll", nll.item(), "balance", balance.item(), "z", z.item(), "smallest routing gap", gap)


def main(root):
    moe_case(root, "mixtral-hf-f32", 0.1, 0.01)
    moe_case(root, "qwen2moe-hf-f32", 0.1, 0.01)
    moe_case(root, "qwen2moe-norm-hf-f32", 0.1, 0.01)
    moe_case(root, "qwen3moe-hf-f32", 0.1, 0.01)
    moe_case(root, "olmoe-hf-f32", 0.1, 0.01)
    if "--moe-only" in sys.argv:
        return
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
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0] if args else "tests/Hone.Tests/Fixtures")
