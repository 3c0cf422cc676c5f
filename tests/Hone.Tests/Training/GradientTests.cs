using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Model;
using Hone.Training;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Training;

/// <summary>
/// Gradients of every trainable parameter (base weights for full fine-tuning; LoRA A/B; DoRA A/B/magnitude) against
/// float64 PyTorch autograd. Fixtures and script: tools/reference/make_gradient_fixtures.py.
/// </summary>
public unsafe class GradientTests(ITestOutputHelper output)
{
    static readonly WorkerPool Pool = new(2);

    static Dictionary<string, float[]> ReadFixture(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gradients", name + ".safetensors");
        using var st = SafetensorsFile.Open(path);
        return st.Tensors.ToDictionary(t => t.Name, t => new ReadOnlySpan<float>(st.TensorData(t), (int)t.ElementCount).ToArray());
    }

    void AssertGradient(string name, ReadOnlySpan<float> want, ReadOnlySpan<float> got, List<string> failures) =>
        CompareGradient(output, name, want, got, failures);

    /// <summary>max |got − want| ≤ 1e-4 · max |want| over each tensor (relative to the tensor's scale).</summary>
    internal static void CompareGradient(ITestOutputHelper output, string name, ReadOnlySpan<float> want, ReadOnlySpan<float> got, List<string> failures)
    {
        double scale = 0, worst = 0;
        for (int i = 0; i < want.Length; i++) scale = Math.Max(scale, Math.Abs(want[i]));
        for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(got[i] - want[i]));
        double relative = worst / Math.Max(scale, 1e-12);
        output.WriteLine($"{name,-45} scale {scale:E2} max rel err {relative:E2}");
        if (relative > 1e-4) failures.Add($"{name}: max relative error {relative:E2}");
    }

    (double Loss, TrainableLlama Model, LlamaWeights Weights) Run(string variant, TrainingSetup setup, Dictionary<string, float[]> f)
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath(variant));
        var weights = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var model = new TrainableLlama(weights, Pool, setup, maxBatch: 2, maxSequence: 12);
        foreach (var (target, adapter) in model.Adapters)
        {
            string hf = TensorNames.GgufToHuggingFace(target)!.Replace(".weight", "");
            f[$"value.{hf}.lora_A"].CopyTo(new Span<float>(adapter.A, adapter.Rank * adapter.In));
            f[$"value.{hf}.lora_B"].CopyTo(new Span<float>(adapter.B, adapter.Out * adapter.Rank));
            if (adapter is DoraAdapter dora)
            {
                f[$"value.{hf}.magnitude"].CopyTo(new Span<float>(dora.Magnitude, dora.Out));
                dora.Refresh(weights.Matrices().First(m => m.Name == target));
            }
        }
        var tokens = f["input.tokens"].Select(v => (int)v).ToArray();
        var targets = f["input.targets"].Select(v => (int)v).ToArray();
        int count = targets.Count(t => t >= 0);
        model.ZeroGradients();
        double loss = model.ForwardBackward(tokens, targets, 2, 12, 1f / count) / count;
        return (loss, model, weights);
    }

    [Theory]
    [InlineData("llama-hf-f32")]
    [InlineData("qwen2-hf-f32")]
    public void Full_fine_tuning_gradients_match_pytorch(string variant)
    {
        var f = ReadFixture($"{variant}-full");
        var (loss, model, weights) = Run(variant, new TrainingSetup(TrainingMethod.Full), f);
        using (weights) using (model)
        {
            Assert.Equal(f["loss"][0], loss, 4);
            var failures = new List<string>();
            foreach (var p in model.Parameters)
            {
                TensorNames.TryParseGguf(p.Name, out var parsed);
                string hf = TensorNames.HuggingFace(parsed.Role, parsed.Layer, parsed.Bias);
                AssertGradient(hf, f["grad." + hf], p.Gradients, failures);
            }
            Assert.Equal(f.Keys.Count(k => k.StartsWith("grad.")), model.Parameters.Count);
            Assert.Empty(failures);
        }
    }

    [Theory]
    [InlineData("llama-hf-f32", TrainingMethod.Lora, "lora")]
    [InlineData("qwen2-hf-f32", TrainingMethod.Dora, "dora")]
    public void Adapter_gradients_match_pytorch(string variant, TrainingMethod method, string fixture)
    {
        var f = ReadFixture($"{variant}-{fixture}");
        var setup = new TrainingSetup(method, new AdapterSettings(Rank: 4, Alpha: 8, Targets: ["all-linear"]));
        var (loss, model, weights) = Run(variant, setup, f);
        using (weights) using (model)
        {
            Assert.Equal(f["loss"][0], loss, 4);
            var failures = new List<string>();
            foreach (var p in model.Parameters)
            {
                var parts = p.Name.Split(':');
                string hf = TensorNames.GgufToHuggingFace(parts[0])!.Replace(".weight", "");
                AssertGradient($"{hf}.{parts[1]}", f[$"grad.{hf}.{parts[1]}"], p.Gradients, failures);
            }
            Assert.Empty(failures);
        }
    }
}

public unsafe class GradientConsistencyTests
{
    static readonly WorkerPool Pool = new(2);

    static (int[] Tokens, int[] Targets) Batch(int b, int t, int vocab, int seed)
    {
        var rng = new Random(seed);
        var tokens = Enumerable.Range(0, b * t).Select(_ => rng.Next(vocab)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        targets[3] = -1;
        return (tokens, targets);
    }

    [Theory]
    [InlineData(TrainingMethod.Full)]
    [InlineData(TrainingMethod.Lora)]
    public void Checkpointed_activations_give_bit_identical_gradients(TrainingMethod method)
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2-hf-f32"));
        var (tokens, targets) = Batch(2, 16, c.Config.VocabSize, 5);
        float[][] Gradients(bool checkpoint)
        {
            using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
            var setup = new TrainingSetup(method, new AdapterSettings(Rank: 4, Alpha: 8, Targets: ["all-linear"]), CheckpointActivations: checkpoint);
            using var m = new TrainableLlama(w, Pool, setup, 2, 16);
            foreach (var a in m.Adapters.Values) for (int i = 0; i < a.Out * a.Rank; i++) a.B[i] = 0.01f * (i % 7 - 3);
            m.ForwardBackward(tokens, targets, 2, 16, 0.1f);
            return m.Parameters.Select(p => p.Gradients.ToArray()).ToArray();
        }
        var plain = Gradients(false);
        var checkpointed = Gradients(true);
        Assert.Equal(plain.Length, checkpointed.Length);
        for (int i = 0; i < plain.Length; i++) Assert.Equal(plain[i], checkpointed[i]);
    }

    [Fact]
    public void Finite_differences_agree_with_backward_on_a_tiny_model()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        using var m = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full), 1, 8);
        var (tokens, targets) = Batch(1, 8, c.Config.VocabSize, 9);
        m.ZeroGradients();
        m.ForwardBackward(tokens, targets, 1, 8, 1f);
        var rng = new Random(3);
        int checkedCount = 0;
        foreach (var p in m.Parameters)
        {
            for (int probe = 0; probe < 3; probe++)
            {
                long i = rng.NextInt64(p.Count);
                float original = p.Value[i];
                const float h = 1e-2f;
                p.Value[i] = original + h; double plus = m.Forward(tokens, targets, 1, 8);
                p.Value[i] = original - h; double minus = m.Forward(tokens, targets, 1, 8);
                p.Value[i] = original;
                double numeric = (plus - minus) / (2 * h), analytic = p.Gradient[i];
                Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + 2e-2 * Math.Abs(analytic),
                    $"{p.Name}[{i}]: finite difference {numeric:G6}, backward {analytic:G6}");
                checkedCount++;
            }
        }
        Assert.True(checkedCount >= 3 * 20);
    }

    /// <summary>Sequences longer than one attention query block (64): the block-by-block backward must match
    /// finite differences, and the training forward the inference forward, across block boundaries.</summary>
    [Fact]
    public void Finite_differences_agree_with_backward_across_attention_query_blocks()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        const int t = 64 + 37; // two query blocks, the second partial
        var (tokens, targets) = Batch(1, t, c.Config.VocabSize, 4);
        // Only the last positions are scored, so their gradients must flow through attention to earlier blocks.
        for (int i = 0; i < t - 8; i++) targets[i] = -1;
        using var m = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full), 1, t);
        m.ZeroGradients();
        m.ForwardBackward(tokens, targets, 1, t, 1f / 8);
        var rng = new Random(5);
        foreach (var p in m.Parameters.Where(p => p.Name.Contains("self_attn") || p.Name.Contains("embed")))
            for (int probe = 0; probe < 4; probe++)
            {
                long i = rng.NextInt64(p.Count);
                float original = p.Value[i];
                const float h = 1e-2f;
                p.Value[i] = original + h; double plus = m.Forward(tokens, targets, 1, t) / 8;
                p.Value[i] = original - h; double minus = m.Forward(tokens, targets, 1, t) / 8;
                p.Value[i] = original;
                double numeric = (plus - minus) / (2 * h), analytic = p.Gradient[i];
                Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + 2e-2 * Math.Abs(analytic),
                    $"{p.Name}[{i}]: finite difference {numeric:G6}, backward {analytic:G6}");
            }
    }

    [Fact]
    public void Fresh_lora_leaves_logits_unchanged()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var (tokens, targets) = Batch(2, 10, c.Config.VocabSize, 2);
        using var plain = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Freeze, Freeze: new FreezeSettings(1)), 2, 10);
        using var lora = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Lora, new AdapterSettings(8, 16, Targets: ["all-linear"])), 2, 10);
        Assert.Equal(plain.Forward(tokens, targets, 2, 10), lora.Forward(tokens, targets, 2, 10), 10);
        Assert.All(lora.Adapters.Values, a => Assert.NotEqual(0, new Span<float>(a.A, a.Rank * a.In).ToArray().Count(v => v != 0)));
    }
}
