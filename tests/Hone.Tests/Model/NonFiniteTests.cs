using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Formats;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>
/// Non-finite numbers never pass for results: an adapter whose scale overflows a float is refused at load, NaN in its
/// tensors too, and logits that come out NaN or infinite (a scale that fits a float but overflows the activations) are an
/// error naming the layer where they first appear and the adapter applied there — in sampling, perplexity,
/// log-likelihoods and merge verification. Every case damages a copy of the PEFT fixture adapter.
/// </summary>
public class NonFiniteTests
{
    static readonly WorkerPool Pool = new(2);
    static string Model => ReferenceLogitsTests.FixturePath("llama-hf-f32");
    static string FixtureAdapter => Path.Combine(AppContext.BaseDirectory, "Fixtures", "adapters", "llama-hf-f32-lora");

    /// <summary>A copy of the fixture LoRA adapter with its config changed by <paramref name="damage"/>.</summary>
    static string DamagedAdapter(TempDirectory dir, Action<JsonObject> damage)
    {
        var path = Path.Combine(dir.Path, "adapter");
        Directory.CreateDirectory(path);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureAdapter, "adapter_config.json")))!.AsObject();
        damage(config);
        File.WriteAllText(Path.Combine(path, "adapter_config.json"), config.ToJsonString());
        File.Copy(Path.Combine(FixtureAdapter, "adapter_model.safetensors"), Path.Combine(path, "adapter_model.safetensors"));
        return path;
    }

    /// <summary>lora_alpha 1e20 with r = 4: the scale 2.5e19 is a finite float, but the adapted activations overflow.</summary>
    static string OverflowingAdapter(TempDirectory dir) => DamagedAdapter(dir, c => c["lora_alpha"] = 1e20);

    /// <summary>Writes <paramref name="value"/> over element <paramref name="element"/> of an F32 tensor in a safetensors file.</summary>
    internal static void Poke(string file, string tensor, int element, float value)
    {
        var bytes = File.ReadAllBytes(file);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength))!;
        Assert.Equal("F32", (string)header[tensor]!["dtype"]!);
        long begin = (long)header[tensor]!["data_offsets"]![0]!;
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)(8 + headerLength + begin + 4L * element)), value);
        File.WriteAllBytes(file, bytes);
    }

    sealed class Loaded : IDisposable
    {
        public readonly Checkpoint Checkpoint;
        public readonly LlamaWeights Weights;
        public readonly Dictionary<string, LoraAdapter> Adapters;
        public readonly LlamaModel Model;

        public Loaded(string model, string adapter)
        {
            Checkpoint = Checkpoint.Open(model);
            Weights = LlamaWeights.Load(Checkpoint);
            Adapters = PeftAdapter.Load(adapter, Weights);
            Model = new LlamaModel(Weights, Pool, maxContext: 64);
            foreach (var (t, a) in Adapters) Model.Adapters[t] = a;
        }

        public void Dispose()
        {
            Model.Dispose();
            foreach (var a in Adapters.Values) a.Dispose();
            Weights.Dispose();
            Checkpoint.Dispose();
        }
    }

    static readonly int[] Tokens = [1, 17, 42, 5, 88, 23, 9, 61];

    [Fact]
    public void An_alpha_that_overflows_a_float_is_refused_at_load_naming_the_config_key()
    {
        using var dir = new TempDirectory();
        var adapter = DamagedAdapter(dir, c => c["lora_alpha"] = 1e39);
        using var c = Checkpoint.Open(Model);
        using var w = LlamaWeights.Load(c);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(adapter, w));
        Assert.Contains(Path.Combine(adapter, "adapter_config.json"), e.Message);
        Assert.Contains("lora_alpha", e.Message);
        Assert.Contains("not a finite", e.Message);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void A_non_finite_adapter_weight_is_refused_at_load_naming_file_and_tensor(float value)
    {
        using var dir = new TempDirectory();
        var adapter = DamagedAdapter(dir, _ => { });
        const string tensor = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
        Poke(Path.Combine(adapter, "adapter_model.safetensors"), tensor, 3, value);
        using var c = Checkpoint.Open(Model);
        using var w = LlamaWeights.Load(c);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(adapter, w));
        Assert.Contains("adapter_model.safetensors", e.Message);
        Assert.Contains(tensor, e.Message);
        Assert.Contains("element 3", e.Message);
    }

    [Fact]
    public void Overflowing_logits_are_traced_to_the_layer_and_the_adapter()
    {
        using var dir = new TempDirectory();
        var adapter = OverflowingAdapter(dir);
        using var m = new Loaded(Model, adapter);
        var logits = new float[Tokens.Length * m.Weights.Config.VocabSize];
        m.Model.Forward(Tokens, logits, allLogits: true);
        Assert.Contains(logits, x => !float.IsFinite(x)); // the damage does reach the logits
        var e = m.Model.DiagnoseNonFinite(Tokens);
        Assert.Equal(0, e.Layer);
        Assert.NotEmpty(e.Adapters);
        Assert.Contains("layer 0", e.Message);
        Assert.Contains(Path.Combine(adapter, "adapter_model.safetensors"), e.Message);
        Assert.Contains("scale 2.5E+19", e.Message);
        Assert.Equal(0, m.Model.Position); // the diagnosis leaves the cache empty
    }

    [Fact]
    public void The_healthy_fixture_adapter_gives_finite_logits_and_no_diagnosis()
    {
        using var m = new Loaded(Model, FixtureAdapter);
        var e = m.Model.DiagnoseNonFinite(Tokens);
        Assert.Null(e.Layer);
        Assert.Contains("found none", e.Message);
    }

    [Fact]
    public void The_sampler_refuses_non_finite_logits_instead_of_picking_token_0()
    {
        float[] good = [0.5f, 2f, -1f, 0.25f];
        Assert.Equal(1, new Sampler(SamplerOptions.Greedy).Sample(good));
        foreach (var bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            float[] logits = [0.5f, 2f, bad, 0.25f];
            Assert.Throws<NonFiniteException>(() => new Sampler(SamplerOptions.Greedy).Sample(logits));
            Assert.Throws<NonFiniteException>(() => new Sampler(new SamplerOptions(Temperature: 0.8f, Seed: 3)).Sample(logits));
        }
    }

    [Fact]
    public void Perplexity_with_an_overflowing_adapter_fails_naming_the_adapter()
    {
        using var dir = new TempDirectory();
        var adapter = OverflowingAdapter(dir);
        using var m = new Loaded(Model, adapter);
        var e = Assert.Throws<NonFiniteException>(() =>
            Perplexity.Compute(m.Model, Tokens, bos: 1, (_, count) => count, new PerplexityOptions(Context: 8)));
        Assert.Contains("window are not finite", e.Message);
        Assert.Contains(Path.Combine(adapter, "adapter_model.safetensors"), e.Message);
        Assert.Equal(0, e.Layer);
    }

    [Fact]
    public void Log_likelihoods_with_an_overflowing_adapter_fail_naming_the_adapter()
    {
        using var dir = new TempDirectory();
        var adapter = OverflowingAdapter(dir);
        using var m = new Loaded(Model, adapter);
        var scorer = new LogLikelihoodScorer(m.Model);
        var e = Assert.Throws<NonFiniteException>(() => scorer.Score(Tokens[..5], [[7, 8, 9], [10]]));
        Assert.Contains(Path.Combine(adapter, "adapter_model.safetensors"), e.Message);
        Assert.Equal(0, e.Layer);
    }

    [Fact]
    public void Merging_an_overflowing_adapter_fails_and_writes_nothing()
    {
        using var dir = new TempDirectory();
        var adapter = OverflowingAdapter(dir);
        var output = dir.File("merged");
        var e = Assert.Throws<InvalidOperationException>(() => AdapterMerger.Merge(new MergeOptions(Model, adapter, output)));
        Assert.DoesNotContain("at most NaN", e.Message);
        Assert.Contains("not finite", e.Message);
        Assert.Contains("layer 0", e.Message);
        Assert.Contains(Path.Combine(adapter, "adapter_model.safetensors"), e.Message);
        Assert.Contains("nothing was written", e.Message);
        Assert.False(Directory.Exists(output) || File.Exists(output));
    }
}
