#!/usr/bin/env python3
"""Writes the quantization fixtures in tests/Hone.Tests/Fixtures/quant/.

An independent, vectorized numpy implementation of ggml's reference quantizers and dequantizers for
Q8_0, Q4_0, Q4_K, Q6_K (the GGUF file formats) and Q8_K (the activation format of the K-quant dot
products), written from the format description in ggml-common.h / ggml-quants.c. The C# code in
src/Hone/Tensors/Quantization must reproduce the block bytes and the dequantized floats bit for bit.

Float semantics follow the C source literally: every float operation is rounded to float32 in source
order, sums are sequential left to right (np.add.accumulate, never np.sum, which sums pairwise), and
nothing is fused into an FMA. (A GCC build with -ffp-contract=fast and FMA may fuse e.g. Q4_0's
`x*id + 8.5f`; such builds can differ from this reference in rare rounding ties.)

Run: /usr/bin/python3 tools/reference/quant_fixtures.py      (numpy only; deterministic)
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np

F32 = np.float32
QK_K = 256
OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "Hone.Tests" / "Fixtures" / "quant"

ROW_LENGTH = 512  # two super-blocks, sixteen 32-blocks per row
SEED = 20240611


# ---------------------------------------------------------------- helpers

def f32(v) -> np.ndarray:
    return np.asarray(v, dtype=F32)


def nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: add 1.5*2^23 and read the mantissa bits (round half to even)."""
    biased = (f32(v) + F32(12582912.0)).view(np.int32)
    return (biased & 0x007FFFFF) - 0x00400000


def seq_sum(v: np.ndarray) -> np.ndarray:
    """Sequential float32 sum over the last axis, as a C `for` loop accumulating into a float."""
    return np.add.accumulate(f32(v), axis=-1, dtype=F32)[..., -1]


def fp16_bits(v: np.ndarray) -> np.ndarray:
    return f32(v).astype(np.float16).view(np.uint16)


def fp16_value(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(F32)


def u16_bytes(bits: np.ndarray) -> np.ndarray:
    """(..., ) uint16 -> (..., 2) little-endian bytes."""
    b = np.asarray(bits, dtype="<u2")
    return b.view(np.uint8).reshape(b.shape + (2,))


def signed_first_max(x: np.ndarray) -> np.ndarray:
    """The value with the largest magnitude, first occurrence (C: `if (fabsf(v) > amax)`)."""
    idx = np.argmax(np.abs(x), axis=-1)
    return np.take_along_axis(x, idx[..., None], axis=-1)[..., 0]


def round_away(v: np.ndarray) -> np.ndarray:
    """C roundf: half away from zero. Done in float64, where |v| + 0.5 is exact."""
    a = np.abs(v.astype(np.float64))
    return (np.sign(v) * np.floor(a + 0.5)).astype(np.int64)


# ---------------------------------------------------------------- Q8_0: d fp16, qs int8[32]

def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    b = f32(x).reshape(-1, 32)
    amax = np.max(np.abs(b), axis=-1)
    d = f32(amax / F32(127))
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
    q = round_away(f32(b * inv[:, None])).astype(np.int8)
    return np.concatenate([u16_bytes(fp16_bits(d)), q.view(np.uint8)], axis=-1).reshape(-1)


def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    b = blocks.reshape(-1, 34)
    d = fp16_value(b[:, 0:2].copy().view("<u2")[:, 0])
    q = b[:, 2:].view(np.int8).astype(F32)
    return f32(q * d[:, None]).reshape(-1)


# ---------------------------------------------------------------- Q4_0: d fp16, qs u8[16] (low nibbles = 0..15, high = 16..31)

def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    b = f32(x).reshape(-1, 32)
    mx = signed_first_max(b)
    d = f32(mx / F32(-8))
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
    scaled = f32(b * inv[:, None])
    # (int8_t)(x0 + 8.5f): float add, then truncation toward zero; MIN(15, .)
    q = np.minimum(15, np.trunc(f32(scaled + F32(8.5))).astype(np.int64)).astype(np.uint8)
    qs = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([u16_bytes(fp16_bits(d)), qs], axis=-1).reshape(-1)


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    b = blocks.reshape(-1, 18)
    d = fp16_value(b[:, 0:2].copy().view("<u2")[:, 0])
    qs = b[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int32) - 8
    return f32(q.astype(F32) * d[:, None]).reshape(-1)


# ---------------------------------------------------------------- Q8_K (activations): d f32, qs int8[256], bsums int16[16]

def quantize_q8_k(x: np.ndarray) -> np.ndarray:
    b = f32(x).reshape(-1, QK_K)
    mx = signed_first_max(b)
    zero = np.abs(mx) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = f32(F32(-127) / mx)
        q = np.minimum(127, nearest_int(f32(iscale[:, None] * b)))
        d = f32(F32(1) / iscale)
    q = np.where(zero[:, None], 0, q).astype(np.int8)
    d = np.where(zero, F32(0), d).astype("<f4")
    bsums = q.astype(np.int32).reshape(-1, 16, 16).sum(axis=-1).astype("<i2")
    return np.concatenate([d.view(np.uint8).reshape(-1, 4), q.view(np.uint8),
                           bsums.view(np.uint8).reshape(-1, 32)], axis=-1).reshape(-1)


def dequantize_q8_k(blocks: np.ndarray) -> np.ndarray:
    b = blocks.reshape(-1, 292)
    d = b[:, 0:4].copy().view("<f4")[:, 0]
    q = b[:, 4:260].view(np.int8).astype(F32)
    return f32(q * d[:, None]).reshape(-1)


# ---------------------------------------------------------------- Q4_K: d, dmin fp16, scales u8[12] (6-bit), qs u8[128]

def make_qkx2_quants(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """ggml's make_qkx2_quants over rows of x: (scale, the_min, L) with x ~ scale*L - the_min."""
    with np.errstate(all="ignore"):
        mn = np.minimum(np.min(x, axis=-1), F32(0)).astype(F32)
        mx = np.max(x, axis=-1)
        flat = mx == mn
        sum_w = seq_sum(w)
        sum_x = seq_sum(f32(w * x))
        rng = f32(mx - mn)
        iscale = f32(F32(nmax) / rng)
        scale = f32(F32(1) / iscale)
        centered = f32(x - mn[:, None])
        L = np.clip(nearest_int(f32(iscale[:, None] * centered)), 0, nmax)
        diff = f32(f32(f32(scale[:, None] * f32(L)) + mn[:, None]) - x)
        best = seq_sum(f32(w * f32(diff * diff)))
        for step in range(nstep + 1):
            # min moves to each better fit, and later trials start from it (C updates `min` in place)
            rng = f32(mx - mn)
            centered = f32(x - mn[:, None])
            factor = f32(f32(F32(rmin) + f32(F32(rdelta) * F32(step))) + F32(nmax))
            iscale = f32(factor / rng)
            laux = np.clip(nearest_int(f32(iscale[:, None] * centered)), 0, nmax)
            lf = f32(laux)
            wl = f32(w * lf)
            sum_l = seq_sum(wl)
            sum_l2 = seq_sum(f32(wl * lf))
            sum_xl = seq_sum(f32(wl * x))
            D = f32(f32(sum_w * sum_l2) - f32(sum_l * sum_l))
            this_scale = f32(f32(f32(sum_w * sum_xl) - f32(sum_x * sum_l)) / D)
            this_min = f32(f32(f32(sum_l2 * sum_x) - f32(sum_l * sum_xl)) / D)
            positive = this_min > 0
            this_scale = np.where(positive, f32(sum_xl / sum_l2), this_scale).astype(F32)
            this_min = np.where(positive, F32(0), this_min).astype(F32)
            diff = f32(f32(f32(this_scale[:, None] * lf) + this_min[:, None]) - x)
            err = seq_sum(f32(w * f32(diff * diff)))
            better = (D > 0) & (err < best)
            L = np.where(better[:, None], laux, L)
            best = np.where(better, err, best).astype(F32)
            scale = np.where(better, this_scale, scale).astype(F32)
            mn = np.where(better, this_min, mn).astype(F32)
        L = np.where(flat[:, None], 0, L)
        scale = np.where(flat, F32(0), scale).astype(F32)
    return scale, f32(-mn), L


def pack_q4_k_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(B, 8) 6-bit scales and mins -> (B, 12) bytes (ggml's get_scale_min_k4 packing)."""
    out = np.zeros((ls.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0x0F) | ((lm[:, 4:8] & 0x0F) << 4)
    return out


def unpack_q4_k_scales(s: np.ndarray):
    """(B, 12) bytes -> (B, 8) scales, (B, 8) mins."""
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=-1)
    return sc, mn


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    sub = f32(x).reshape(-1, 8, 32)
    nb = sub.shape[0]
    with np.errstate(all="ignore"):
        sum_x2 = seq_sum(f32(sub * sub))
        av_x = np.sqrt(f32(sum_x2 / F32(32))).astype(F32)
        weights = f32(av_x[..., None] + np.abs(sub))
        scales, mins, L = make_qkx2_quants(sub.reshape(-1, 32), weights.reshape(-1, 32), 15, -1.0, 0.1, 20)
        scales = scales.reshape(nb, 8)
        mins = mins.reshape(nb, 8)
        L = L.reshape(nb, 8, 32)
        # C starts from +0 and takes strictly larger values, so the result is +0 (never -0) unless something is > 0
        max_scale = np.max(scales, axis=-1)
        max_scale = np.where(max_scale > 0, max_scale, F32(0)).astype(F32)
        max_min = np.max(mins, axis=-1)
        max_min = np.where(max_min > 0, max_min, F32(0)).astype(F32)
        inv_scale = np.where(max_scale > 0, f32(F32(63) / max_scale), F32(0)).astype(F32)
        inv_min = np.where(max_min > 0, f32(F32(63) / max_min), F32(0)).astype(F32)
        # uint8_t ls = nearest_int(...) wraps modulo 256 before MIN(63, ls)
        ls = np.minimum(63, nearest_int(f32(inv_scale[:, None] * scales)).astype(np.uint8)).astype(np.uint8)
        lm = np.minimum(63, nearest_int(f32(inv_min[:, None] * mins)).astype(np.uint8)).astype(np.uint8)
        packed = pack_q4_k_scales(ls, lm)
        d_bits = fp16_bits(f32(max_scale / F32(63)))
        dmin_bits = fp16_bits(f32(max_min / F32(63)))
        sc, m = unpack_q4_k_scales(packed)
        d = f32(fp16_value(d_bits)[:, None] * f32(sc))
        dm = f32(fp16_value(dmin_bits)[:, None] * f32(m))
        requant = np.clip(nearest_int(f32(f32(sub + dm[..., None]) / d[..., None])), 0, 15)
        L = np.where((d != 0)[..., None], requant, L).astype(np.uint8)
    chunks = L.reshape(nb, 4, 2, 32)  # 64-element chunks: low nibbles = first 32, high = next 32
    qs = (chunks[:, :, 0, :] | (chunks[:, :, 1, :] << 4)).reshape(nb, 128)
    return np.concatenate([u16_bytes(d_bits), u16_bytes(dmin_bits), packed, qs], axis=-1).reshape(-1)


def dequantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    b = blocks.reshape(-1, 144)
    nb = b.shape[0]
    d = fp16_value(b[:, 0:2].copy().view("<u2")[:, 0])
    dmin = fp16_value(b[:, 2:4].copy().view("<u2")[:, 0])
    sc, m = unpack_q4_k_scales(b[:, 4:16])
    d1 = f32(d[:, None] * f32(sc))
    m1 = f32(dmin[:, None] * f32(m))
    qs = b[:, 16:].reshape(nb, 4, 32)
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(nb, 8, 32)
    return f32(f32(d1[..., None] * f32(q)) - m1[..., None]).reshape(-1)


# ---------------------------------------------------------------- Q6_K: ql u8[128], qh u8[64], scales i8[16], d fp16

def make_qx_quants_rmse1(x: np.ndarray, nmax: int):
    """ggml's make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL) over rows: (scale, L in [0, 2*nmax))."""
    with np.errstate(all="ignore"):
        mx = signed_first_max(x)
        zero = np.abs(mx) < F32(1e-15)
        w = f32(x * x)
        wx = f32(w * x)

        def fit(iscale):
            l = np.clip(nearest_int(f32(iscale[:, None] * x)), -nmax, nmax - 1)
            lf = f32(l)
            return l, seq_sum(f32(wx * lf)), seq_sum(f32(f32(w * lf) * lf))

        l, sumlx, suml2 = fit(f32(F32(-nmax) / mx))
        L = l + nmax
        scale = np.where(suml2 != 0, f32(sumlx / suml2), F32(0)).astype(F32)
        best = f32(scale * sumlx)
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = f32(-f32(F32(nmax) + f32(F32(0.1) * F32(step))) / mx)
            l, sumlx, suml2 = fit(iscale)
            better = (suml2 > 0) & (f32(sumlx * sumlx) > f32(best * suml2))
            L = np.where(better[:, None], l + nmax, L)
            scale = np.where(better, f32(sumlx / suml2), scale).astype(F32)
            best = np.where(better, f32(scale * sumlx), best).astype(F32)
        L = np.where(zero[:, None], 0, L)
        scale = np.where(zero, F32(0), scale).astype(F32)
    return scale, L


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    sub = f32(x).reshape(-1, 16, 16)
    nb = sub.shape[0]
    with np.errstate(all="ignore"):
        scales, L = make_qx_quants_rmse1(sub.reshape(-1, 16), 32)
        scales = scales.reshape(nb, 16)
        L = L.reshape(nb, 16, 16)
        max_scale = signed_first_max(scales)
        zero = np.abs(max_scale) < F32(1e-15)
        iscale = f32(F32(-128) / max_scale)
        d_bits = fp16_bits(f32(F32(1) / iscale))
        # int8_t scales = MIN(127, nearest_int(.)) (the cast wraps modulo 256)
        sc = np.minimum(127, nearest_int(f32(iscale[:, None] * scales))).astype(np.int8)
        d = f32(fp16_value(d_bits)[:, None] * f32(sc))
        requant = np.clip(nearest_int(f32(sub / d[..., None])), -32, 31) + 32
        L = np.where((d != 0)[..., None], requant, L).astype(np.uint8).reshape(nb, 2, 4, 32)
    # per half of 128: ql[0..32) = L0 | L2 << 4, ql[32..64) = L1 | L3 << 4, qh = 2 high bits of L0..L3
    ql = np.concatenate([(L[:, :, 0] & 0x0F) | ((L[:, :, 2] & 0x0F) << 4),
                         (L[:, :, 1] & 0x0F) | ((L[:, :, 3] & 0x0F) << 4)], axis=-1).reshape(nb, 128)
    qh = ((L[:, :, 0] >> 4) | ((L[:, :, 1] >> 4) << 2) | ((L[:, :, 2] >> 4) << 4) | ((L[:, :, 3] >> 4) << 6)).reshape(nb, 64)
    out = np.concatenate([ql, qh, sc.view(np.uint8), u16_bytes(d_bits)], axis=-1)
    out[zero] = 0
    return out.reshape(-1)


def dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    b = blocks.reshape(-1, 210)
    nb = b.shape[0]
    ql = b[:, 0:128].reshape(nb, 2, 2, 32)
    qh = b[:, 128:192].reshape(nb, 2, 32)
    sc = b[:, 192:208].view(np.int8).astype(F32).reshape(nb, 16)
    d = fp16_value(b[:, 208:210].copy().view("<u2")[:, 0])
    q = np.stack([(ql[:, :, 0] & 0x0F) | (((qh >> 0) & 3) << 4),
                  (ql[:, :, 1] & 0x0F) | (((qh >> 2) & 3) << 4),
                  (ql[:, :, 0] >> 4) | (((qh >> 4) & 3) << 4),
                  (ql[:, :, 1] >> 4) | (((qh >> 6) & 3) << 4)], axis=2).astype(np.int32) - 32
    q = f32(q.reshape(nb, 16, 16))
    ds = f32(d[:, None] * sc)  # C: d * sc[is] * q, left to right
    return f32(ds[..., None] * q).reshape(-1)


# ---------------------------------------------------------------- inputs

def fixture_rows(rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    n = ROW_LENGTH
    rows, kinds = [], []

    def add(kind, v):
        kinds.append(kind)
        rows.append(f32(v))

    add("gaussian sigma 1", rng.standard_normal(n))
    add("gaussian sigma 0.02 (weights)", rng.standard_normal(n) * 0.02)
    add("all zeros", np.zeros(n))
    tiny = rng.standard_normal(n) * 1e-5
    tiny[256:] *= 1e-4  # fp16 scales underflow to subnormals / zero
    add("tiny: 1e-5 then 1e-9 (subnormal and zero fp16 scales)", tiny)
    out = rng.standard_normal(n)
    out[::37] *= 50
    add("gaussian with outliers every 37th x50", out)
    add("uniform positive [0,1)", rng.random(n))
    add("uniform negative [-1,0)", -rng.random(n))
    tie = np.tile(np.array([1.0, -1.0, 0.5, -0.5], dtype=F32), n // 4)
    tie[64:128] = 0.5
    tie[128:160] = 0
    tie[300:316] = -3.0
    add("ties: +-1 patterns, constant and zero blocks", tie)
    add("large: gaussian x 1000", rng.standard_normal(n) * 1000)
    add("grid: round(gaussian*8)/8 (exact halves)", np.round(rng.standard_normal(n) * 8) / 8)
    scaled = rng.standard_normal(n) * np.repeat(10.0 ** (np.arange(n // 32) % 7 - 3), 32)
    add("per-block magnitudes 1e-3 .. 1e3", scaled)
    sparse = np.zeros(n)
    pick = rng.choice(n, 12, replace=False)
    sparse[pick] = rng.standard_normal(12) * 3
    add("sparse: 12 nonzeros", sparse)
    return np.stack(rows).astype(F32), kinds


FORMATS = {
    "q8_0": (quantize_q8_0, dequantize_q8_0),
    "q4_0": (quantize_q4_0, dequantize_q4_0),
    "q4_k": (quantize_q4_k, dequantize_q4_k),
    "q6_k": (quantize_q6_k, dequantize_q6_k),
    "q8_k": (quantize_q8_k, dequantize_q8_k),
}


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows, kinds = fixture_rows(rng)
    OUT.mkdir(parents=True, exist_ok=True)
    files = {}

    def write(name, data: np.ndarray):
        raw = np.ascontiguousarray(data).tobytes()
        (OUT / name).write_bytes(raw)
        files[name] = hashlib.sha256(raw).hexdigest()

    write("input.f32", rows.astype("<f4"))
    for name, (quantize, dequantize) in FORMATS.items():
        blocks = np.concatenate([quantize(r) for r in rows])
        write(f"{name}.blocks", blocks.astype(np.uint8))
        write(f"{name}.dequant.f32", dequantize(blocks).astype("<f4"))
    manifest = {
        "generator": "tools/reference/quant_fixtures.py",
        "numpy": np.__version__,
        "seed": SEED,
        "rows": len(kinds),
        "row_length": ROW_LENGTH,
        "row_kinds": kinds,
        "formats": list(FORMATS),
        "layout": "input.f32: rows x row_length little-endian float32; <fmt>.blocks: each row's blocks, rows "
                  "concatenated; <fmt>.dequant.f32: dequantize(<fmt>.blocks), rows x row_length float32",
        "sha256": files,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} files to {OUT}")


if __name__ == "__main__":
    main()
