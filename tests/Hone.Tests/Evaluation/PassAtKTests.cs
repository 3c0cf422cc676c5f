using System.Numerics;
using Hone.Evaluation;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>pass@k and pass^k against exact rational arithmetic on binomial coefficients (BigInteger), for every
/// n, c, k up to 20, and the standard errors against hand computations.</summary>
public class PassAtKTests
{
    static BigInteger Choose(int n, int k)
    {
        if (k < 0 || k > n) return BigInteger.Zero;
        BigInteger r = BigInteger.One;
        for (int i = 1; i <= k; i++) r = r * (n - k + i) / i; // exact at every step: r = C(n−k+i, i)
        return r;
    }

    /// <summary>numerator/denominator as a double, exactly rounded enough for values far below 2^53.</summary>
    static double Ratio(BigInteger numerator, BigInteger denominator) => (double)numerator / (double)denominator;

    [Fact]
    public void Pass_at_k_and_pass_hat_k_equal_the_exact_binomial_formulas_for_all_n_c_k_up_to_20()
    {
        int cases = 0;
        for (int n = 1; n <= 20; n++)
            for (int c = 0; c <= n; c++)
                for (int k = 1; k <= n; k++)
                {
                    var total = Choose(n, k);
                    double passAt = Ratio(total - Choose(n - c, k), total);
                    double passHat = Ratio(Choose(c, k), total);
                    double gotAt = PassAtK.PassAt(n, c, k), gotHat = PassAtK.PassHat(n, c, k);
                    Assert.True(Math.Abs(gotAt - passAt) <= 1e-12, $"pass@{k} n={n} c={c}: {gotAt} vs exact {passAt}");
                    Assert.True(Math.Abs(gotHat - passHat) <= 1e-12, $"pass^{k} n={n} c={c}: {gotHat} vs exact {passHat}");
                    cases++;
                }
        Assert.Equal(Enumerable.Range(1, 20).Sum(n => (n + 1) * n), cases);
    }

    [Theory]
    [InlineData(10, 3, 1, 0.3, 0.3)]      // k = 1: both are c/n
    [InlineData(5, 5, 5, 1.0, 1.0)]       // all pass
    [InlineData(5, 0, 3, 0.0, 0.0)]       // none pass
    [InlineData(4, 2, 2, 5.0 / 6, 1.0 / 6)] // 1 − C(2,2)/C(4,2) = 5/6; C(2,2)/C(4,2) = 1/6
    [InlineData(6, 3, 4, 1.0, 0.0)]       // n − c < k: some draw must pass; c < k: not all can
    public void Hand_computed_values(int n, int c, int k, double passAt, double passHat)
    {
        Assert.Equal(passAt, PassAtK.PassAt(n, c, k), 12);
        Assert.Equal(passHat, PassAtK.PassHat(n, c, k), 12);
    }

    [Fact]
    public void Large_n_stays_finite_and_matches_the_exact_value()
    {
        // C(1000, 100) overflows a double; the products never form it.
        int n = 1000, c = 37, k = 100;
        var exact = Ratio(Choose(n, k) - Choose(n - c, k), Choose(n, k));
        Assert.Equal(exact, PassAtK.PassAt(n, c, k), 10);
        Assert.Equal(0.0, PassAtK.PassHat(n, c, k));
        Assert.Equal(Ratio(Choose(60, 3), Choose(n, 3)), PassAtK.PassHat(n, 60, 3), 14);
    }

    [Theory]
    [InlineData(5, 6, 1)]
    [InlineData(5, -1, 1)]
    [InlineData(5, 2, 0)]
    [InlineData(5, 2, 6)]
    [InlineData(0, 0, 1)]
    public void Invalid_arguments_are_refused(int n, int c, int k)
    {
        Assert.Throws<ArgumentException>(() => PassAtK.PassAt(n, c, k));
        Assert.Throws<ArgumentException>(() => PassAtK.PassHat(n, c, k));
    }

    [Fact]
    public void Standard_errors_match_hand_computations()
    {
        // 0/1 scores: 3 of 4 → p = 0.75, sqrt(0.75·0.25/3) = 0.25
        double[] ones = [1, 1, 0, 1];
        Assert.Equal(0.25, EvalStatistics.StandardErrorOfMean(ones)!.Value, 12);
        Assert.Equal(0.25, EvalStatistics.BinomialStandardError(0.75, 4)!.Value, 12);
        // mean 2.5 of 1..4, sample variance 5/3, SE = sqrt(5/3/4)
        Assert.Equal(Math.Sqrt(5.0 / 12), EvalStatistics.StandardErrorOfMean([1, 2, 3, 4])!.Value, 12);
        Assert.Null(EvalStatistics.StandardErrorOfMean([0.5]));
        // Ratio of sums: r = (2+4+9)/(1+2+3) = 2.5; residuals 2−2.5, 4−5, 9−7.5 = −0.5, −1, 1.5;
        // Σ² = 3.5; sqrt(3.5/2/3) / mean(d)=2
        Assert.Equal(Math.Sqrt(3.5 / 6) / 2, EvalStatistics.RatioStandardError([2, 4, 9], [1, 2, 3])!.Value, 12);
        Assert.Null(EvalStatistics.RatioStandardError([2], [1]));
    }
}
