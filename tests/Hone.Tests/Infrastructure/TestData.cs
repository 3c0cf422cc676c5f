namespace Hone.Tests.Infrastructure;

/// <summary>Deterministic random test data and magnitude-scaled comparisons.</summary>
public static class TestData
{
    public static float[] Random(int count, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var a = new float[count];
        for (int i = 0; i < count; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    /// <summary>Assert |actual − expected| ≤ relative·magnitude + absolute element-wise, where magnitude is the
    /// per-element scale of the computation (e.g. Σ|a||b| for a dot product).</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, ReadOnlySpan<float> magnitude,
        double relative, double absolute = 1e-30, string? what = null)
    {
        if (expected.Length != actual.Length) throw new Xunit.Sdk.XunitException($"{what}: length {actual.Length} != {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = relative * magnitude[i] + absolute;
            if (!(Math.Abs(actual[i] - expected[i]) <= tol))
                throw new Xunit.Sdk.XunitException($"{what}: element {i}: expected {expected[i]}, got {actual[i]} (tolerance {tol})");
        }
    }

    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double relative, string? what = null)
    {
        var mag = new float[expected.Length];
        for (int i = 0; i < mag.Length; i++) mag[i] = Math.Max(1f, Math.Abs(expected[i]));
        AssertClose(expected, actual, mag, relative, 0, what);
    }
}
