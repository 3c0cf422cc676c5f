using Hone.Tensors;

namespace Hone.Model;

/// <summary>
/// A LoRA (or DoRA) adapter on one projection W[out, in]:
/// LoRA: y = W·x + s·B·(A·x), with A[r, in], B[out, r], s = alpha/r (or alpha/√r with rsLoRA).
/// DoRA: y = (m / ‖W + s·B·A‖_row) ⊙ (W·x + s·B·(A·x)), with magnitude m[out] and the row norm treated as a
/// constant in backward (as PEFT does, following the DoRA paper).
/// The same object serves inference (through <see cref="ILinearAdapter"/>) and training (its buffers are parameters).
/// </summary>
public sealed unsafe class LoraAdapter : ILinearAdapter, IDisposable
{
    readonly NativeBuffer _storage;   // A[r, in] | B[out, r] | magnitude[out] | rowNorm[out] (the last two for DoRA)
    NativeBuffer? _scratch;           // [T, r] for inference

    public string Target { get; }     // canonical weight name, e.g. blk.0.attn_q.weight
    public int Rank { get; }
    public int In { get; }
    public int Out { get; }
    public float Alpha { get; }
    public bool RsLora { get; }
    public bool Dora { get; }
    public float Scale => RsLora ? Alpha / MathF.Sqrt(Rank) : Alpha / Rank;
    /// <summary>The file it was loaded from (null when made in memory), for error messages.</summary>
    public string? Source { get; set; }

    public float* A => _storage.AsFloats;                                  // [r, in]
    public float* B => _storage.AsFloats + (long)Rank * In;                // [out, r]
    public float* Magnitude => Dora ? B + (long)Out * Rank : null;         // [out]
    public float* RowNorm => Dora ? Magnitude + Out : null;                // [out], ‖W + s·B·A‖ per row
    public bool IsAdditive => !Dora;
    public long ParameterCount => (long)Rank * In + (long)Out * Rank + (Dora ? Out : 0);

    public LoraAdapter(string target, int rank, int inFeatures, int outFeatures, float alpha, bool rsLora = false, bool dora = false)
    {
        if (rank <= 0) throw new ArgumentException($"LoRA rank must be positive, got {rank}");
        Target = target; Rank = rank; In = inFeatures; Out = outFeatures; Alpha = alpha; RsLora = rsLora; Dora = dora;
        _storage = new NativeBuffer(((long)rank * inFeatures + (long)outFeatures * rank + (dora ? 2L * outFeatures : 0)) * 4);
    }

    /// <summary>PEFT's initialization: A ~ U(−1/√in, 1/√in) (kaiming-uniform with a = √5), B = 0; DoRA magnitude = ‖W‖_row.</summary>
    public void Initialize(ulong seed, WeightMatrix? weight)
    {
        var rng = new Xoshiro256(seed);
        float bound = 1f / MathF.Sqrt(In);
        for (long i = 0; i < (long)Rank * In; i++) A[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
        new Span<float>(B, Out * Rank).Clear();
        if (Dora)
        {
            if (weight == null) throw new ArgumentException("DoRA needs the base weight to initialize its magnitude");
            RefreshRowNorm(weight);
            new Span<float>(RowNorm, Out).CopyTo(new Span<float>(Magnitude, Out));
        }
    }

    /// <summary>Recompute ‖W + s·B·A‖ per output row (DoRA); call after B or A change.</summary>
    public void RefreshRowNorm(WeightMatrix weight)
    {
        if (!Dora) return;
        var row = new float[In];
        float s = Scale;
        fixed (float* r = row)
            for (int o = 0; o < Out; o++)
            {
                weight.ReadRow(o, r);
                float* b = B + (long)o * Rank;
                for (int k = 0; k < Rank; k++)
                {
                    float coefficient = s * b[k];
                    if (coefficient == 0) continue;
                    float* a = A + (long)k * In;
                    for (int i = 0; i < In; i++) r[i] += coefficient * a[i];
                }
                double ss = 0;
                for (int i = 0; i < In; i++) ss += (double)r[i] * r[i];
                RowNorm[o] = (float)Math.Sqrt(ss);
            }
    }

    /// <summary>"the LoRA adapter …/adapter_model.safetensors (scale 1.25E+37)", for error messages.</summary>
    public string Describe() => $"the {(Dora ? "DoRA" : "LoRA")} adapter {Source ?? "(made in memory)"} (scale {Scale:G3})";

    /// <summary>Inference: y[T, out] (holding W·x) ← adapted output.</summary>
    public void Apply(WorkerPool pool, WeightMatrix weight, float* x, int tokens, int ldx, float* y, int ldy)
    {
        if (_scratch == null || _scratch.Length < (long)tokens * Rank * 4) { _scratch?.Dispose(); _scratch = new NativeBuffer((long)Math.Max(tokens, 16) * Rank * 4); }
        float* xa = _scratch.AsFloats; // [T, r] = X·Aᵀ
        Gemm.Multiply(pool, tokens, Rank, In, x, ldx, false, A, In, GemmBLayout.NByK, xa, Rank, false);
        float s = Scale;
        for (long i = 0; i < (long)tokens * Rank; i++) xa[i] *= s;
        if (!Dora)
        {
            Gemm.Multiply(pool, tokens, Out, Rank, xa, Rank, false, B, Rank, GemmBLayout.NByK, y, ldy, true);
            return;
        }
        Gemm.Multiply(pool, tokens, Out, Rank, xa, Rank, false, B, Rank, GemmBLayout.NByK, y, ldy, true);
        for (int t = 0; t < tokens; t++)
        {
            float* yr = y + (long)t * ldy;
            for (int o = 0; o < Out; o++) yr[o] *= Magnitude[o] / RowNorm[o];
        }
    }

    /// <summary>ΔW = s·B·A (or the full DoRA weight minus W) as fp32 [out, in], for merging.</summary>
    public float[] MergedDelta(WeightMatrix weight)
    {
        var delta = new float[(long)Out * In];
        float s = Scale;
        var row = new float[In];
        fixed (float* d = delta) fixed (float* r = row)
            for (int o = 0; o < Out; o++)
            {
                float* dr = d + (long)o * In;
                float* b = B + (long)o * Rank;
                for (int k = 0; k < Rank; k++)
                {
                    float c = s * b[k];
                    float* a = A + (long)k * In;
                    for (int i = 0; i < In; i++) dr[i] += c * a[i];
                }
                if (Dora)
                {
                    weight.ReadRow(o, r);
                    float factor = Magnitude[o] / RowNorm[o];
                    for (int i = 0; i < In; i++) dr[i] = factor * (r[i] + dr[i]) - r[i];
                }
            }
        return delta;
    }

    public void Dispose() { _storage.Dispose(); _scratch?.Dispose(); }
}
