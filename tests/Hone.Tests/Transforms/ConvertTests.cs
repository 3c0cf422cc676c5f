using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Transforms;

public unsafe class ConvertTests
{
    static readonly WorkerPool Pool = new(2);

    static float[] Logits(string path, int[] tokens) => ModelLogits.Of(path, tokens);

    static byte[] TensorBytes(string ggufPath, string name)
    {
        using var g = GgufFile.Open(ggufPath);
        var t = g.Tensors.Single(x => x.Name == name);
        return new ReadOnlySpan<byte>(g.TensorData(t), (int)t.ByteLength).ToArray();
    }

    [Theory]
    [InlineData("llama-hf-f32", "llama-gguf-f32")]
    [InlineData("llama-hf-bf16", "llama-gguf-bf16")]
    [InlineData("qwen2-hf-f32", "qwen2-gguf-f32")]
    public void Hf_to_gguf_lays_out_q_and_k_as_llama_cpp_converter_does(string hfVariant, string referenceGguf)
    {
        // The reference GGUF was written by tools/reference/make_model_fixtures.py with convert_hf_to_gguf.py's permutation.
        using var dir = new TempDirectory();
        var output = dir.File("out.gguf");
        var report = ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath(hfVariant), output));
        Assert.InRange(report.MaxLogitDifference!.Value, 0, 1e-4); // same weights; only the rope pairing order differs in rounding
        var reference = ReferenceLogitsTests.FixturePath(referenceGguf);
        using var g = GgufFile.Open(reference);
        foreach (var t in g.Tensors)
            Assert.True(TensorBytes(reference, t.Name).AsSpan().SequenceEqual(TensorBytes(output, t.Name)), $"{t.Name} differs from the reference layout");
        var (tokens, expected) = ReferenceLogitsTests.Expected(hfVariant);
        TestData.AssertClose(expected, Logits(output, tokens), ReferenceLogitsTests.BatchedLogitTolerance(hfVariant), "converted GGUF vs float64 reference");
    }

    [Theory]
    [InlineData("llama-gguf-f32")]
    [InlineData("llama-gguf-bf16")]
    [InlineData("qwen2-gguf-f32")]
    public void Gguf_to_hf_round_trips_to_the_same_logits(string variant)
    {
        using var dir = new TempDirectory();
        var hf = Path.Combine(dir.Path, "hf");
        ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath(variant), hf));
        var back = dir.File("back.gguf");
        ModelConverter.Convert(new ConvertOptions(hf, back));
        var source = ReferenceLogitsTests.FixturePath(variant);
        using var g = GgufFile.Open(source);
        foreach (var t in g.Tensors)
            Assert.True(TensorBytes(source, t.Name).AsSpan().SequenceEqual(TensorBytes(back, t.Name)), $"{t.Name} changed in the round trip");
        var (tokens, expected) = ReferenceLogitsTests.Expected(variant);
        TestData.AssertClose(expected, Logits(hf, tokens), ReferenceLogitsTests.BatchedLogitTolerance(variant), "HF directory written from GGUF");
    }

    [Fact]
    public void Requantizing_to_bf16_stays_close_and_refuses_quantized_safetensors()
    {
        using var dir = new TempDirectory();
        var output = dir.File("bf16.gguf");
        var report = ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-hf-f32"), output, TensorType.BF16));
        // bf16 weights, and (in the batched check) bf16-rounded activations: 0.051 measured on this tiny model.
        Assert.InRange(report.MaxLogitDifference!.Value, 1e-6, 0.1);
        using (var c = Checkpoint.Open(output))
            Assert.All(c.Tensors.Where(t => t.Shape.Length == 2), t => Assert.Equal(TensorType.BF16, t.Type));
        Assert.Throws<ArgumentException>(() =>
            ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-hf-f32"), Path.Combine(dir.Path, "q"), TensorType.Q8_0)));
    }

    [Theory]
    // Logits here have a standard deviation of about 0.8; each format's error grows 4× per bit removed.
    [InlineData("q8_0", 0.1)]
    [InlineData("q6_k", 0.4)]
    [InlineData("q4_0", 1.5)]
    [InlineData("q4_k", 1.5)]
    [InlineData("hq4_o", 1.5)]
    [InlineData("hq3_o", 3.0)]
    public void Quantized_gguf_loads_and_stays_close_to_f32(string typeName, double tolerance)
    {
        // Rows of 256 so every k-quant block fits.
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = 128, HiddenSize = 256, IntermediateSize = 512, Layers = 2, Heads = 4, KvHeads = 2,
            HeadDim = 64, RotaryDims = 64, MaxPositions = 64,
        };
        using var dir = new TempDirectory();
        var source = Path.Combine(dir.Path, "f32");
        using (var w = LlamaWeights.CreateRandom(config, TensorType.F32, 5, std: 0.05f, embeddingStd: 0.05f))
            ModelConverter.Write(w, null, source, TensorType.F32, new List<string>());
        var type = TensorTypes.Parse(typeName);
        var output = dir.File($"{typeName}.gguf");
        var report = ModelConverter.Convert(new ConvertOptions(source, output, type));
        Assert.InRange(report.MaxLogitDifference!.Value, 1e-7, tolerance);
        using var c = Checkpoint.Open(output);
        Assert.All(c.Tensors.Where(t => t.Shape.Length == 2), t => Assert.Equal(type, t.Type));
        // Prefill (GEMM over dequantized panels, fp32 activations) and decode (integer dot products with activations
        // quantized to 8 bits, as llama.cpp does) differ by about one more 8-bit rounding.
        using var weights = LlamaWeights.Load(c);
        using var model = new LlamaModel(weights, Pool, maxContext: 32);
        var tokens = Enumerable.Range(0, 12).Select(i => (i * 37 + 1) % 128).ToArray();
        var all = new float[tokens.Length * 128];
        model.Forward(tokens, all, allLogits: true);
        model.Reset();
        var one = new float[128];
        for (int t = 0; t < tokens.Length; t++)
        {
            model.Forward([tokens[t]], one);
            var magnitude = Enumerable.Repeat((float)tolerance, 128).ToArray();
            TestData.AssertClose(all.AsSpan(t * 128, 128), one, magnitude, 1.0, 0, $"{typeName} position {t}");
        }
    }

    [Fact]
    public void Cli_convert_writes_a_gguf_that_inspects_and_loads()
    {
        using var dir = new TempDirectory();
        var output = dir.File("cli.gguf");
        var r = HoneCli.Run("convert", ReferenceLogitsTests.FixturePath("llama-hf-f32"), "--out", output, "--type", "f16");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("verified: max |logit difference|", r.Stdout);
        var inspect = HoneCli.Run("inspect", output, "--check", "--json");
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        Assert.Contains("\"architecture\": \"llama\"", inspect.Stdout);
        Assert.Contains("tokenizer.ggml.model", inspect.Stdout);
    }
}
