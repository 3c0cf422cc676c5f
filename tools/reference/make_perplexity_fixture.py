#!/usr/bin/env python3
"""llama-perplexity's protocol on stories260K, computed independently in float64 numpy.

Reads the real GGUF (shared/data/models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf) with a small GGUF
parser written here, tokenizes the text with llama.cpp's SentencePiece algorithm (score-ordered bigram merges, byte
fallback, leading space) written here, runs a llama2.c-style forward pass (adjacent-pair RoPE, as the GGUF layout
requires) in float64, and applies llama-perplexity's chunking: tokens = [BOS] + tokenize(text); n_chunk =
len(tokens) // ctx; each chunk's first token replaced by BOS; positions ctx/2 .. ctx-2 each predict the next token.
Writes the token ids and the expected numbers to tests/Hone.Tests/Fixtures/perplexity/stories260K-llamacpp.json.

Run: /usr/bin/python3 tools/reference/make_perplexity_fixture.py ../shared/data tests/Hone.Tests/Fixtures/perplexity
"""
import heapq, json, math, os, struct, sys
import numpy as np


def read_gguf(path):
    data = open(path, "rb").read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos); pos += struct.calcsize("<" + fmt); return v[0]
    def string():
        n = take("Q"); nonlocal pos
        s = data[pos:pos + n].decode(); pos += n; return s
    def value(t):
        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 10: "Q", 11: "q", 12: "d"}
        if t in scalar: return take(scalar[t])
        if t == 7: return take("B") != 0
        if t == 8: return string()
        if t == 9:
            et = take("I"); n = take("Q"); return [value(et) for _ in range(n)]
        raise ValueError(t)
    assert data[:4] == b"GGUF"; pos = 4
    version = take("I"); assert version == 3
    n_tensors = take("Q"); n_kv = take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string(); meta[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string(); nd = take("I"); dims = [take("Q") for _ in range(nd)]; t = take("I"); off = take("Q")
        infos.append((name, dims, t, off))
    align = meta.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, t, off in infos:
        assert t == 0
        n = int(np.prod(dims))
        arr = np.frombuffer(data, dtype=np.float32, count=n, offset=start + off).astype(np.float64)
        tensors[name] = arr.reshape(list(reversed(dims)))
    return meta, tensors


def spm_tokenize(text, tokens, scores):
    """llama.cpp llm_tokenizer_spm: '▁'-escaped text, symbols = UTF-8 characters, merge the best-scoring adjacent
    pair present in the vocabulary (ties: leftmost), then byte fallback for symbols not in the vocabulary."""
    index = {t: i for i, t in enumerate(tokens)}
    text = ("▁" + text.replace(" ", "▁"))
    syms = list(text)
    prev = list(range(-1, len(syms) - 1)); nxt = list(range(1, len(syms) + 1)); nxt[-1] = -1
    alive = [True] * len(syms)
    heap = []
    def push(l):
        r = nxt[l]
        if r == -1: return
        s = syms[l] + syms[r]
        if s in index: heapq.heappush(heap, (-scores[index[s]], l, s))
    for i in range(len(syms) - 1): push(i)
    while heap:
        _, l, s = heapq.heappop(heap)
        r = nxt[l]
        if not alive[l] or r == -1 or syms[l] + syms[r] != s: continue
        syms[l] = s; alive[r] = False
        nxt[l] = nxt[r]
        if nxt[r] != -1: prev[nxt[r]] = l
        if prev[l] != -1: push(prev[l])
        push(l)
    ids = []
    i = 0
    while i != -1 and i < len(syms):
        if alive[i]:
            s = syms[i]
            if s in index: ids.append(index[s])
            else: ids.extend(index["<0x%02X>" % b] for b in s.encode())
        i = nxt[i] if alive[i] else i + 1
    return ids


def forward(meta, w, tokens):
    D = meta["llama.embedding_length"]; L = meta["llama.block_count"]; H = meta["llama.attention.head_count"]
    Hkv = meta["llama.attention.head_count_kv"]; eps = meta["llama.attention.layer_norm_rms_epsilon"]
    Dh = D // H; theta = meta.get("llama.rope.freq_base", 10000.0)
    T = len(tokens)
    def norm(x, g): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g
    def rope(x):  # x [T, heads, Dh], adjacent pairs
        inv = theta ** (-np.arange(0, Dh, 2) / Dh)
        ang = np.arange(T)[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x); out[..., 0::2] = a * c - b * s; out[..., 1::2] = b * c + a * s
        return out
    x = w["token_embd.weight"][tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        p = f"blk.{l}."
        h = norm(x, w[p + "attn_norm.weight"])
        q = rope((h @ w[p + "attn_q.weight"].T).reshape(T, H, Dh))
        k = rope((h @ w[p + "attn_k.weight"].T).reshape(T, Hkv, Dh))
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, Hkv, Dh)
        k = np.repeat(k, H // Hkv, axis=1); v = np.repeat(v, H // Hkv, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / math.sqrt(Dh) + mask
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", s, v).reshape(T, D) @ w[p + "attn_output.weight"].T
        h = norm(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    x = norm(x, w["output_norm.weight"])
    return x @ w["output.weight"].T


def main(shared, out_dir):
    meta, w = read_gguf(os.path.join(shared, "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf"))
    text = open(os.path.join(shared, "datasets/tinyshakespeare/input.txt"), encoding="utf-8").read()[:4000]
    bos = meta["tokenizer.ggml.bos_token_id"]
    ids = spm_tokenize(text, meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"])
    tokens = [bos] + ids
    results = {}
    for ctx in (64, 128):
        n_chunk = len(tokens) // ctx
        first = ctx // 2
        nll, count = 0.0, 0
        for c in range(n_chunk):
            chunk = tokens[c * ctx:(c + 1) * ctx]
            chunk[0] = bos
            logits = forward(meta, w, chunk)
            for j in range(first, ctx - 1):
                row = logits[j]
                m = row.max()
                nll += m + math.log(np.exp(row - m).sum()) - row[chunk[j + 1]]
                count += 1
        results[str(ctx)] = {"ppl": math.exp(nll / count), "nll": nll, "tokens_scored": count, "chunks": n_chunk}
        print(ctx, results[str(ctx)])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "stories260K-llamacpp.json"), "w") as f:
        json.dump({"text": "first 4000 characters of datasets/tinyshakespeare/input.txt", "token_ids": ids, "results": results,
                   "note": "float64 numpy reference of llama-perplexity's protocol; tools/reference/make_perplexity_fixture.py"}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
