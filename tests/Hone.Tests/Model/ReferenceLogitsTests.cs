using System.Text.Json.Nodes;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>
/// Tiny random checkpoints (HF and GGUF layouts, F32 and BF16, llama, qwen2, Llama 3 rope scaling, and the mixtures of
/// experts mixtral and qwen2_moe) against float64
/// PyTorch logits. Fixtures and the script that made them: tools/reference/make_model_fixtures.py.
/// </summary>
public class ReferenceLogitsTests
{
    static readonly WorkerPool Pool = new(2);

    public static TheoryData<string> Variants => new()
    {
        "llama-hf-f32", "llama-hf-bf16", "llama-gguf-f32", "llama-gguf-bf16", "qwen2-hf-f32", "qwen2-gguf-f32", "llama3-scaled-hf-f32",
        "mixtral-hf-f32", "mixtral-hf-bf16", "mixtral-gguf-f32", "qwen2moe-hf-f32", "qwen2moe-norm-hf-f32", "qwen2moe-gguf-f32",
        "qwen3-hf-f32", "qwen3-gguf-f32", "qwen3moe-hf-f32", "qwen3moe-gguf-f32", "olmoe-hf-f32", "olmoe-gguf-f32",
    };

    public static string FixturePath(string variant)
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", variant);
        var gguf = Path.Combine(dir, "model.gguf");
        return File.Exists(gguf) ? gguf : dir;
    }

    /// <summary>Relative tolerance of batched (several-token) logits against the float64 reference. With the models'
    /// default precision (Fast) batched BF16 projections round activations to bf16 (WeightGemm, as llama.cpp does):
    /// about 2⁻⁹ relative per element, which these tiny random models amplify to at most 0.025 on logits of magnitude up
    /// to 3.9. Exact precision keeps them within the F32 tolerance (PrecisionTests).</summary>
    public static double BatchedLogitTolerance(string variant) => variant.EndsWith("-bf16") ? 3e-2 : 1e-4;

    public static (int[] Tokens, float[] Logits) Expected(string variant)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", variant, "expected.json")))!;
        return (json["tokens"]!.AsArray().Select(n => (int)n!).ToArray(), json["logits"]!.AsArray().Select(n => (float)(double)n!).ToArray());
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Batched_logits_match_float64_reference(string variant)
    {
        var (tokens, expected) = Expected(variant);
        using var checkpoint = Checkpoint.Open(FixturePath(variant));
        using var weights = LlamaWeights.Load(checkpoint);
        using var model = new LlamaModel(weights, Pool, maxContext: 64, maxBatch: 16);
        var logits = new float[expected.Length];
        model.Forward(tokens, logits, allLogits: true);
        TestData.AssertClose(expected, logits, BatchedLogitTolerance(variant), variant);
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Token_by_token_decode_matches_float64_reference(string variant)
    {
        var (tokens, expected) = Expected(variant);
        using var checkpoint = Checkpoint.Open(FixturePath(variant));
        using var weights = LlamaWeights.Load(checkpoint);
        using var model = new LlamaModel(weights, Pool, maxContext: 64);
        int v = checkpoint.Config.VocabSize;
        var logits = new float[v];
        for (int t = 0; t < tokens.Length; t++)
        {
            model.Forward([tokens[t]], logits);
            TestData.AssertClose(expected.AsSpan(t * v, v), logits, 1e-4, $"{variant} position {t}");
        }
    }

    [Theory]
    [InlineData("llama-hf-f32", "llama-gguf-f32")]
    [InlineData("llama-hf-bf16", "llama-gguf-bf16")]
    [InlineData("qwen2-hf-f32", "qwen2-gguf-f32")]
    [InlineData("mixtral-hf-f32", "mixtral-gguf-f32")]
    public void Hf_and_gguf_layouts_of_the_same_weights_give_the_same_logits(string hfVariant, string ggufVariant)
    {
        // The fixture script writes one family's weights in both layouts (q/k permuted in llama GGUFs).
        var (tokens, _) = Expected(hfVariant);
        var results = new List<float[]>();
        foreach (var variant in new[] { hfVariant, ggufVariant })
        {
            using var checkpoint = Checkpoint.Open(FixturePath(variant));
            using var weights = LlamaWeights.Load(checkpoint);
            using var model = new LlamaModel(weights, Pool, maxContext: 64);
            var logits = new float[tokens.Length * checkpoint.Config.VocabSize];
            model.Forward(tokens, logits, allLogits: true);
            results.Add(logits);
        }
        TestData.AssertClose(results[0], results[1], 1e-5, $"{hfVariant} vs {ggufVariant}");
    }

    [Fact]
    public void Rope_layout_comes_from_the_file_format()
    {
        using var hf = Checkpoint.Open(FixturePath("llama-hf-f32"));
        using var gguf = Checkpoint.Open(FixturePath("llama-gguf-f32"));
        using var qwen = Checkpoint.Open(FixturePath("qwen2-gguf-f32"));
        Assert.Equal(RopeLayout.Halves, hf.Config.RopeLayout);
        Assert.Equal(RopeLayout.AdjacentPairs, gguf.Config.RopeLayout);
        Assert.Equal(RopeLayout.Halves, qwen.Config.RopeLayout);
        Assert.True(qwen.Config.TiedEmbeddings);
        Assert.True(qwen.Config.AttentionBias);
    }
}
