#!/usr/bin/env python3
"""Write a random-weight Hugging Face model directory (config.json + model.safetensors, F32) for the llama.cpp
compatibility check. Standard library only.

  make_random_model.py OUT --shape tiny --arch llama|qwen2|mixtral|qwen2_moe --tokenizer DIR
                                                                              tiny model; vocab from DIR/tokenizer.json
                                                                              (mixtral: 4 experts, top 2; qwen2_moe: 4
                                                                              experts, top 2, a shared expert)
  make_random_model.py OUT --shape smollm2-135m                               SmolLM2-135M shape, no tokenizer (speed only)
  make_random_model.py OUT --shape kquant --tokenizer DIR [--outlier-channels N]
                                                                              256 wide, 4 layers (k-quants apply); N hidden
                                                                              channels get norm weights of 8 (outlier features)
  make_random_model.py OUT --shape mixtral-small                              hone bench's mixtral-small (512 wide, 8 layers,
                                                                              8 experts, top 2), no tokenizer (speed only)

Weights are Gaussian (tiny: std 0.5, so logits are large and any layout error shows; smollm2: std 0.02 drawn once
into a 2^20 pool and tiled, which is enough for speed runs). Norm weights are 1 + noise (tiny) or 1 (smollm2).
"""
import argparse, array, json, os, random, shutil, struct

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--shape", choices=["tiny", "kquant", "smollm2-135m", "mixtral-small"], default="tiny")
p.add_argument("--outlier-channels", type=int, default=0, help="kquant: this many hidden channels get norm weight 8")
p.add_argument("--arch", choices=["llama", "qwen2", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe"], default="llama")
p.add_argument("--tokenizer", help="directory holding tokenizer.json (copied next to the model)")
p.add_argument("--seed", type=int, default=1, help="seed of the weights (models of one shape with different seeds differ)")
a = p.parse_args()

if a.shape in ("tiny", "kquant"):
    if not a.tokenizer: p.error(f"--shape {a.shape} needs --tokenizer")
    tok = json.load(open(os.path.join(a.tokenizer, "tokenizer.json"), encoding="utf-8"))
    V = max(tok["model"]["vocab"].values()) + 1
    for t in tok.get("added_tokens", []): V = max(V, t["id"] + 1)
    D, F, L, H, KV, theta, tied = 64, 160, 2, 4, 2, 10000.0, a.arch in ("qwen2", "qwen2_moe")
    if a.arch == "olmoe": KV = H  # llama.cpp's olmoe has no grouped-query attention (its k_norm is [n_embd])
    if a.shape == "kquant": D, F, L, H, KV = 256, 768, 4, 4, 4
elif a.shape == "mixtral-small":
    V, D, F, L, H, KV, theta, tied = 32000, 512, 1024, 8, 8, 4, 1000000.0, False
    a.arch = "mixtral"
else:
    V, D, F, L, H, KV, theta, tied = 49152, 576, 1536, 30, 9, 3, 100000.0, True
Dh = D // H
E = 8 if a.shape == "mixtral-small" else 4

shapes = {"model.embed_tokens.weight": (V, D)}
for l in range(L):
    q = f"model.layers.{l}."
    shapes[q + "input_layernorm.weight"] = (D,)
    shapes[q + "self_attn.q_proj.weight"] = (H * Dh, D)
    shapes[q + "self_attn.k_proj.weight"] = (KV * Dh, D)
    shapes[q + "self_attn.v_proj.weight"] = (KV * Dh, D)
    if a.arch in ("qwen2", "qwen2_moe"):
        shapes[q + "self_attn.q_proj.bias"] = (H * Dh,)
        shapes[q + "self_attn.k_proj.bias"] = (KV * Dh,)
        shapes[q + "self_attn.v_proj.bias"] = (KV * Dh,)
    if a.arch == "qwen3_moe":   # QK-norm per head
        shapes[q + "self_attn.q_norm.weight"] = (Dh,)
        shapes[q + "self_attn.k_norm.weight"] = (Dh,)
    if a.arch == "olmoe":       # QK-norm over the whole projection
        shapes[q + "self_attn.q_norm.weight"] = (H * Dh,)
        shapes[q + "self_attn.k_norm.weight"] = (KV * Dh,)
    shapes[q + "self_attn.o_proj.weight"] = (D, H * Dh)
    shapes[q + "post_attention_layernorm.weight"] = (D,)
    if a.arch == "mixtral":
        shapes[q + "block_sparse_moe.gate.weight"] = (E, D)
        for e in range(E):
            shapes[q + f"block_sparse_moe.experts.{e}.w1.weight"] = (F, D)
            shapes[q + f"block_sparse_moe.experts.{e}.w3.weight"] = (F, D)
            shapes[q + f"block_sparse_moe.experts.{e}.w2.weight"] = (D, F)
        continue
    if a.arch in ("qwen3_moe", "olmoe"):
        shapes[q + "mlp.gate.weight"] = (E, D)
        for e in range(E):
            shapes[q + f"mlp.experts.{e}.gate_proj.weight"] = (64, D)
            shapes[q + f"mlp.experts.{e}.up_proj.weight"] = (64, D)
            shapes[q + f"mlp.experts.{e}.down_proj.weight"] = (D, 64)
        continue
    if a.arch == "qwen2_moe":
        shapes[q + "mlp.gate.weight"] = (4, D)
        for e in range(4):
            shapes[q + f"mlp.experts.{e}.gate_proj.weight"] = (64, D)
            shapes[q + f"mlp.experts.{e}.up_proj.weight"] = (64, D)
            shapes[q + f"mlp.experts.{e}.down_proj.weight"] = (D, 64)
        shapes[q + "mlp.shared_expert.gate_proj.weight"] = (96, D)
        shapes[q + "mlp.shared_expert.up_proj.weight"] = (96, D)
        shapes[q + "mlp.shared_expert.down_proj.weight"] = (D, 96)
        shapes[q + "mlp.shared_expert_gate.weight"] = (1, D)
        continue
    shapes[q + "mlp.gate_proj.weight"] = (F, D)
    shapes[q + "mlp.up_proj.weight"] = (F, D)
    shapes[q + "mlp.down_proj.weight"] = (D, F)
shapes["model.norm.weight"] = (D,)
if not tied: shapes["lm_head.weight"] = (V, D)

rng = random.Random(a.seed)
std = 0.5 if a.shape == "tiny" else 0.1 if a.shape == "kquant" else 0.02
outliers = {(37 * k + 5) % D for k in range(a.outlier_channels)}
pool = array.array("f", [rng.gauss(0, std) for _ in range(1 << 20)])
def count(s): return s[0] * (s[1] if len(s) > 1 else 1)

os.makedirs(a.out, exist_ok=True)
header, offset = {}, 0
for name, s in shapes.items():
    header[name] = {"dtype": "F32", "shape": list(s), "data_offsets": [offset, offset + 4 * count(s)]}
    offset += 4 * count(s)
hb = json.dumps(header).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hb)))
    f.write(hb)
    for i, (name, s) in enumerate(shapes.items()):
        n = count(s)
        if name.endswith("norm.weight"):
            f.write(array.array("f", [8.0 if j in outliers and name != "model.norm.weight" else
                                      1.0 + (0.2 * pool[(i * 31 + j) % len(pool)] if a.shape in ("tiny", "kquant") else 0.0) for j in range(n)]).tobytes())
            continue
        start = (i * 7919) % (len(pool) // 2)
        while n > 0:
            m = min(n, len(pool) - start)
            f.write(pool[start:start + m].tobytes())
            n -= m
            start = 0

config = {"architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mixtral": "MixtralForCausalLM",
                            "qwen2_moe": "Qwen2MoeForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM", "olmoe": "OlmoeForCausalLM"}[a.arch]],
          "model_type": a.arch,
          "hidden_size": D, "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
          "num_key_value_heads": KV, "vocab_size": V, "rms_norm_eps": 1e-5, "rope_theta": theta,
          "max_position_embeddings": 2048, "tie_word_embeddings": tied, "hidden_act": "silu", "torch_dtype": "float32"}
if a.arch == "mixtral":
    config.update(num_local_experts=E, num_experts_per_tok=2)
if a.arch == "qwen3_moe":
    config.update(num_experts=E, num_experts_per_tok=2, moe_intermediate_size=64, norm_topk_prob=True, decoder_sparse_step=1,
                  mlp_only_layers=[], head_dim=Dh, attention_bias=False)
if a.arch == "olmoe":
    config.update(num_experts=E, num_experts_per_tok=2, intermediate_size=64, norm_topk_prob=False, clip_qkv=None)
if a.arch == "qwen2_moe":
    config.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=96,
                  norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[])
json.dump(config, open(os.path.join(a.out, "config.json"), "w"), indent=1)
if a.tokenizer:
    for f in os.listdir(a.tokenizer):
        if f.startswith("tokenizer") or f in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            shutil.copy(os.path.join(a.tokenizer, f), a.out)
print(f"{a.out}: {a.arch} {a.shape}, vocab {V}")
