using Hone.Tensors;

namespace Hone.Model;

/// <summary>
/// DoRA (weight-decomposed LoRA): y = (m / ‖W + s·B·A‖_row) ⊙ (W·x + s·B·(A·x)), with the LoRA tensors plus a magnitude
/// m[out]; the row norm is treated as a constant in backward (as PEFT does, following the DoRA paper). In
/// adapter_config.json it is use_dora: true, its magnitude is lora_magnitude_vector [out]; llama.cpp has no form of it.
/// </summary>
public sealed unsafe class DoraAdapter : LoraAdapter
{
    public DoraAdapter(AdapterShape shape) : base(shape, 2L * shape.Out) { }

    public override AdapterKind Kind => AdapterKinds.Dora;
    public float* Magnitude => Extra;                  // [out]
    public float* RowNorm => Extra + Out;              // [out], ‖W + s·B·A‖ per row (not a parameter)
    public override bool IsAdditive => false;

    protected override IEnumerable<AdapterTensor> DeclareTensors() =>
        base.DeclareTensors().Append(new AdapterTensor("magnitude", "lora_magnitude_vector", (nint)Magnitude, 1, Out, WeightDecay: false,
            PeftAliases: ["lora_magnitude_vector.weight"]));

    /// <summary>LoRA's initialization, and m = ‖W‖_row so the adapted projection starts equal to W.</summary>
    public override void Initialize(ulong seed, WeightMatrix? weight)
    {
        base.Initialize(seed, weight);
        if (weight == null) throw new ArgumentException("DoRA needs the base weight to initialize its magnitude");
        Refresh(weight);
        new Span<float>(RowNorm, Out).CopyTo(new Span<float>(Magnitude, Out));
    }

    /// <summary>Recompute ‖W + s·B·A‖ per output row.</summary>
    public override void Refresh(WeightMatrix weight)
    {
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

    /// <summary>Inference: y[T, out] (holding W·x) ← (y + s·(x·Aᵀ)·Bᵀ) ⊙ m/‖V‖.</summary>
    public override void Apply(WorkerPool pool, WeightMatrix weight, float* x, int tokens, int ldx, float* y, int ldy)
    {
        AddLowRank(pool, x, tokens, ldx, y, ldy);
        for (int t = 0; t < tokens; t++)
        {
            float* yr = y + (long)t * ldy;
            for (int o = 0; o < Out; o++) yr[o] *= Magnitude[o] / RowNorm[o];
        }
    }

    /// <summary>m·(W + s·B·A)/‖W + s·B·A‖ − W.</summary>
    public override float[] MergedDelta(WeightMatrix weight)
    {
        var delta = base.MergedDelta(weight);
        var row = new float[In];
        fixed (float* d = delta) fixed (float* r = row)
            for (int o = 0; o < Out; o++)
            {
                float* dr = d + (long)o * In;
                weight.ReadRow(o, r);
                float factor = Magnitude[o] / RowNorm[o];
                for (int i = 0; i < In; i++) dr[i] = factor * (r[i] + dr[i]) - r[i];
            }
        return delta;
    }

    // ---- training -----------------------------------------------------------------------------------

    /// <summary>X·Aᵀ [N, r] as LoRA, and z = W·x + s·B·A·x [N, out], the output before the magnitude scaling.</summary>
    public override IReadOnlyList<int> SavedWidths => [Rank, Out];

    /// <summary>LoRA's [N, r], then ∂L/∂z [N, out].</summary>
    public override int WorkWidth => Rank + Out;

    /// <summary>z = x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ, computed on its own and kept; y (+)= z ⊙ m/‖V‖.</summary>
    public override void TrainingForward(in AdapterPass pass, WeightMatrix w, float* bias, float* x, float* y, bool accumulate, nint[] saved)
    {
        float* z = (float*)saved[1];
        LowRankForward(pass, w, bias, x, z, false, (float*)saved[0]);
        for (int t = 0; t < pass.Rows; t++)
        {
            float* zr = z + (long)t * Out, yr = y + (long)t * Out;
            for (int o = 0; o < Out; o++)
            {
                float v = zr[o] * Magnitude[o] / RowNorm[o];
                yr[o] = accumulate ? yr[o] + v : v;
            }
        }
    }

    /// <summary>y = (m/‖V‖)⊙z: ∂L/∂m += Σ_t dy⊙z/‖V‖; ∂L/∂z = dy⊙m/‖V‖ (the norm a constant, as in PEFT), then LoRA's
    /// backward from ∂L/∂z.</summary>
    public override void TrainingBackward(in AdapterPass pass, WeightMatrix w, float* x, float* dy, float* dx, bool accumulateDx,
        nint[] saved, nint[] gradients)
    {
        int n = pass.Rows;
        float* z = (float*)saved[1];
        float* gradientMagnitude = (float*)gradients[2];
        float* g = pass.Work + (long)n * Rank; // dy itself may be the residual gradient, still needed after this projection
        for (int t = 0; t < n; t++)
        {
            float* dyr = dy + (long)t * Out, zr = z + (long)t * Out, gr = g + (long)t * Out;
            for (int o = 0; o < Out; o++)
            {
                float inv = 1f / RowNorm[o];
                gradientMagnitude[o] += dyr[o] * zr[o] * inv;
                gr[o] = dyr[o] * Magnitude[o] * inv;
            }
        }
        LowRankBackward(pass, w, x, g, dx, accumulateDx, (float*)saved[0], (float*)gradients[0], (float*)gradients[1]);
    }
}
