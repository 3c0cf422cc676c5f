#!/usr/bin/env python3
"""Tiny random Llama-family checkpoints and their float64 PyTorch reference logits.

Mixture-of-experts variants (mixtral, qwen2_moe) follow the published definitions of Hugging Face's
MixtralSparseMoeBlock and Qwen2MoeSparseMoeBlock: router logits -> softmax over all experts -> top-k -> weights
(renormalized over the k for Mixtral and with norm_topk_prob) -> sum of the chosen SwiGLU experts' outputs times their
weights; Qwen2-MoE adds a shared SwiGLU expert times sigmoid(shared_expert_gate(h)), and keeps the layers in
mlp_only_layers or off the decoder_sparse_step dense. Each MoE variant also records the smallest gap between a token's
k-th and (k+1)-th routing probability, so a reader can see that float32 rounding cannot change a choice.

Writes, for each variant, a model (Hugging Face directory: config.json + model.safetensors, or a single .gguf) and
expected.json with the token sequence and the logits of a float64 forward pass written here from the architecture
definition (embedding -> L x [RMSNorm -> GQA attention with RoPE -> residual -> RMSNorm -> SwiGLU -> residual]
-> RMSNorm -> head). The safetensors and GGUF files are written by hand (struct + json) so nothing here depends on
the code under test. GGUF llama variants store q/k permuted for llama.cpp's adjacent-pair rope, exactly as
llama.cpp's convert_hf_to_gguf.py does; qwen2 GGUFs are not permuted (neox rope).

Run:  /usr/bin/python3 tools/reference/make_model_fixtures.py tests/Hone.Tests/Fixtures/models [--only NAME,NAME]
Needs: python3-torch (Debian), numpy.
"""
import json, math, os, struct, sys
import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def inv_freq(cfg):
    rot = cfg["rotary_dims"]
    inv = [1.0 / (cfg["rope_theta"] ** (2.0 * i / rot)) for i in range(rot // 2)]
    sc = cfg.get("rope_scaling")
    if sc and sc["rope_type"] == "llama3":
        lo = sc["original_max_position_embeddings"] / sc["low_freq_factor"]
        hi = sc["original_max_position_embeddings"] / sc["high_freq_factor"]
        out = []
        for f in inv:
            wl = 2 * math.pi / f
            if wl > lo:
                f = f / sc["factor"]
            elif wl >= hi:
                s = (sc["original_max_position_embeddings"] / wl - sc["low_freq_factor"]) / (sc["high_freq_factor"] - sc["low_freq_factor"])
                f = (1 - s) * f / sc["factor"] + s * f
            out.append(f)
        inv = out
    return torch.tensor(inv)


def rope_halves(x, pos, inv):  # x [T, heads, Dh]; rotate_half over the first rot dims
    rot = inv.shape[0] * 2
    ang = pos[:, None] * inv[None, :]                      # [T, rot/2]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    xr, xp = x[..., :rot], x[..., rot:]
    x1, x2 = xr[..., : rot // 2], xr[..., rot // 2:]
    rotated = torch.cat([-x2, x1], -1)
    return torch.cat([xr * cos + rotated * sin, xp], -1)


def is_sparse(cfg, l):
    if cfg["model_type"] in ("mixtral", "olmoe"):
        return True
    if cfg["model_type"] in ("qwen2_moe", "qwen3_moe"):
        return l not in cfg["mlp_only_layers"] and (l + 1) % cfg["decoder_sparse_step"] == 0
    return False


def qk_norm(cfg):
    """Qwen3 / Qwen3-MoE normalize each head of q and k (weight [Dh]); OLMoE the whole projection (weights [H*Dh], [Hkv*Dh])."""
    return {"qwen3": "head", "qwen3_moe": "head", "olmoe": "whole"}.get(cfg["model_type"])


def swiglu(h, gate, up, down):
    return (torch.nn.functional.silu(h @ gate.T) * (h @ up.T)) @ down.T


def moe(cfg, w, p, h, gaps):
    """One sparse MLP over h [T, D]; appends each token's routing gap (k-th minus (k+1)-th probability) to gaps."""
    mixtral = cfg["model_type"] == "mixtral"
    pre = p + ("block_sparse_moe." if mixtral else "mlp.")
    E = cfg["num_local_experts"] if mixtral else cfg["num_experts"]
    k = cfg["num_experts_per_tok"]
    shared = cfg["model_type"] == "qwen2_moe"
    probs = torch.softmax(h @ w[pre + "gate.weight"].T, -1)           # [T, E]
    top, idx = torch.topk(probs, k, -1)                                 # [T, k]
    ordered = torch.sort(probs, -1, descending=True).values
    gaps.extend((ordered[:, k - 1] - ordered[:, k]).tolist())
    if mixtral or cfg["norm_topk_prob"]:
        top = top / top.sum(-1, keepdim=True)
    out = torch.zeros_like(h)
    for e in range(E):
        if mixtral:
            y = swiglu(h, w[f"{pre}experts.{e}.w1.weight"], w[f"{pre}experts.{e}.w3.weight"], w[f"{pre}experts.{e}.w2.weight"])
        else:
            y = swiglu(h, w[f"{pre}experts.{e}.gate_proj.weight"], w[f"{pre}experts.{e}.up_proj.weight"], w[f"{pre}experts.{e}.down_proj.weight"])
        weight = (top * (idx == e)).sum(-1, keepdim=True)               # [T, 1]: 0 where e was not chosen
        out = out + weight * y
    if shared:
        y = swiglu(h, w[pre + "shared_expert.gate_proj.weight"], w[pre + "shared_expert.up_proj.weight"], w[pre + "shared_expert.down_proj.weight"])
        out = out + torch.sigmoid(h @ w[pre + "shared_expert_gate.weight"].T) * y
    return out


def forward(cfg, w, tokens, gaps=None):
    """Reference forward in the Hugging Face layout (rotate_half rope)."""
    gaps = [] if gaps is None else gaps
    D, H, Hkv, Dh, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["num_hidden_layers"]
    eps = cfg["rms_norm_eps"]
    T = len(tokens)
    x = w["model.embed_tokens.weight"][tokens]
    pos = torch.arange(T, dtype=torch.float64)
    inv = inv_freq(cfg)
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = h @ w[p + "self_attn.q_proj.weight"].T
        k = h @ w[p + "self_attn.k_proj.weight"].T
        v = h @ w[p + "self_attn.v_proj.weight"].T
        if p + "self_attn.q_proj.bias" in w:
            q = q + w[p + "self_attn.q_proj.bias"]; k = k + w[p + "self_attn.k_proj.bias"]; v = v + w[p + "self_attn.v_proj.bias"]
        if qk_norm(cfg) == "whole":   # OLMoE: before the split into heads
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps); k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q.view(T, H, Dh); k = k.view(T, Hkv, Dh)
        if qk_norm(cfg) == "head":    # Qwen3: each head
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps); k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = rope_halves(q, pos, inv)
        k = rope_halves(k, pos, inv)
        v = v.view(T, Hkv, Dh)
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=1); v = v.repeat_interleave(rep, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(Dh) + mask
        a = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, H * Dh)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if is_sparse(cfg, l):
            x = x + moe(cfg, w, p, h, gaps)
            continue
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def make_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    Qd, Kd = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    def r(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std
    w = {"model.embed_tokens.weight": r(V, D, std=1.0), "model.norm.weight": 1 + r(D, std=0.1)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = r(V, D)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = 1 + r(D, std=0.1)
        w[p + "self_attn.q_proj.weight"] = r(Qd, D)
        w[p + "self_attn.k_proj.weight"] = r(Kd, D)
        w[p + "self_attn.v_proj.weight"] = r(Kd, D)
        if cfg["model_type"] in ("qwen2", "qwen2_moe") or cfg.get("attention_bias"):
            w[p + "self_attn.q_proj.bias"] = r(Qd); w[p + "self_attn.k_proj.bias"] = r(Kd); w[p + "self_attn.v_proj.bias"] = r(Kd)
        w[p + "self_attn.o_proj.weight"] = r(D, Qd)
        if qk_norm(cfg) == "head":
            w[p + "self_attn.q_norm.weight"] = 1 + r(cfg["head_dim"], std=0.1); w[p + "self_attn.k_norm.weight"] = 1 + r(cfg["head_dim"], std=0.1)
        elif qk_norm(cfg) == "whole":
            w[p + "self_attn.q_norm.weight"] = 1 + r(Qd, std=0.1); w[p + "self_attn.k_norm.weight"] = 1 + r(Kd, std=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + r(D, std=0.1)
        if is_sparse(cfg, l):
            mixtral = cfg["model_type"] == "mixtral"
            pre = p + ("block_sparse_moe." if mixtral else "mlp.")
            E = cfg["num_local_experts"] if mixtral else cfg["num_experts"]
            Fe = cfg["intermediate_size"] if cfg["model_type"] in ("mixtral", "olmoe") else cfg["moe_intermediate_size"]
            w[pre + "gate.weight"] = r(E, D, std=0.5)
            names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
            for e in range(E):
                w[f"{pre}experts.{e}.{names[0]}.weight"] = r(Fe, D)
                w[f"{pre}experts.{e}.{names[1]}.weight"] = r(Fe, D)
                w[f"{pre}experts.{e}.{names[2]}.weight"] = r(D, Fe)
            if cfg["model_type"] == "qwen2_moe":
                Fs = cfg["shared_expert_intermediate_size"]
                w[pre + "shared_expert.gate_proj.weight"] = r(Fs, D)
                w[pre + "shared_expert.up_proj.weight"] = r(Fs, D)
                w[pre + "shared_expert.down_proj.weight"] = r(D, Fs)
                w[pre + "shared_expert_gate.weight"] = r(1, D)
            continue
        w[p + "mlp.gate_proj.weight"] = r(F, D)
        w[p + "mlp.up_proj.weight"] = r(F, D)
        w[p + "mlp.down_proj.weight"] = r(D, F)
    return w


def to_bf16_bits(t):
    """Round float64 -> float32 -> bfloat16 (nearest even), returning uint16 bits and the value as float64."""
    f = t.to(torch.float32).contiguous().numpy().view(np.uint32).astype(np.uint64)
    rounded = ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype(np.uint16)
    back = torch.from_numpy((rounded.astype(np.uint32) << 16).view(np.float32).copy()).to(torch.float64)
    return rounded, back.reshape(t.shape)


def tensor_bytes(t, dtype):
    if dtype == "F32":
        return t.to(torch.float32).contiguous().numpy().tobytes(), t.to(torch.float32).to(torch.float64)
    bits, back = to_bf16_bits(t)
    return bits.tobytes(), back


def write_safetensors(path, tensors):  # tensors: list of (name, dtype, shape, bytes)
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb))); f.write(hb)
        for _, _, _, data in tensors:
            f.write(data)


HF_TO_GGUF = [
    ("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight"),
]
LAYER = [("input_layernorm", "attn_norm"), ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
         ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"),
         ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
         ("block_sparse_moe.gate", "ffn_gate_inp"), ("mlp.gate", "ffn_gate_inp"), ("mlp.shared_expert.gate_proj", "ffn_gate_shexp"),
         ("mlp.shared_expert.up_proj", "ffn_up_shexp"), ("mlp.shared_expert.down_proj", "ffn_down_shexp"),
         ("mlp.shared_expert_gate", "ffn_gate_inp_shexp")]
# llama.cpp stacks each layer's experts in one tensor [E, rows, cols].
EXPERTS = [("w1", "ffn_gate_exps"), ("w3", "ffn_up_exps"), ("w2", "ffn_down_exps"),
           ("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps")]


def gguf_name(hf):
    for a, b in HF_TO_GGUF:
        if hf == a:
            return b
    parts = hf.split(".")
    layer = parts[2]
    rest = ".".join(parts[3:])
    for a, b in LAYER:
        if rest.startswith(a + "."):
            return f"blk.{layer}.{b}.{rest[len(a) + 1:]}"
    raise KeyError(hf)


def permute(w, n_head):  # convert_hf_to_gguf.py's permutation (rotate_half -> adjacent pairs), rows grouped per head
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, metadata, tensors):  # metadata: list of (key, type, value); tensors: (name, ggml_type, shape_rowmajor, bytes)
    out = bytearray(b"GGUF" + struct.pack("<I", 3) + struct.pack("<q", len(tensors)) + struct.pack("<q", len(metadata)))
    for key, kind, value in metadata:
        out += gguf_string(key)
        if kind == "str":
            out += struct.pack("<I", 8) + gguf_string(value)
        elif kind == "u32":
            out += struct.pack("<I", 4) + struct.pack("<I", value)
        elif kind == "f32":
            out += struct.pack("<I", 6) + struct.pack("<f", value)
    offset = 0
    offsets = []
    for name, ggml_type, shape, data in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape))
        for d in reversed(shape):
            out += struct.pack("<q", d)
        out += struct.pack("<I", ggml_type) + struct.pack("<q", offset)
        offsets.append(offset)
        offset += (len(data) + 31) // 32 * 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    for (name, _, _, data), off in zip(tensors, offsets):
        out += data
        out += b"\0" * ((32 - len(data) % 32) % 32)
    with open(path, "wb") as f:
        f.write(out)


VARIANTS = [
    # name, config overrides, storage dtype, format
    ("llama-hf-f32", dict(model_type="llama"), "F32", "hf"),
    ("llama-hf-bf16", dict(model_type="llama"), "BF16", "hf"),
    ("llama-gguf-f32", dict(model_type="llama"), "F32", "gguf"),
    ("llama-gguf-bf16", dict(model_type="llama"), "BF16", "gguf"),
    ("qwen2-hf-f32", dict(model_type="qwen2", tie_word_embeddings=True), "F32", "hf"),
    ("qwen2-gguf-f32", dict(model_type="qwen2", tie_word_embeddings=True), "F32", "gguf"),
    ("llama3-scaled-hf-f32", dict(model_type="llama", head_dim=12, num_attention_heads=6, num_key_value_heads=2, rope_theta=500000.0,
                                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                    original_max_position_embeddings=64)), "F32", "hf"),
    ("mixtral-hf-f32", dict(model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, intermediate_size=24,
                            router_aux_loss_coef=0.02), "F32", "hf"),
    ("mixtral-hf-bf16", dict(model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, intermediate_size=24,
                             router_aux_loss_coef=0.02), "BF16", "hf"),
    ("qwen2moe-hf-f32", dict(model_type="qwen2_moe", num_hidden_layers=3, num_experts=6, num_experts_per_tok=3, moe_intermediate_size=16,
                             shared_expert_intermediate_size=40, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
                             tie_word_embeddings=True, router_aux_loss_coef=0.001), "F32", "hf"),
    ("mixtral-gguf-f32", dict(model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, intermediate_size=24,
                              router_aux_loss_coef=0.02), "F32", "gguf"),
    ("qwen2moe-gguf-f32", dict(model_type="qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                               shared_expert_intermediate_size=24, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
                               tie_word_embeddings=True), "F32", "gguf"),
    # Qwen3 (dense): per-head QK-norm, head_dim apart from hidden/heads, a tied head.
    ("qwen3-hf-f32", dict(model_type="qwen3", head_dim=12, attention_bias=False, tie_word_embeddings=True), "F32", "hf"),
    ("qwen3-gguf-f32", dict(model_type="qwen3", head_dim=12, attention_bias=False, tie_word_embeddings=True), "F32", "gguf"),
    # Qwen3-MoE: per-head QK-norm, head_dim apart from hidden/heads, norm_topk_prob, no shared expert, a dense layer.
    ("qwen3moe-hf-f32", dict(model_type="qwen3_moe", num_hidden_layers=3, num_experts=6, num_experts_per_tok=2, moe_intermediate_size=16,
                             norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1], head_dim=12, router_aux_loss_coef=0.001,
                             attention_bias=False), "F32", "hf"),
    ("qwen3moe-gguf-f32", dict(model_type="qwen3_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                               norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], head_dim=12, attention_bias=False), "F32", "gguf"),
    # OLMoE: QK-norm over the whole projection, experts of intermediate_size, top-k weights not renormalized; as the
    # released model (and llama.cpp's olmoe) without grouped-query attention.
    ("olmoe-hf-f32", dict(model_type="olmoe", num_experts=8, num_experts_per_tok=2, intermediate_size=16, norm_topk_prob=False,
                          num_key_value_heads=4, router_aux_loss_coef=0.01, clip_qkv=None), "F32", "hf"),
    ("olmoe-gguf-f32", dict(model_type="olmoe", num_experts=8, num_experts_per_tok=2, intermediate_size=16, norm_topk_prob=False,
                            num_key_value_heads=4), "F32", "gguf"),
    ("qwen2moe-norm-hf-f32", dict(model_type="qwen2_moe", num_hidden_layers=4, num_experts=5, num_experts_per_tok=2, moe_intermediate_size=16,
                                  shared_expert_intermediate_size=24, norm_topk_prob=True, decoder_sparse_step=2, mlp_only_layers=[],
                                  router_aux_loss_coef=0.001), "F32", "hf"),
]
ONLY = None  # set by --only NAME[,NAME]: rewrite just those variants


def main(out_dir):
    for i, (name, over, dtype, fmt) in enumerate(VARIANTS):
        if ONLY and name not in ONLY:
            continue
        cfg = dict(model_type="llama", vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5, rope_theta=10000.0,
                   max_position_embeddings=128, tie_word_embeddings=False, hidden_act="silu")
        cfg.update(over)
        cfg["rotary_dims"] = cfg["head_dim"]
        # Variants of one family share weights and tokens, so HF and GGUF layouts can be compared directly.
        family = name.split("-")[0]
        seed = {"llama": 1000, "qwen2": 2000, "llama3": 3000, "mixtral": 4000, "qwen2moe": 5000 + len(name), "qwen3moe": 6000, "olmoe": 7000,
                "qwen3": 8000}[family]
        w = make_weights(cfg, seed=seed)
        stored = {}
        blobs = {}
        for k, t in w.items():
            data, back = tensor_bytes(t, dtype if t.dim() == 2 else "F32")
            stored[k] = back
            blobs[k] = (dtype if t.dim() == 2 else "F32", data)
        tokens = [int(x) for x in torch.randint(0, cfg["vocab_size"], (40,), generator=torch.Generator().manual_seed(seed + 7))]
        gaps = []
        logits = forward(cfg, stored, tokens, gaps)
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        if fmt == "hf":
            hf_cfg = {k: v for k, v in cfg.items() if k != "rotary_dims"}
            hf_cfg["architectures"] = [{"qwen2": "Qwen2ForCausalLM", "mixtral": "MixtralForCausalLM",
                                        "qwen2_moe": "Qwen2MoeForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM", "qwen3": "Qwen3ForCausalLM",
                                        "olmoe": "OlmoeForCausalLM"}.get(cfg["model_type"], "LlamaForCausalLM")]
            hf_cfg["torch_dtype"] = "bfloat16" if dtype == "BF16" else "float32"
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(hf_cfg, f, indent=2)
            write_safetensors(os.path.join(d, "model.safetensors"), [(k, blobs[k][0], list(w[k].shape), blobs[k][1]) for k in sorted(w)])
        else:
            arch = {"qwen2": "qwen2", "qwen2_moe": "qwen2moe", "qwen3": "qwen3", "qwen3_moe": "qwen3moe", "olmoe": "olmoe"}.get(cfg["model_type"], "llama")
            meta = [("general.architecture", "str", arch), ("general.name", "str", name),
                    (f"{arch}.context_length", "u32", cfg["max_position_embeddings"]), (f"{arch}.embedding_length", "u32", cfg["hidden_size"]),
                    (f"{arch}.block_count", "u32", cfg["num_hidden_layers"]), (f"{arch}.feed_forward_length", "u32", cfg["intermediate_size"]),
                    (f"{arch}.attention.head_count", "u32", cfg["num_attention_heads"]), (f"{arch}.attention.head_count_kv", "u32", cfg["num_key_value_heads"]),
                    (f"{arch}.attention.layer_norm_rms_epsilon", "f32", cfg["rms_norm_eps"]), (f"{arch}.rope.freq_base", "f32", cfg["rope_theta"]),
                    (f"{arch}.rope.dimension_count", "u32", cfg["rotary_dims"])]
            if cfg["model_type"] in ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe"):
                mixtral = cfg["model_type"] == "mixtral"
                meta += [(f"{arch}.expert_count", "u32", cfg["num_local_experts"] if mixtral else cfg["num_experts"]),
                         (f"{arch}.expert_used_count", "u32", cfg["num_experts_per_tok"])]
                if cfg["model_type"] in ("qwen2_moe", "qwen3_moe"):
                    meta += [(f"{arch}.expert_feed_forward_length", "u32", cfg["moe_intermediate_size"])]
                if cfg["model_type"] == "qwen2_moe":
                    meta += [(f"{arch}.expert_shared_feed_forward_length", "u32", cfg["shared_expert_intermediate_size"])]
            if cfg["head_dim"] != cfg["hidden_size"] // cfg["num_attention_heads"]:
                meta += [(f"{arch}.attention.key_length", "u32", cfg["head_dim"]), (f"{arch}.attention.value_length", "u32", cfg["head_dim"])]
            tensors = []
            stacks = {}
            for k in sorted(w):
                if ".experts." in k:  # model.layers.L.<block>.experts.E.<name>.weight
                    parts = k.split(".")
                    at = parts.index("experts")
                    target = f"blk.{parts[2]}.{dict(EXPERTS)[parts[at + 2]]}.weight"
                    stacks.setdefault(target, []).append((int(parts[at + 1]), w[k]))
                    continue
                t = w[k]
                kind, _ = blobs[k]
                if arch == "llama" and (".q_proj." in k or ".k_proj." in k):
                    heads = cfg["num_attention_heads"] if ".q_proj." in k else cfg["num_key_value_heads"]
                    t = permute(t, heads)
                if k.endswith("shared_expert_gate.weight"):
                    t = t.reshape(-1)  # llama.cpp's ffn_gate_inp_shexp is a vector
                data, _ = tensor_bytes(t, kind)
                tensors.append((gguf_name(k), 0 if kind == "F32" else 30, list(t.shape), data))
            for target, experts in sorted(stacks.items()):
                t = torch.stack([m for _, m in sorted(experts, key=lambda x: x[0])])
                data, _ = tensor_bytes(t, dtype)
                tensors.append((target, 0 if dtype == "F32" else 30, list(t.shape), data))
            write_gguf(os.path.join(d, "model.gguf"), meta, tensors)
        expected = {"tokens": tokens, "vocab_size": cfg["vocab_size"], "logits": [round(float(v), 9) for v in logits.flatten()],
                    "note": "float64 PyTorch reference from tools/reference/make_model_fixtures.py"}
        if gaps:
            expected["min_routing_gap"] = round(min(gaps), 9)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(expected, f)
        print(name, "max |logit|", float(logits.abs().max()), "min routing gap", min(gaps) if gaps else None)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--only" in args:
        at = args.index("--only")
        ONLY = set(args[at + 1].split(","))
        del args[at:at + 2]
    main(args[0] if args else "tests/Hone.Tests/Fixtures/models")
