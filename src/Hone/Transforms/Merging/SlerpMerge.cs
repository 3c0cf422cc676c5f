namespace Hone.Transforms.Merging;

/// <summary>
/// Spherical linear interpolation between the base model (t = 0) and one other model (t = 1), each tensor taken as one
/// vector (Shoemake 1985; mergekit's slerp): with unit directions v̂₀, v̂₁ (a norm ≤ 1e-8 is left unscaled), dot = v̂₀·v̂₁,
/// θ = arccos(dot), result = sin((1 − t)θ)/sin θ · v₀ + sin(tθ)/sin θ · v₁. When |dot| > 0.9995 the vectors are nearly
/// parallel and sin θ nearly zero, so it falls back to the linear (1 − t)·v₀ + t·v₁, exactly as mergekit does.
/// </summary>
public sealed class SlerpMerge : MergeMethod
{
    const double ParallelThreshold = 0.9995, NormEpsilon = 1e-8;

    public override string Name => "slerp";
    public override string Summary => "spherical interpolation from the base (t = 0) to the other model (t = 1); linear when nearly parallel";
    public override BaseModelUse BaseModel => BaseModelUse.Required;
    public override int? MaximumModels => 1;
    public override IReadOnlyList<MergeParameter> Parameters =>
        [new("t", null, "position between the base (0) and the other model (1); per layer as a gradient, per tensor with filters (self_attn, mlp)")];

    public override void Merge(TensorMerge m)
    {
        int n = m.Count;
        float[] v0 = m.Base!, v1 = m.Models[0], output = m.Output;
        double t = m.Parameter("t");
        double norm0 = 0, norm1 = 0, dotRaw = 0;
        for (int k = 0; k < n; k++)
        {
            double a = v0[k], b = v1[k];
            norm0 += a * a; norm1 += b * b; dotRaw += a * b;
        }
        norm0 = Math.Sqrt(norm0); norm1 = Math.Sqrt(norm1);
        // mergekit divides by a norm only when it exceeds eps.
        double dot = dotRaw / (norm0 > NormEpsilon ? norm0 : 1) / (norm1 > NormEpsilon ? norm1 : 1);
        double s0, s1;
        if (Math.Abs(dot) > ParallelThreshold) { s0 = 1 - t; s1 = t; }
        else
        {
            double theta = Math.Acos(dot), sinTheta = Math.Sin(theta);
            s0 = Math.Sin(theta - theta * t) / sinTheta;
            s1 = Math.Sin(theta * t) / sinTheta;
        }
        for (int k = 0; k < n; k++) output[k] = (float)(s0 * v0[k] + s1 * v1[k]);
    }
}
