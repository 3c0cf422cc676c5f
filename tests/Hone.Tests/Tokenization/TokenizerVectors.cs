using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>Loads the shared tokenizers and their reference vectors (all under shared/data/tokenizers).</summary>
static class TokenizerVectors
{
    public const string LlamaCpp = "tokenizers/llama.cpp-vocab/";
    public const string Swift = "tokenizers/test-vectors/swift-transformers/";

    /// <summary>One llama.cpp test: input text and the ids expected without BOS.</summary>
    public sealed record LlamaCppCase(int Index, string Text, int[] Ids);

    /// <summary>The .inp strings (separated by "\n__ggml_vocab_test__\n", as llama.cpp's test-tokenizer-0 splits them)
    /// paired with the lines of the .out file.</summary>
    public static List<LlamaCppCase> LlamaCppCases(string name)
    {
        string inp = File.ReadAllText(SharedData.Require(LlamaCpp + name + ".inp"));
        string[] outLines = File.ReadAllText(SharedData.Require(LlamaCpp + name + ".out")).TrimEnd('\n').Split('\n');
        var texts = inp.Split("\n__ggml_vocab_test__\n");
        Assert.Equal("", texts[^1]); // the file ends with a separator
        var cases = new List<LlamaCppCase>();
        for (int i = 0; i < texts.Length - 1; i++)
        {
            var ids = outLines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            cases.Add(new LlamaCppCase(i, texts[i], ids));
        }
        Assert.Equal(cases.Count, outLines.Length); // one line of ids per input
        return cases;
    }

    public static Dictionary<string, int> Llama3SpecialTokens() => Tokenizer.Llama3SpecialTokens();

    public static Tokenizer Llama3() => Cache.GetOrAdd("llama3", _ => Tokenizer.FromLlama3Files(
        SharedData.Require("tokenizers/llama3.2-bpe/encoder.json"), SharedData.Require("tokenizers/llama3.2-bpe/vocab.bpe")));

    public static Tokenizer Llama2Hf() => Cache.GetOrAdd("llama2-hf", _ => Tokenizer.FromHuggingFaceDirectory(SharedData.Require("tokenizers/llama2-hf")));
    public static Tokenizer Gpt2Hf() => Cache.GetOrAdd("gpt2-hf", _ => Tokenizer.FromHuggingFaceDirectory(SharedData.Require("tokenizers/gpt2-hf")));
    public static Tokenizer Gpt2Files() => Cache.GetOrAdd("gpt2-files", _ => Tokenizer.FromGpt2Files(
        SharedData.Require("tokenizers/gpt2-hf/vocab.json"), SharedData.Require("tokenizers/gpt2-hf/merges.txt"), PreTokenizerKind.Gpt2,
        new Dictionary<string, int> { ["<|endoftext|>"] = 50256 }, eosToken: "<|endoftext|>"));

    public static Tokenizer Gguf(string relative) => Cache.GetOrAdd(relative, r =>
    {
        using var gguf = GgufFile.Open(SharedData.Require(r));
        return Tokenizer.FromGguf(gguf);
    });

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Tokenizer> Cache = new();

    public static JsonNode Json(string relative) => JsonNode.Parse(File.ReadAllText(SharedData.Require(relative)))!;

    public static int[] Ints(JsonNode? node) => node!.AsArray().Select(n => (int)n!).ToArray();

    /// <summary>Fails with the first difference and both sequences, for readable messages.</summary>
    public static void AssertIds(int[] expected, int[] actual, string what)
    {
        if (expected.SequenceEqual(actual)) return;
        int i = 0;
        while (i < expected.Length && i < actual.Length && expected[i] == actual[i]) i++;
        throw new Xunit.Sdk.XunitException($"{what}: ids differ at {i}\n expected [{string.Join(", ", expected)}]\n actual   [{string.Join(", ", actual)}]");
    }
}
