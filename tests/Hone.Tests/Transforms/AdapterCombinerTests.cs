using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms.Merging;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>
/// `hone merge --adapter`: LoRA adapters combine into one plain PEFT adapter that Hone loads; concat and a full-rank SVD
/// reproduce Σ wᵢ·ΔWᵢ exactly, a lower-rank SVD is the best approximation of that rank (its error is the dropped
/// singular values' energy); DoRA is refused.
/// </summary>
public unsafe class AdapterCombinerTests
{
    static readonly string Tiny = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "llama-hf-f32");
    static readonly string Lora = Path.Combine(AppContext.BaseDirectory, "Fixtures", "adapters", "llama-hf-f32-lora");
    static readonly string Dora = Path.Combine(AppContext.BaseDirectory, "Fixtures", "adapters", "llama-hf-f32-dora");

    /// <summary>A second adapter, rank 2 (rsLoRA), on q, k and the MLP's up projection, with random A and B.</summary>
    static string Second(TempDirectory dir, LlamaWeights weights)
    {
        var rng = new Random(9);
        var adapters = weights.Matrices().Where(m => m.Name.Contains("attn_q") || m.Name.Contains("attn_k") || m.Name.Contains("ffn_up"))
            .Select(m =>
            {
                var a = new LoraAdapter(m.Name, 2, m.Cols, m.Rows, 3f, rsLora: true);
                for (long i = 0; i < 2L * m.Cols; i++) a.A[i] = (float)(rng.NextDouble() - 0.5);
                for (long i = 0; i < 2L * m.Rows; i++) a.B[i] = (float)(rng.NextDouble() - 0.5);
                return a;
            }).ToList();
        string path = dir.File("second");
        PeftAdapter.Save(path, adapters, new PeftAdapterConfig(2, 3f, 0, PeftTargets.Of(["q_proj", "k_proj", "up_proj"]), true, AdapterKinds.Lora, null));
        foreach (var a in adapters) a.Dispose();
        return path;
    }

    static Dictionary<string, float[]> Deltas(string adapter, LlamaWeights weights)
    {
        var loaded = PeftAdapter.Load(adapter, weights);
        try { return loaded.ToDictionary(p => p.Key, p => p.Value.MergedDelta(weights.Matrices().First(m => m.Name == p.Key))); }
        finally { foreach (var a in loaded.Values) a.Dispose(); }
    }

    [Theory]
    [InlineData(AdapterCombination.Concat, null)]
    [InlineData(AdapterCombination.Svd, 6)]
    public void Concat_and_full_rank_svd_reproduce_the_weighted_sum_of_deltas(AdapterCombination combination, int? rank)
    {
        using var dir = new TempDirectory();
        using var c = Checkpoint.Open(Tiny);
        using var weights = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        string second = Second(dir, weights);
        var report = AdapterCombiner.Combine(new AdapterCombineOptions([Lora, second], dir.File("combined"), [0.7, -0.5], combination, rank));
        Assert.Equal(6, report.Rank);
        var first = Deltas(Lora, weights);
        var other = Deltas(second, weights);
        var combined = Deltas(dir.File("combined"), weights);
        Assert.Equal(first.Keys.Union(other.Keys).Order(), combined.Keys.Order());
        foreach (var (target, delta) in combined)
        {
            var expected = new double[delta.Length];
            if (first.TryGetValue(target, out var d1)) for (int i = 0; i < d1.Length; i++) expected[i] += 0.7 * d1[i];
            if (other.TryGetValue(target, out var d2)) for (int i = 0; i < d2.Length; i++) expected[i] -= 0.5 * d2[i];
            double scale = expected.Max(Math.Abs);
            for (int i = 0; i < delta.Length; i++)
                Assert.True(Math.Abs(delta[i] - expected[i]) <= 1e-5 * scale, $"{target} element {i}: expected {expected[i]}, got {delta[i]}");
        }
        // The combined adapter runs on the model.
        var logits = ModelLogits.Of(Tiny, [1, 4, 7, 10], dir.File("combined"));
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));
    }

    [Fact]
    public void Lower_rank_svd_is_the_best_approximation_of_that_rank()
    {
        using var dir = new TempDirectory();
        using var c = Checkpoint.Open(Tiny);
        using var weights = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        string second = Second(dir, weights);
        var report = AdapterCombiner.Combine(new AdapterCombineOptions([Lora, second], dir.File("r2"), [1, 1], AdapterCombination.Svd, 2));
        Assert.Equal(2, report.Rank);
        Assert.InRange(report.RetainedEnergy!.Value, 0, 1);
        var first = Deltas(Lora, weights);
        var other = Deltas(second, weights);
        var combined = Deltas(dir.File("r2"), weights);
        foreach (var (target, delta) in combined)
        {
            var w = weights.Matrices().First(m => m.Name == target);
            var full = new double[w.Rows, w.Cols];
            for (int i = 0; i < w.Rows; i++)
                for (int j = 0; j < w.Cols; j++)
                    full[i, j] = (first.TryGetValue(target, out var d1) ? d1[i * w.Cols + j] : 0) + (other.TryGetValue(target, out var d2) ? d2[i * w.Cols + j] : 0);
            var (_, singular, _) = Svd.Decompose(full);
            double dropped = singular.Skip(2).Sum(s => s * s), error = 0;
            for (int i = 0; i < w.Rows; i++)
                for (int j = 0; j < w.Cols; j++) error += Math.Pow(full[i, j] - delta[i * w.Cols + j], 2);
            Assert.True(Math.Abs(error - dropped) <= 1e-4 * singular.Sum(s => s * s) + 1e-12, $"{target}: squared error {error}, dropped σ² {dropped}");
        }
    }

    [Fact]
    public void Dora_adapters_and_mismatched_weights_are_refused()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<ArgumentException>(() => AdapterCombiner.Combine(new AdapterCombineOptions([Lora, Dora], dir.File("out"))));
        Assert.Contains(Dora, e.Message);
        Assert.Contains("only plain LoRA", e.Message);
        var w = Assert.Throws<ArgumentException>(() => AdapterCombiner.Combine(new AdapterCombineOptions([Lora, Lora], dir.File("out"), [1])));
        Assert.Contains("1 weights for 2 adapters", w.Message);
        Assert.False(Directory.Exists(dir.File("out")));
    }
}
