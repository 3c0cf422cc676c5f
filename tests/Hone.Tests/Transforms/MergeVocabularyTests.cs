using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Hone.Transforms;
using Hone.Transforms.Merging;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>
/// `hone merge` with tokenizer_source over models whose vocabularies differ by added tokens: each model's embedding and
/// head rows are matched to the output vocabulary by token, rows a model lacks filled as mergekit fills them (from the
/// only model that has the token, else the base's), and the merged rows follow the method's formula token by token;
/// the output's tokenizer.json, tokenizer_config.json and config agree; tokenizers that differ in more than added
/// tokens are refused saying why.
/// </summary>
public unsafe class MergeVocabularyTests
{
    /// <summary>A random model on the tiny chat tokenizer plus <paramref name="added"/> (appended as added tokens), or with
    /// its last merge dropped (<paramref name="dropMerge"/>: a tokenizer that cuts text differently).</summary>
    static string Model(TempDirectory dir, string name, int seed, string[] added, bool dropMerge = false)
    {
        string path = dir.File(name);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(TinyChatModel.Path, "tokenizer.json")))!.AsObject();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(TinyChatModel.Path, "tokenizer_config.json")))!.AsObject();
        int vocab = Tokenizer.FromHuggingFaceDirectory(TinyChatModel.Path).VocabSize;
        var tokens = json["added_tokens"]!.AsArray();
        var decoder = config["added_tokens_decoder"] as JsonObject;
        foreach (var content in added)
        {
            var token = new JsonObject
            {
                ["id"] = vocab, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            };
            tokens.Add(token);
            if (decoder != null)
            {
                var entry = (JsonObject)token.DeepClone();
                entry.Remove("id");
                decoder[vocab.ToString()] = entry;
            }
            vocab++;
        }
        if (dropMerge)
        {
            var merges = json["model"]!["merges"]!.AsArray();
            merges.RemoveAt(merges.Count - 1);
        }
        using var c = Checkpoint.Open(TinyChatModel.Path);
        using var w = LlamaWeights.CreateRandom(c.Config with { VocabSize = vocab }, TensorType.F32, seed, std: 0.3f);
        ModelConverter.Write(w, null, path, TensorType.F32, []);
        File.WriteAllText(Path.Combine(path, "tokenizer.json"), json.ToJsonString());
        File.WriteAllText(Path.Combine(path, "tokenizer_config.json"), config.ToJsonString());
        return path;
    }

    /// <summary>Row <paramref name="row"/> of a model's embedding (or head).</summary>
    static float[] Row(string model, TensorRole role, int row)
    {
        using var c = Checkpoint.Open(model);
        Assert.True(c.TryGet(TensorNames.Gguf(role), out var t));
        Assert.Equal(TensorType.F32, t.Type);
        int d = (int)t.Shape[1];
        return new ReadOnlySpan<float>((float*)t.Pointer + (long)row * d, d).ToArray();
    }

    static int Id(string model, string piece) => Tokenizer.FromHuggingFaceDirectory(model).TokenToId(piece) ?? throw new InvalidOperationException($"{piece} not in {model}");

    static ModelMergeReport Merge(TempDirectory dir, string yaml, string output = "merged")
    {
        string config = dir.File("merge.yaml");
        File.WriteAllText(config, yaml);
        return ModelMerger.Merge(ModelMergeOptions.FromConfig(YamlConfigTree.Read(config), dir.File(output)));
    }

    static void AssertRow(IReadOnlyList<double> expected, float[] actual, string what)
    {
        for (int k = 0; k < actual.Length; k++)
            Assert.True(Math.Abs(expected[k] - actual[k]) <= 1e-6 * Math.Max(1, Math.Abs(expected[k])), $"{what} element {k}: expected {expected[k]}, got {actual[k]}");
    }

    [Fact]
    public void A_union_of_vocabularies_that_differ_by_added_tokens_averages_shared_rows_and_keeps_each_models_own()
    {
        using var dir = new TempDirectory();
        string a = Model(dir, "a", 1, ["<|tool|>"]), b = Model(dir, "b", 2, ["<|think|>", "<|tool|>"]);
        var report = Merge(dir, $"""
            merge_method: linear
            models:
              - model: {a}
                parameters: {"{"}weight: 0.25{"}"}
              - model: {b}
                parameters: {"{"}weight: 0.75{"}"}
            tokenizer_source: union
            """);
        string merged = dir.File("merged");
        Assert.Contains(report.Notes, n => n.Contains("union") && n.Contains("1 added token"));
        int shared = Tokenizer.FromHuggingFaceDirectory(TinyChatModel.Path).VocabSize;
        // The union: a's vocabulary (the reference), then b's <|think|>, which a lacks.
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(merged);
        Assert.Equal(shared + 2, tokenizer.VocabSize);
        Assert.Equal(shared, tokenizer.TokenToId("<|tool|>"));
        Assert.Equal(shared + 1, tokenizer.TokenToId("<|think|>"));
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(merged, "tokenizer_config.json")))!;
        Assert.Equal("<|think|>", (string)tokenizerConfig["added_tokens_decoder"]![(shared + 1).ToString()]!["content"]!);
        using (var c = Checkpoint.Open(merged)) Assert.Equal(shared + 2, c.Config.VocabSize);

        foreach (var role in new[] { TensorRole.TokenEmbedding, TensorRole.Output })
        {
            foreach (int id in new[] { 0, 7, shared - 1 }) // shared tokens: the weighted average
            {
                float[] ra = Row(a, role, id), rb = Row(b, role, id);
                AssertRow(ra.Select((x, k) => 0.25 * x + 0.75 * rb[k]).ToList(), Row(merged, role, id), $"{role} token {id}");
            }
            // <|tool|> is in both, under other ids (a: shared, b: shared + 1): matched by token, not by id.
            float[] toolA = Row(a, role, Id(a, "<|tool|>")), toolB = Row(b, role, Id(b, "<|tool|>"));
            AssertRow(toolA.Select((x, k) => 0.25 * x + 0.75 * toolB[k]).ToList(), Row(merged, role, shared), $"{role} <|tool|>");
            // <|think|> only b has: a's row is filled with b's, so the average is b's row.
            AssertRow(Row(b, role, Id(b, "<|think|>")).Select(x => (double)x).ToList(), Row(merged, role, shared + 1), $"{role} <|think|>");
        }
    }

    [Fact]
    public void Tokenizer_source_base_fills_a_models_missing_rows_from_the_base_so_its_delta_there_is_zero()
    {
        using var dir = new TempDirectory();
        string a = Model(dir, "a", 1, ["<|tool|>"]), b = Model(dir, "b", 2, []);
        Merge(dir, $"""
            merge_method: task_arithmetic
            base_model: {a}
            models:
              - model: {b}
                parameters: {"{"}weight: 0.5{"}"}
            tokenizer_source: base
            """, "merged.gguf");
        string merged = dir.File("merged.gguf");
        int shared = Tokenizer.FromHuggingFaceDirectory(TinyChatModel.Path).VocabSize;
        using (var c = Checkpoint.Open(merged))
        {
            Assert.Equal(shared + 1, c.Config.VocabSize);
            Assert.Equal(shared, c.LoadTokenizer().TokenToId("<|tool|>"));
        }
        foreach (var role in new[] { TensorRole.TokenEmbedding, TensorRole.Output })
        {
            float[] ra = Row(a, role, 11), rb = Row(b, role, 11);
            AssertRow(ra.Select((x, k) => x + 0.5 * (rb[k] - x)).ToList(), Row(merged, role, 11), $"{role} token 11");
            AssertRow(Row(a, role, shared).Select(x => (double)x).ToList(), Row(merged, role, shared), $"{role} <|tool|>");
        }

        // tokenizer_source naming the model without the token: the output has its smaller vocabulary.
        Merge(dir, $"""
            merge_method: linear
            models:
              - model: {a}
                parameters: {"{"}weight: 1{"}"}
              - model: {b}
                parameters: {"{"}weight: 1{"}"}
            tokenizer_source: {b}
            """, "to-b");
        using var toB = Checkpoint.Open(dir.File("to-b"));
        Assert.Equal(shared, toB.Config.VocabSize);
        Assert.Null(toB.LoadTokenizer().TokenToId("<|tool|>"));
    }

    [Fact]
    public void Different_merges_refuse_a_union_and_different_vocabularies_need_a_tokenizer_source()
    {
        using var dir = new TempDirectory();
        string a = Model(dir, "a", 1, ["<|tool|>"]), c = Model(dir, "c", 3, [], dropMerge: true);
        var union = Assert.Throws<ArgumentException>(() => Merge(dir, $"""
            merge_method: linear
            models:
              - model: {a}
                parameters: {"{"}weight: 1{"}"}
              - model: {c}
                parameters: {"{"}weight: 1{"}"}
            tokenizer_source: union
            """));
        Assert.Contains("merges differ", union.Message);
        Assert.DoesNotContain('\n', union.Message);
        Assert.False(Directory.Exists(dir.File("merged")));

        string b = Model(dir, "b", 2, []);
        var plain = Assert.Throws<ArgumentException>(() => Merge(dir, $"""
            merge_method: linear
            models:
              - model: {a}
                parameters: {"{"}weight: 1{"}"}
              - model: {b}
                parameters: {"{"}weight: 1{"}"}
            """));
        Assert.Contains("tokenizer_source", plain.Message);
    }
}
