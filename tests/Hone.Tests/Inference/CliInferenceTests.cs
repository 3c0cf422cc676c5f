using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Inference;

/// <summary>The real stories260K model through the `hone` command: greedy generation, tokenization, perplexity
/// under llama.cpp's protocol, and chat.</summary>
public class CliInferenceTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    [SkippableFact]
    public void Greedy_generation_from_bos_equals_the_recorded_256_tokens()
    {
        var model = SharedData.Require(Model);
        var oracle = JsonNode.Parse(File.ReadAllText(SharedData.Require("models/stories260K/stories260K.greedy-from-bos.derived.json")))!;
        var r = HoneCli.Run("generate", model, "--temperature", "0", "--max-tokens", "256", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(oracle["generated_token_ids"]!.AsArray().Select(n => (int)n!), json["ids"]!.AsArray().Select(n => (int)n!));
        Assert.Equal((string)oracle["decoded_text"]!, ((string)json["text"]!).TrimEnd());
        Assert.Equal("length", (string)json["finish_reason"]!);
    }

    [SkippableFact]
    public void Tokenize_json_includes_bos_and_pieces()
    {
        var r = HoneCli.Run("tokenize", SharedData.Require(Model), "--text", "Once upon a time", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(new[] { 1, 403, 407, 261, 378 }, json["ids"]!.AsArray().Select(n => (int)n!));
        Assert.Equal("▁Once", (string)json["pieces"]![1]!);
    }

    [SkippableTheory]
    [InlineData(64)]
    [InlineData(128)]
    public void Perplexity_under_the_llama_cpp_protocol_matches_the_float64_reference(int ctx)
    {
        // tools/reference/make_perplexity_fixture.py: an independent float64 implementation of llama-perplexity's protocol.
        var fixture = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "perplexity", "stories260K-llamacpp.json")))!;
        var text = File.ReadAllText(SharedData.Require("datasets/tinyshakespeare/input.txt"))[..4000];
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("text.txt"), text);
        var tokens = JsonNode.Parse(HoneCli.Run("tokenize", SharedData.Require(Model), "--file", dir.File("text.txt"), "--no-special", "--json").Stdout)!;
        Assert.Equal(fixture["token_ids"]!.AsArray().Select(n => (int)n!), tokens["ids"]!.AsArray().Select(n => (int)n!));
        var r = HoneCli.Run("perplexity", SharedData.Require(Model), "--file", dir.File("text.txt"), "--ctx", ctx.ToString(), "--protocol", "llama.cpp", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Stdout)!;
        var expected = fixture["results"]![ctx.ToString()]!;
        Assert.Equal((long)expected["tokens_scored"]!, (long)json["tokens_scored"]!);
        double want = (double)expected["ppl"]!, got = (double)json["ppl"]!;
        Assert.True(Math.Abs(got - want) <= 1e-3 * want, $"ppl {got} vs reference {want}");
        Assert.Equal("llama.cpp", (string)json["protocol"]!);
    }

    [SkippableFact]
    public void Chat_reuses_the_cache_between_turns()
    {
        var r = HoneCli.RunWithInput("Tell me a story\nAnd then?\n/exit\n", "chat", SharedData.Require(Model), "--temperature", "0", "-n", "20");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("0 of", r.Stderr);            // first turn: nothing cached
        Assert.Matches(@"\[20 tokens, [1-9]\d* of \d+ prompt tokens reused", r.Stderr);
        Assert.False(string.IsNullOrWhiteSpace(r.Stdout));
    }

    [SkippableFact]
    public void Bad_arguments_fail_cleanly()
    {
        var model = SharedData.Require(Model);
        var r = HoneCli.Run("generate", model, "--temperature", "-1");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: temperature must be", r.Stderr.Trim());
        r = HoneCli.Run("perplexity", model, "--file", "/nonexistent.txt");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("/nonexistent.txt", r.Stderr);
    }
}
