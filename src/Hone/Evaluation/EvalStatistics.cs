namespace Hone.Evaluation;

/// <summary>Estimators and their standard errors, each named so results can say how a number was obtained.</summary>
public static class EvalStatistics
{
    public const string MeanStandardErrorMethod = "standard error of the mean: sample standard deviation / sqrt(n) (for 0/1 scores sqrt(p(1-p)/(n-1)))";
    public const string BinomialStandardErrorMethod = "binomial: sqrt(p(1-p)/(n-1))";
    public const string RatioStandardErrorMethod = "analytical (delta method for a ratio of sums over documents)";

    public static double Mean(IReadOnlyList<double> values) => values.Count == 0 ? double.NaN : values.Sum() / values.Count;

    /// <summary>Sample standard deviation over sqrt(n), as lm-eval's mean_stderr; null below two values.</summary>
    public static double? StandardErrorOfMean(IReadOnlyList<double> values)
    {
        int n = values.Count;
        if (n < 2) return null;
        double mean = Mean(values), squares = 0;
        foreach (var v in values) squares += (v - mean) * (v - mean);
        return Math.Sqrt(squares / (n - 1) / n);
    }

    /// <summary>sqrt(p(1−p)/(n−1)) — identical to <see cref="StandardErrorOfMean"/> on 0/1 outcomes.</summary>
    public static double? BinomialStandardError(double p, int n) => n < 2 ? null : Math.Sqrt(p * (1 - p) / (n - 1));

    /// <summary>Standard error of r = Σnumerator/Σdenominator over independent units (documents) by the delta method:
    /// sqrt(Σ(nᵢ − r·dᵢ)² / (n−1) / n) / mean(d). Null below two units.</summary>
    public static double? RatioStandardError(IReadOnlyList<double> numerators, IReadOnlyList<double> denominators)
    {
        int n = numerators.Count;
        if (n < 2 || denominators.Count != n) return null;
        double sumN = numerators.Sum(), sumD = denominators.Sum();
        if (sumD <= 0) return null;
        double r = sumN / sumD, squares = 0;
        for (int i = 0; i < n; i++) squares += Math.Pow(numerators[i] - r * denominators[i], 2);
        return Math.Sqrt(squares / (n - 1) / n) / (sumD / n);
    }
}

/// <summary>
/// Unbiased estimators from n samples of which c passed (Chen et al. 2021 for pass@k):
/// pass@k = 1 − C(n−c, k)/C(n, k), the chance at least one of k draws without replacement passes;
/// pass^k = C(c, k)/C(n, k), the chance all k draws pass. Both are computed as running products of ratios below 1,
/// never as binomial coefficients, so they are stable for any n.
/// </summary>
public static class PassAtK
{
    public static double PassAt(int n, int c, int k)
    {
        Check(n, c, k);
        if (n - c < k) return 1.0;
        // C(n−c, k)/C(n, k) = Π_{i=0}^{k−1} (n−c−i)/(n−i)
        double fail = 1.0;
        for (int i = 0; i < k; i++) fail *= (double)(n - c - i) / (n - i);
        return 1.0 - fail;
    }

    public static double PassHat(int n, int c, int k)
    {
        Check(n, c, k);
        if (c < k) return 0.0;
        double all = 1.0;
        for (int i = 0; i < k; i++) all *= (double)(c - i) / (n - i);
        return all;
    }

    static void Check(int n, int c, int k)
    {
        if (n < 1) throw new ArgumentException($"n must be at least 1, got {n}");
        if (c < 0 || c > n) throw new ArgumentException($"c must be in 0..{n}, got {c}");
        if (k < 1 || k > n) throw new ArgumentException($"k must be in 1..{n} (k ≤ n samples), got {k}");
    }
}
