using System.Text.Json.Nodes;
using Hone.Transforms.Merging;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Transforms;

/// <summary>
/// The merge methods against float64 references written from the papers (tools/reference/make_merge_fixtures.py):
/// linear with and without normalize, slerp (with the nearly-parallel fallback), task arithmetic, TIES (where the
/// weighted election differs from a count), DARE at density 1, breadcrumbs, model stock, per-layer gradients. DARE's
/// random drop is unbiased: its mean over many seeds is the delta. The SVD re-factoring is the best rank-r approximation.
/// </summary>
public class MergeMethodTests(ITestOutputHelper output)
{
    /// <summary>Relative to the larger of the element's expected magnitude and the inputs' largest magnitude.</summary>
    const double Tolerance = 1e-6;

    static JsonNode Fixture() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "merging", "merge_methods.json")))!;

    public static IEnumerable<object[]> Cases() =>
        Fixture()["cases"]!.AsArray().Select(c => new object[] { c!["name"]!.GetValue<string>() });

    static float[] Floats(JsonNode? node) => node!.AsArray().Select(v => (float)v!.GetValue<double>()).ToArray();

    static Dictionary<string, double> Filled(IReadOnlyList<MergeParameter> specs, JsonNode? given)
    {
        var values = new Dictionary<string, double>();
        foreach (var spec in specs)
        {
            double? v = given?[spec.Name]?.GetValue<double>() ?? spec.Default;
            values[spec.Name] = v ?? throw new InvalidOperationException($"the fixture gives no {spec.Name}");
        }
        return values;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Method_matches_the_float64_reference(string name)
    {
        var c = Fixture()["cases"]!.AsArray().First(x => x!["name"]!.GetValue<string>() == name)!;
        var method = MergeMethods.Find(c["method"]!.GetValue<string>())!;
        int rows = c["rows"]!.GetValue<int>(), cols = c["cols"]!.GetValue<int>();
        var models = c["models"]!.AsArray().Select(Floats).ToList();
        var baseValues = c["base"] is JsonNode b ? Floats(b) : null;
        var expected = c["expected"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
        double scale = models.Concat(baseValues != null ? [baseValues] : []).SelectMany(x => x).Max(x => Math.Abs((double)x));
        var result = new float[rows * cols];
        method.Merge(new TensorMerge
        {
            Name = c["tensor"]!.GetValue<string>(), Rows = rows, Cols = cols, IsEmbedding = c["embedding"]!.GetValue<bool>(),
            Base = baseValues, Models = models,
            ModelParameters = c["model_parameters"]!.AsArray().Select(p => (IReadOnlyDictionary<string, double>)Filled(method.ModelParameters, p)).ToList(),
            Parameters = Filled(method.Parameters, c["parameters"]), Output = result, Scratch = () => new float[rows * cols], Seed = 1,
        });
        double worst = 0;
        for (int k = 0; k < expected.Length; k++)
        {
            double error = Math.Abs(result[k] - expected[k]) / Math.Max(Math.Abs(expected[k]), scale);
            worst = Math.Max(worst, error);
            Assert.True(error <= Tolerance, $"{name}: element {k}: expected {expected[k]}, got {result[k]} (relative error {error:G3})");
        }
        output.WriteLine($"{name}: worst relative error {worst:G3}");
    }

    [Fact]
    public void Gradients_interpolate_across_layers_like_mergekit()
    {
        foreach (var g in Fixture()["gradients"]!.AsArray())
        {
            var values = g!["values"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            int layers = g["layers"]!.GetValue<int>();
            var expected = g["expected"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            var setting = MergeSetting.Gradient(values);
            for (int l = 0; l < layers; l++)
                Assert.Equal(expected[l], setting.Evaluate("model.layers.0.mlp.up_proj.weight", MergeSetting.Position(l, layers, false))!.Value, 12);
        }
        // Before the layers (the embedding) at 0, after them (norm, head) at 1.
        Assert.Equal(0.2, MergeSetting.Gradient(0.2, 0.9).Evaluate("model.embed_tokens.weight", MergeSetting.Position(-1, 30, afterLayers: false))!.Value, 12);
        Assert.Equal(0.9, MergeSetting.Gradient(0.2, 0.9).Evaluate("lm_head.weight", MergeSetting.Position(-1, 30, afterLayers: true))!.Value, 12);
    }

    [Fact]
    public void Filters_pick_the_first_matching_condition()
    {
        var setting = MergeSetting.Filtered([("self_attn", MergeSetting.Gradient(0, 1)), ("mlp", MergeSetting.Of(0.25)), (null, MergeSetting.Of(0.5))]);
        Assert.Equal(0.5, setting.Evaluate("model.layers.2.self_attn.q_proj.weight", 0.5));
        Assert.Equal(0.25, setting.Evaluate("model.layers.2.mlp.down_proj.weight", 0.5));
        Assert.Equal(0.5, setting.Evaluate("model.norm.weight", 1));
        Assert.Null(MergeSetting.Filtered([("mlp", MergeSetting.Of(1))]).Evaluate("model.norm.weight", 1));
    }

    /// <summary>
    /// DARE keeps each element with probability p and divides by p, so the merged delta's expectation is the delta: over
    /// 400 seeds, each element's mean is within a few standard errors (σ = |δ|·√((1 − p)/p/S)) of its delta, and the
    /// mean squared z-score is near 1. Seeds are fixed, so the test is deterministic.
    /// </summary>
    [Theory]
    [InlineData("dare_linear", 0.3)]
    [InlineData("dare_ties", 0.6)]
    public void Dare_is_unbiased_over_seeds(string methodName, double density)
    {
        var method = MergeMethods.Find(methodName)!;
        const int n = 1000, seeds = 400;
        var rng = new Random(5);
        var baseValues = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        var delta = Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() + 0.1) * (rng.Next(2) * 2 - 1) * 0.01)).ToArray();
        var model = baseValues.Zip(delta, (b, d) => b + d).ToArray();
        var sum = new double[n];
        int kept = 0;
        for (int s = 0; s < seeds; s++)
        {
            var result = new float[n];
            method.Merge(new TensorMerge
            {
                Name = "model.layers.0.mlp.up_proj.weight", Rows = 1, Cols = n, Base = baseValues, Models = [(float[])model.Clone()],
                ModelParameters = [new Dictionary<string, double> { ["weight"] = 1, ["density"] = density }],
                Parameters = Filled(method.Parameters, null), Output = result, Seed = (ulong)s * 7919 + 3,
            });
            for (int k = 0; k < n; k++)
            {
                double merged = (double)result[k] - baseValues[k];
                // Each element is either dropped or the delta rescaled by 1/density.
                double exact = (double)model[k] - baseValues[k];
                Assert.True(Math.Abs(merged) < 1e-7 || Math.Abs(merged - exact / density) < 1e-6 * Math.Abs(exact / density) + 1e-7,
                    $"seed {s} element {k}: {merged} is neither 0 nor δ/p = {exact / density}");
                if (Math.Abs(merged) >= 1e-7) kept++;
                sum[k] += merged;
            }
        }
        double sumSquaredZ = 0, worstZ = 0;
        for (int k = 0; k < n; k++)
        {
            double exact = (double)model[k] - baseValues[k];
            double standardError = Math.Abs(exact) * Math.Sqrt((1 - density) / density / seeds);
            double z = (sum[k] / seeds - exact) / standardError;
            sumSquaredZ += z * z;
            worstZ = Math.Max(worstZ, Math.Abs(z));
        }
        double meanSquaredZ = sumSquaredZ / n, keptShare = (double)kept / n / seeds;
        output.WriteLine($"{methodName} p={density}: kept {keptShare:F4}, mean z² {meanSquaredZ:F3} (expected 1 ± {Math.Sqrt(2.0 / n):F3}), max |z| {worstZ:F2} over {n} elements");
        Assert.InRange(keptShare, density - 0.01, density + 0.01);
        Assert.InRange(meanSquaredZ, 1 - 5 * Math.Sqrt(2.0 / n), 1 + 5 * Math.Sqrt(2.0 / n));
        Assert.True(worstZ < 5, $"an element's mean is {worstZ:F2} standard errors from its delta");
    }

    [Fact]
    public void Dare_with_one_seed_gives_the_same_result_and_another_seed_another()
    {
        var method = MergeMethods.Find("dare_linear")!;
        float[] Run(ulong seed)
        {
            var result = new float[64];
            method.Merge(new TensorMerge
            {
                Name = "x", Rows = 8, Cols = 8, Base = new float[64], Models = [Enumerable.Range(1, 64).Select(i => (float)i).ToArray()],
                ModelParameters = [new Dictionary<string, double> { ["weight"] = 1, ["density"] = 0.5 }],
                Parameters = Filled(method.Parameters, null), Output = result, Seed = seed,
            });
            return result;
        }
        Assert.Equal(Run(11), Run(11));
        Assert.NotEqual(Run(11), Run(12));
    }

    [Fact]
    public void Svd_reconstructs_and_truncation_is_the_best_low_rank_approximation()
    {
        var rng = new Random(3);
        double[,] Random(int r, int c)
        {
            var m = new double[r, c];
            for (int i = 0; i < r; i++) for (int j = 0; j < c; j++) m[i, j] = rng.NextDouble() * 2 - 1;
            return m;
        }
        foreach (var (r, c) in new[] { (7, 4), (4, 7), (6, 6), (1, 5) })
        {
            var m = Random(r, c);
            var (u, s, v) = Svd.Decompose(m);
            for (int i = 0; i < r; i++)
                for (int j = 0; j < c; j++)
                {
                    double sum = 0;
                    for (int k = 0; k < s.Length; k++) sum += u[i, k] * s[k] * v[j, k];
                    Assert.True(Math.Abs(sum - m[i, j]) < 1e-12, $"[{r}, {c}] element ({i}, {j}): {sum} vs {m[i, j]}");
                }
            for (int k = 1; k < s.Length; k++) Assert.True(s[k - 1] >= s[k]);
            for (int a = 0; a < s.Length; a++)
                for (int b = 0; b < s.Length; b++)
                {
                    double dot = 0;
                    for (int i = 0; i < c; i++) dot += v[i, a] * v[i, b];
                    Assert.True(Math.Abs(dot - (a == b ? 1 : 0)) < 1e-12);
                }
        }
        // B[40, 6]·A[6, 30] of rank 6, truncated to 3: the error's squared Frobenius norm is the sum of the dropped σ².
        var bFactor = Random(40, 6);
        var aFactor = Random(6, 30);
        var product = Svd.Multiply(bFactor, aFactor);
        var (nb, na, singular) = LowRankProduct.Truncate(bFactor, aFactor, 3);
        var approx = Svd.Multiply(nb, na);
        double error = 0;
        for (int i = 0; i < 40; i++) for (int j = 0; j < 30; j++) error += Math.Pow(product[i, j] - approx[i, j], 2);
        double dropped = singular.Skip(3).Sum(x => x * x);
        Assert.True(Math.Abs(error - dropped) < 1e-9 * (1 + dropped), $"truncation error {error} vs dropped σ² {dropped}");
        // The product's singular values are those of the full matrix (checked by decomposing it directly).
        var (_, direct, _) = Svd.Decompose(product);
        for (int k = 0; k < 6; k++) Assert.True(Math.Abs(direct[k] - singular[k]) < 1e-9 * direct[0]);
        for (int k = 6; k < direct.Length; k++) Assert.True(direct[k] < 1e-9 * direct[0]);
        // At full rank the factors reproduce the product exactly.
        var (fb, fa, _) = LowRankProduct.Truncate(bFactor, aFactor, 6);
        var full = Svd.Multiply(fb, fa);
        for (int i = 0; i < 40; i++) for (int j = 0; j < 30; j++) Assert.True(Math.Abs(full[i, j] - product[i, j]) < 1e-10);
    }
}
