using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>Adapters written by other tools (PEFT layout, fixtures from tools/reference/make_peft_fixtures.py),
/// merging, and llama.cpp LoRA GGUF export/import.</summary>
public class AdapterTests
{

    static string AdapterPath(string kind) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "adapters", $"llama-hf-f32-{kind}");

    static (int[] Tokens, float[] Logits) Expected(string kind)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(AdapterPath(kind), "expected.json")))!;
        return (json["tokens"]!.AsArray().Select(n => (int)n!).ToArray(), json["logits"]!.AsArray().Select(n => (float)(double)n!).ToArray());
    }

    static float[] Logits(string model, string? adapter, int[] tokens) => ModelLogits.Of(model, tokens, adapter);

    [Theory]
    [InlineData("lora")]
    [InlineData("dora")]
    public void Peft_adapters_from_other_tools_give_the_reference_logits(string kind)
    {
        var (tokens, expected) = Expected(kind);
        TestData.AssertClose(expected, Logits(ReferenceLogitsTests.FixturePath("llama-hf-f32"), AdapterPath(kind), tokens), 1e-4, kind);
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("dora")]
    public void Merged_and_unmerged_give_the_same_logits(string kind)
    {
        using var dir = new TempDirectory();
        var merged = Path.Combine(dir.Path, "merged");
        var report = AdapterMerger.Merge(new MergeOptions(ReferenceLogitsTests.FixturePath("llama-hf-f32"), AdapterPath(kind), merged));
        Assert.True(report.MaxLogitDifference < 1e-4, $"{report.MaxLogitDifference}");
        var (tokens, expected) = Expected(kind);
        TestData.AssertClose(expected, Logits(merged, null, tokens), 1e-4, $"merged {kind}");
    }

    [Fact]
    public void Lora_exports_to_llama_cpp_gguf_and_reads_back_on_either_layout()
    {
        using var dir = new TempDirectory();
        var adapterGguf = dir.File("adapter.gguf");
        var notes = new List<string>();
        AdapterGguf.Write(AdapterPath("lora"), ReferenceLogitsTests.FixturePath("llama-hf-f32"), adapterGguf, notes);
        using (var g = GgufFile.Open(adapterGguf))
        {
            Assert.Equal("adapter", g.GetString("general.type"));
            Assert.Equal("lora", g.GetString("adapter.type"));
            Assert.Equal(GgufValueType.Float32, g.Get("adapter.lora.alpha")!.Type);
            Assert.Equal(8.0, g.GetNumber("adapter.lora.alpha"));
            var a = g.Tensors.Single(t => t.Name == "blk.0.attn_q.weight.lora_a");
            Assert.Equal(new long[] { 32, 4 }, a.Dimensions); // ggml order: [in, r]
        }
        var (tokens, expected) = Expected("lora");
        // On the HF base (rotate-half layout) and on the GGUF base (adjacent pairs, q/k permuted) alike.
        TestData.AssertClose(expected, Logits(ReferenceLogitsTests.FixturePath("llama-hf-f32"), adapterGguf, tokens), 1e-4, "HF base + GGUF adapter");
        var baseGguf = dir.File("base.gguf");
        ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-hf-f32"), baseGguf, Verify: false));
        TestData.AssertClose(expected, Logits(baseGguf, adapterGguf, tokens), 1e-4, "GGUF base + GGUF adapter");
        Assert.Throws<ArgumentException>(() => AdapterGguf.Write(AdapterPath("dora"), ReferenceLogitsTests.FixturePath("llama-hf-f32"), dir.File("d.gguf"), notes));
    }

    [Fact]
    public void Cancelled_llama_cpp_export_leaves_nothing()
    {
        // `hone convert` on an adapter directory handles Ctrl+C/SIGTERM through the token: the export must stop on it,
        // or the first signal is swallowed and the export runs on.
        using var dir = new TempDirectory();
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.Throws<OperationCanceledException>(() =>
            AdapterGguf.Write(AdapterPath("lora"), ReferenceLogitsTests.FixturePath("llama-hf-f32"), dir.File("adapter.gguf"), new List<string>(), cancel.Token));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void Adapter_with_a_wrong_shape_is_named()
    {
        using var dir = new TempDirectory();
        var wrong = Path.Combine(dir.Path, "wrong");
        Directory.CreateDirectory(wrong);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(AdapterPath("lora"), "adapter_config.json")))!;
        config["r"] = 5;
        File.WriteAllText(Path.Combine(wrong, "adapter_config.json"), config.ToJsonString());
        File.Copy(Path.Combine(AdapterPath("lora"), "adapter_model.safetensors"), Path.Combine(wrong, "adapter_model.safetensors"));
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        using var w = LlamaWeights.Load(c);
        var e = Assert.Throws<ModelFormatException>(() => PeftAdapter.Load(wrong, w));
        Assert.Matches(@"shape \[4, \d+\], expected \[5, \d+\]", e.Message);
        Assert.Contains("lora_A", e.Message);
    }
}
