using Hone.Tensors;

namespace Hone.Transforms.Merging;

/// <summary>How a task-vector method thins each model's delta before combining.</summary>
public enum Sparsification
{
    None,
    /// <summary>TIES: keep the ⌊density·n⌋ largest magnitudes.</summary>
    Magnitude,
    /// <summary>DARE: keep each element with probability density (seeded).</summary>
    Random,
    /// <summary>Model Breadcrumbs: drop the ⌊gamma·n⌋ largest magnitudes (outliers) and the smallest, keeping
    /// ⌊density·n⌋ (fewer outliers are dropped when both would not fit).</summary>
    MagnitudeOutliers,
}

/// <summary>
/// The task-vector methods (mergekit's generalized task arithmetic): each model's delta τᵢ = Xᵢ − base is thinned by a
/// <see cref="Sparsification"/> (×1/density with rescale), weighted (τᵢ·wᵢ), and summed. With sign election (TIES) an
/// element's majority sign is that of Σᵢ wᵢτᵢ (+ when the sum is 0) and only deltas of that sign (not zeros) count,
/// the divisor being the sum of their weights; without, the divisor is Σ wᵢ. normalize divides by the divisor (a divisor
/// of 0 — or, without election, |Σ wᵢ| &lt; 1e-8 — counts as 1); the sum is then scaled by lambda and added to the base.
/// A model that is the base itself is not one of the deltas.
/// </summary>
public abstract class TaskVectorMerge : MergeMethod
{
    protected abstract Sparsification Sparsification { get; }
    protected abstract bool SignElection { get; }
    protected abstract bool NormalizeByDefault { get; }
    protected virtual bool RescaleByDefault => false;

    public override BaseModelUse BaseModel => BaseModelUse.Required;
    public override bool IsRandom => Sparsification == Sparsification.Random;

    public override IReadOnlyList<MergeParameter> ModelParameters
    {
        get
        {
            var list = new List<MergeParameter> { new("weight", null, "the weight of the model's task vector") };
            if (Sparsification != Sparsification.None)
                list.Add(new("density", 1, Sparsification switch
                {
                    Sparsification.Random => "the fraction of the delta's elements kept, each at random (default 1)",
                    Sparsification.MagnitudeOutliers => "the fraction of the delta's elements kept after dropping outliers and the smallest (default 1)",
                    _ => "the fraction of the delta's elements kept, the largest in magnitude (default 1)",
                }));
            if (Sparsification == Sparsification.MagnitudeOutliers)
                list.Add(new("gamma", 0.01, "the fraction of largest-magnitude elements dropped as outliers (default 0.01)"));
            return list;
        }
    }

    public override IReadOnlyList<MergeParameter> Parameters =>
    [
        new("normalize", NormalizeByDefault ? 1 : 0, $"divide the summed deltas by the sum of the weights (default {(NormalizeByDefault ? "true" : "false")})", IsFlag: true),
        new("rescale", RescaleByDefault ? 1 : 0, $"multiply kept elements by 1/density (default {(RescaleByDefault ? "true" : "false")})", IsFlag: true),
        new("lambda", 1, "scale of the merged delta added to the base (default 1)"),
        new("int8_mask", 0, "accepted for mergekit's configurations; it only changes mergekit's memory use, not the result", IsFlag: true),
    ];

    public override void Merge(TensorMerge m)
    {
        int n = m.Count, models = m.Models.Count;
        float[] b = m.Base!;
        var weights = new double[models];
        bool rescale = m.Flag("rescale");
        for (int i = 0; i < models; i++)
        {
            weights[i] = m.ModelParameter(i, "weight");
            var delta = m.Models[i];
            for (int k = 0; k < n; k++) delta[k] = (float)((double)delta[k] - b[k]);
            if (Sparsification == Sparsification.None) continue;
            double density = m.ModelParameter(i, "density");
            if (!(density > 0)) throw m.Error($"density {density} of model {i + 1} must be above 0");
            if (density >= 1) continue;
            switch (Sparsification)
            {
                case Sparsification.Magnitude:
                {
                    int keep = (int)(density * n);
                    if (keep == 0) throw m.Error($"density {density} keeps none of the {n} elements of model {i + 1}'s delta");
                    KeepRanks(delta.AsSpan(0, n), n - keep, 0, m.Scratch!());
                    break;
                }
                case Sparsification.MagnitudeOutliers:
                {
                    int keep = (int)(density * n), top = (int)(m.ModelParameter(i, "gamma") * n);
                    int bottom = n - keep - top;
                    if (bottom < 0) { top += bottom; bottom = 0; } // fewer outliers when they would not fit
                    if (top < 0) throw m.Error($"gamma {m.ModelParameter(i, "gamma")} of model {i + 1} must not be negative");
                    KeepRanks(delta.AsSpan(0, n), bottom, top, m.Scratch!());
                    break;
                }
                case Sparsification.Random:
                    DropAtRandom(delta.AsSpan(0, n), density, Xoshiro256.SplitMix64(m.Seed ^ (ulong)(i + 1) * 0x9E3779B97F4A7C15UL));
                    break;
            }
            if (rescale)
                for (int k = 0; k < n; k++) delta[k] = (float)(delta[k] / density);
        }
        bool normalize = m.Flag("normalize");
        double lambda = m.Parameter("lambda");
        double weightSum = weights.Sum();
        for (int k = 0; k < n; k++)
        {
            double mixed = 0, divisor;
            if (SignElection)
            {
                double elected = 0;
                for (int i = 0; i < models; i++) elected += weights[i] * m.Models[i][k];
                int majority = elected >= 0 ? 1 : -1;
                divisor = 0;
                for (int i = 0; i < models; i++)
                {
                    double weighted = weights[i] * m.Models[i][k];
                    if (Math.Sign(weighted) != majority) continue;
                    mixed += weighted;
                    divisor += weights[i];
                }
                if (divisor == 0) divisor = 1;
            }
            else
            {
                for (int i = 0; i < models; i++) mixed += weights[i] * m.Models[i][k];
                divisor = Math.Abs(weightSum) < 1e-8 ? 1 : weightSum;
            }
            if (normalize) mixed /= divisor;
            m.Output[k] = (float)(b[k] + lambda * mixed);
        }
    }

    /// <summary>
    /// Zero every element of <paramref name="x"/> except those whose rank by magnitude, smallest first, lies in
    /// [dropSmallest, n − dropLargest). Equal magnitudes rank in index order (mergekit leaves their order to torch's
    /// sort). <paramref name="scratch"/> holds at least n floats.
    /// </summary>
    internal static void KeepRanks(Span<float> x, int dropSmallest, int dropLargest, float[] scratch)
    {
        int n = x.Length, end = n - dropLargest;
        if (dropSmallest <= 0 && dropLargest <= 0) return;
        if (dropSmallest >= end) { x.Clear(); return; }
        var sorted = scratch.AsSpan(0, n);
        for (int k = 0; k < n; k++) sorted[k] = MathF.Abs(x[k]);
        sorted.Sort();
        float low = sorted[dropSmallest], high = sorted[end - 1];
        int firstLow = sorted.IndexOf(low), firstHigh = sorted.IndexOf(high);
        int seenLow = 0, seenHigh = 0;
        for (int k = 0; k < n; k++)
        {
            float a = MathF.Abs(x[k]);
            bool keep;
            if (a < low || a > high) keep = false;
            else if (a == low) { int rank = firstLow + seenLow++; keep = rank >= dropSmallest && rank < end; }
            else if (a == high) { int rank = firstHigh + seenHigh++; keep = rank >= dropSmallest && rank < end; }
            else keep = true;
            if (!keep) x[k] = 0;
        }
    }

    /// <summary>Keep each element with probability <paramref name="density"/> (DARE's Bernoulli mask), zero the rest.</summary>
    internal static void DropAtRandom(Span<float> x, double density, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        for (int k = 0; k < x.Length; k++)
            if (rng.NextDouble() >= density) x[k] = 0;
    }
}
