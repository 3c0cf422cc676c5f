using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>Task files are read strictly: versioned, unknown keys named, types and combinations checked; built-in
/// names resolve to the shared data or fail clearly.</summary>
public class TaskFileTests
{
    static EvalTask Parse(string json, string? dir = null) =>
        TaskLoader.Parse(JsonNode.Parse(json)!.AsObject(), new TaskOrigin("t", "t.json", dir ?? Path.GetTempPath()));

    static string Error(string json) => Assert.ThrowsAny<Exception>(() => Parse(json)).Message;

    [Fact]
    public void Each_kind_parses_into_its_definition_with_paths_relative_to_the_file()
    {
        var mc = Parse("""{"version": 1, "kind": "multiple_choice", "data": "q.jsonl", "format": "cloze", "num_fewshot": 2, "fewshot_data": "dev.jsonl", "name": "mine"}""", "/data/tasks");
        Assert.Equal("mine", mc.Name);
        var d = Assert.IsType<MultipleChoiceTaskDefinition>(mc.Definition);
        Assert.Equal("/data/tasks/q.jsonl", d.Data);
        Assert.Equal("/data/tasks/dev.jsonl", d.FewshotData);
        Assert.Equal(("cloze", 2, " ", "\n\n"), (d.Format, d.NumFewshot, d.TargetDelimiter, d.FewshotDelimiter));

        var g = Assert.IsType<GenerateTaskDefinition>(Parse("""
            {"version": 1, "kind": "generate", "data": "/abs/g.jsonl", "prompt": "Q: {question}\nA:", "stop": ["\n"],
             "scorers": ["exact_match", "f1", {"name": "regex", "pattern": "(\\d+)", "metric": "number", "normalize": ["strip"]}]}
            """).Definition);
        Assert.Equal("/abs/g.jsonl", g.Data);
        Assert.Equal(["exact_match", "f1", "number"], g.Scorers.Select(s => s.Metric));
        Assert.Equal(TextNormalization.Squad, g.Scorers[1].Scorer.Normalize);
        Assert.Empty(g.Scorers[0].Scorer.Normalize);
        Assert.Equal(0f, g.Sampling.Temperature); // generate tasks are greedy unless told otherwise

        var s = Assert.IsType<SampledTaskDefinition>(Parse("""
            {"version": 1, "kind": "sampled", "data": "s.jsonl", "n": 5, "k": [1, 5], "sampling": {"temperature": 0.6},
             "checker": {"type": "json"}}
            """).Definition);
        Assert.Equal((5, 0.6f, "answer"), (s.N, s.Sampling.Temperature, s.TargetField));
        Assert.Equal([1, 5], s.K);

        var p = Assert.IsType<PerplexityTaskDefinition>(Parse("""{"version": 1, "kind": "perplexity", "data": "t.txt", "context": 64, "stride": 32}""").Definition);
        Assert.Equal((64, 32), (p.Context!.Value, p.Stride!.Value));
    }

    [Theory]
    [InlineData("""{"version": 1, "kind": "perplexity", "data": "t.txt", "windw": 5}""", "unknown key \"windw\"")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": ["f1"], "sampling": {"temprature": 1}}""", "unknown key \"temprature\"")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": [{"name": "regex", "pattern": "x", "flags": "i"}]}""", "unknown key \"flags\"")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "command", "command": ["true"], "timeout": 3}}""", "unknown key \"timeout\"")]
    [InlineData("""{"version": 1, "kind": "multiple_choice", "data": "q.csv", "shots": 5}""", "unknown key \"shots\"")]
    [InlineData("""{"kind": "perplexity", "data": "t.txt"}""", "\"version\" is required")]
    [InlineData("""{"version": 2, "kind": "perplexity", "data": "t.txt"}""", "version 2 is not supported")]
    [InlineData("""{"version": 1, "kind": "ranking", "data": "t.txt"}""", "unknown kind \"ranking\"")]
    [InlineData("""{"version": 1, "kind": "perplexity"}""", "\"data\" is required")]
    [InlineData("""{"version": 1, "kind": "perplexity", "data": "t.txt", "context": "long"}""", "\"context\" must be an integer")]
    [InlineData("""{"version": 1, "kind": "multiple_choice", "data": "q.csv", "format": "essay"}""", "unknown format \"essay\"")]
    [InlineData("""{"version": 1, "kind": "multiple_choice", "data": "q.csv", "prompt": "Q: {question}"}""", "cloze format only")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": ["bleu"]}""", "unknown scorer \"bleu\"")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": []}""", "non-empty array")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": [{"name": "regex"}]}""", "needs a \"pattern\"")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": [{"name": "regex", "pattern": "(x"}]}""", "bad regular expression")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": [{"name": "f1", "normalize": ["stem"]}]}""", "unknown normalization \"stem\"")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": ["f1", "f1"]}""", "two scorers give the metric \"f1\"")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": ["f1"], "prompt": "{q"}""", "without a closing")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": ["f1"], "system": "be brief"}""", "need \"chat\": true")]
    [InlineData("""{"version": 1, "kind": "generate", "data": "g.jsonl", "scorers": ["f1"], "sampling": {"temperature": -1}}""", "temperature must be")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "n": 3, "k": [4], "checker": {"type": "exact"}}""", "k = 4 must be in 1..n (3)")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl"}""", "\"checker\" is required")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "docker"}}""", "unknown checker \"docker\"")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "command"}}""", "needs \"command\"")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "json", "command": ["x"]}}""", "are for the command checker")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "command", "command": ["sh"], "files": {"../x.py": "{completion}"}}}""", "plain name")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "command", "command": ["sh"], "memory_mb": 8}}""", "\"memory_mb\" must be between 16")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "command", "command": ["sh"], "timeout_seconds": 1e300}}""", "at most 86400")]
    [InlineData("""{"version": 1, "kind": "sampled", "data": "s.jsonl", "checker": {"type": "json", "memory_mb": 512}}""", "are for the command checker")]
    public void Mistakes_are_refused_with_the_key_or_value_named(string json, string expected) => Assert.Contains(expected, Error(json));

    [SkippableFact]
    public void Builtin_mmlu_resolves_to_the_shared_data_and_fails_clearly_otherwise()
    {
        var root = SharedData.Require("datasets/mmlu");
        string dataRoot = Path.GetDirectoryName(Path.GetDirectoryName(root))!;
        Assert.True(BuiltinTasks.TryResolve("mmlu:clinical_knowledge", () => dataRoot, out var spec, out var baseDir));
        var task = TaskLoader.Parse(spec, new TaskOrigin("mmlu:clinical_knowledge", "built-in", baseDir));
        var d = Assert.IsType<MultipleChoiceTaskDefinition>(task.Definition);
        Assert.Equal(Path.Combine(dataRoot, "datasets/mmlu/test/clinical_knowledge_test.csv"), d.Data);
        Assert.Equal("clinical knowledge", d.Subject);
        Assert.Equal(0, d.NumFewshot);

        var missingSubject = Assert.Throws<FileNotFoundException>(() => BuiltinTasks.TryResolve("mmlu:astronomy", () => dataRoot, out _, out _));
        Assert.Contains("clinical_knowledge", missingSubject.Message); // lists what is there
        Assert.Contains("available subjects", missingSubject.Message);
        var noData = Assert.Throws<FileNotFoundException>(() => BuiltinTasks.TryResolve("mmlu:clinical_knowledge", () => null, out _, out _));
        Assert.Contains("HONE_SHARED_DATA", noData.Message);
        Assert.False(BuiltinTasks.TryResolve("gsm8k", () => dataRoot, out _, out _));
        Assert.Contains("not a task file, nor a built-in name", Assert.Throws<ArgumentException>(() => TaskLoader.Load("gsm8k")).Message);
    }
}
