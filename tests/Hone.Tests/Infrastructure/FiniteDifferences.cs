using Hone.Training;
using Xunit;

namespace Hone.Tests.Infrastructure;

/// <summary>Gradient checks through a whole model: central differences of a loss at random entries of every parameter,
/// against the gradient a backward pass left in each parameter's gradient buffer.</summary>
public static unsafe class FiniteDifferences
{
    /// <summary>For each parameter, <paramref name="probesPerParameter"/> entries drawn from Random(<paramref name="seed"/>):
    /// (loss(x + h) − loss(x − h)) / 2h must be within <paramref name="absolute"/> + <paramref name="relative"/>·|backward|.
    /// Every value is restored; returns the number of entries probed.</summary>
    public static int CheckParameters(IEnumerable<Parameter> parameters, Func<double> loss, string label, int seed, int probesPerParameter,
        float h = 1e-2f, double absolute = 2e-3, double relative = 2e-2)
    {
        var rng = new Random(seed);
        int probes = 0;
        foreach (var p in parameters)
            for (int probe = 0; probe < probesPerParameter; probe++)
            {
                long i = rng.NextInt64(p.Count);
                float original = p.Value[i];
                p.Value[i] = original + h; double plus = loss();
                p.Value[i] = original - h; double minus = loss();
                p.Value[i] = original;
                double numeric = (plus - minus) / (2 * h), analytic = p.Gradient[i];
                Assert.True(Math.Abs(numeric - analytic) <= absolute + relative * Math.Abs(analytic),
                    $"{label} {p.Name}[{i}]: finite difference {numeric:G6}, backward {analytic:G6}");
                probes++;
            }
        return probes;
    }
}
