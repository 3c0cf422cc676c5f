namespace Hone.Evaluation;

/// <summary>
/// The two-sample Kolmogorov–Smirnov test, two-sided, as scipy.stats.ks_2samp (method "auto"): D = sup |F₁ − F₂| over
/// the pooled values; the p-value exact for n·m up to <see cref="ExactLimit"/> (the share of the C(n+m, n) equally likely
/// merge orders whose empirical-CDF gap reaches D, counted on the lattice), else Kolmogorov's asymptotic series with
/// √(n·m/(n+m))·D. TOFU's forget quality is this p-value between two models' truth-ratio distributions.
/// </summary>
public static class KolmogorovSmirnov
{
    public const long ExactLimit = 10_000_000;
    public const string Method = "two-sample Kolmogorov-Smirnov, two-sided: exact (lattice path count) for n·m ≤ 10^7, else the asymptotic Kolmogorov distribution";

    public static (double Statistic, double PValue) TwoSample(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count == 0 || b.Count == 0) throw new ArgumentException("both samples need at least one value");
        if (a.Concat(b).Any(v => double.IsNaN(v))) throw new ArgumentException("a sample holds NaN");
        var x = a.Order().ToArray();
        var y = b.Order().ToArray();
        int n = x.Length, m = y.Length;
        double d = 0;
        int i = 0, j = 0;
        while (i < n || j < m)
        {
            // Step past every copy of the next value in both samples, then compare the CDFs.
            double v = i < n && (j >= m || x[i] <= y[j]) ? x[i] : y[j];
            while (i < n && x[i] == v) i++;
            while (j < m && y[j] == v) j++;
            d = Math.Max(d, Math.Abs((double)i / n - (double)j / m));
        }
        double p = (long)n * m <= ExactLimit ? ExactPValue(n, m, d) : AsymptoticPValue(n, m, d);
        return (d, Math.Clamp(p, 0, 1));
    }

    /// <summary>P(D ≥ d) under the null: 1 − the share of monotone lattice paths (0,0) → (n,m) that keep
    /// |i/n − j/m| &lt; d at every point. f(i,j), the share of paths to (i,j) staying inside, satisfies
    /// f(i,j) = f(i−1,j)·i/(i+j) + f(i,j−1)·j/(i+j), which never overflows.</summary>
    public static double ExactPValue(int n, int m, double d)
    {
        if (d <= 0) return 1;
        // A gap counts as reaching d when it is within rounding of it: the same values give the same gap.
        double limit = d - 1e-12;
        bool Inside(int i, int j) => Math.Abs((double)i / n - (double)j / m) < limit;
        var row = new double[m + 1];
        for (int i = 0; i <= n; i++)
            for (int j = 0; j <= m; j++)
            {
                if (i == 0 && j == 0) { row[0] = 1; continue; }
                if (!Inside(i, j)) { row[j] = 0; continue; }
                double fromAbove = i > 0 ? row[j] * i / (i + j) : 0;
                double fromLeft = j > 0 ? row[j - 1] * j / (i + j) : 0;
                row[j] = fromAbove + fromLeft;
            }
        return 1 - row[m];
    }

    /// <summary>Kolmogorov's limit: P(K ≥ t) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²t²}, t = √(n·m/(n+m))·d.</summary>
    public static double AsymptoticPValue(int n, int m, double d)
    {
        double t = Math.Sqrt((double)n * m / (n + m)) * d;
        if (t < 0.2) return 1;
        double sum = 0;
        for (int k = 1; k <= 100; k++)
        {
            double term = Math.Exp(-2.0 * k * k * t * t);
            sum += (k % 2 == 1 ? 1 : -1) * term;
            if (term < 1e-17) break;
        }
        return 2 * sum;
    }
}
