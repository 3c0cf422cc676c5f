using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Inference;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>The answers tasks keep for reports: the first items' question, reference and answer, bounded in count and
/// length, each answer the one the metric judged.</summary>
public class EvalSamplesTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    static TaskResult Run(TempDirectory dir, string spec, params JsonObject[] records)
    {
        File.WriteAllLines(dir.File("data.jsonl"), records.Select(r => r.ToJsonString()));
        var task = TaskLoader.Parse(JsonNode.Parse(spec)!.AsObject(), new TaskOrigin("t", "test", dir.Path));
        using var loaded = LoadedModel.Open(SharedData.Require(Model), context: 256);
        return task.Run(new EvalContext(loaded.Model, loaded.Tokenizer, new EvalOptions(Seed: 3)));
    }

    static List<JsonObject> Samples(TaskResult r) => r.Details["samples"]!.AsArray().Select(s => s!.AsObject()).ToList();

    [SkippableFact]
    public void Generate_keeps_the_first_five_answers_with_their_scores_and_cuts_long_text()
    {
        SharedData.Require(Model);
        using var dir = new TempDirectory();
        string longQuestion = string.Concat(Enumerable.Repeat("Once upon a time there was a cat. ", 100)); // 3,400 characters
        var records = Enumerable.Range(0, 8).Select(i => new JsonObject
        {
            ["question"] = i == 1 ? longQuestion : $"Once upon a time, there was a little girl named{new string('!', i)}",
            ["answer"] = i == 0 ? "Lily" : new JsonArray("Tim", "Timmy"),
        }).ToArray();
        var result = Run(dir, """{"version": 1, "kind": "generate", "data": "data.jsonl", "prompt": "{question}", "max_tokens": 6, "stop": ["."], "scorers": ["exact_match"]}""", records);
        var samples = Samples(result);
        Assert.Equal(EvalSamples.MaxItems, samples.Count);
        Assert.Equal([0, 1, 2, 3, 4], samples.Select(s => (int)s["item"]!));
        Assert.Equal(8, (int)result.Details["items_available"]!);
        // The first is the record the details already work through: the same answer, the same score.
        Assert.Equal("Once upon a time, there was a little girl named", (string)samples[0]["question"]!);
        Assert.Equal("Lily", (string)samples[0]["reference"]!);
        Assert.Equal((string)result.Details["first_record"]!["output"]!, (string)samples[0]["answer"]!);
        Assert.Equal((double)result.Details["first_record"]!["scores"]!["exact_match"]!, (double)samples[0]["scores"]!["exact_match"]!);
        Assert.Equal(["Tim", "Timmy"], samples[2]["reference"]!.AsArray().Select(x => (string)x!));
        // Long text is cut, so results files stay small whatever the data holds.
        string cut = (string)samples[1]["question"]!;
        Assert.Equal(EvalSamples.MaxChars + 1, cut.Length);
        Assert.Equal(longQuestion[..EvalSamples.MaxChars] + "…", cut);
        // The mean of the kept scores agrees with the metric where all items are kept.
        var few = Run(dir, """{"version": 1, "kind": "generate", "data": "data.jsonl", "prompt": "{question}", "max_tokens": 6, "stop": ["."], "scorers": ["exact_match"]}""", records[..3]);
        Assert.Equal(few.Metrics[0].Value, Samples(few).Average(s => (double)s["scores"]!["exact_match"]!), 12);
    }

    [SkippableFact]
    public void Sampled_chat_task_keeps_the_user_question_not_the_rendered_prompt_and_counts_passes()
    {
        SharedData.Require(Model);
        using var dir = new TempDirectory();
        JsonObject Record(string question) => new()
        {
            ["messages"] = new JsonArray(
                (JsonNode)new JsonObject { ["role"] = "system", ["content"] = "You are a shop assistant." },
                (JsonNode)new JsonObject { ["role"] = "user", ["content"] = question }),
            ["expected"] = new JsonObject { ["contains"] = new JsonArray("the"), ["regex"] = "." },
        };
        var result = Run(dir, """
            {"version": 1, "kind": "sampled", "data": "data.jsonl", "chat": true, "messages_field": "messages", "n": 3, "k": [1],
             "max_tokens": 6, "sampling": {"temperature": 1.0}, "checker": {"type": "facts"}}
            """, Record("Where is my order?"), Record("Can I return it?"));
        var samples = Samples(result);
        Assert.Equal(2, samples.Count);
        Assert.Equal("Where is my order?", (string)samples[0]["question"]!);
        Assert.Equal("the", (string)samples[0]["reference"]!["contains"]![0]!);
        Assert.Equal((string)result.Details["first_sample"]!["completion"]!, (string)samples[0]["answer"]!);
        Assert.Equal((string)result.Details["first_sample"]!["outcome"]!, (string)samples[0]["outcome"]!);
        var correct = result.Details["correct_per_problem"]!.AsArray().Select(x => (int)x!).ToList();
        Assert.Equal(correct, samples.Select(s => (int)s["passed"]!));
        Assert.All(samples, s => Assert.Equal(3, (int)s["n"]!));
    }

    [SkippableFact]
    public void Multiple_choice_keeps_the_choices_the_right_one_and_the_models_pick()
    {
        SharedData.Require(Model);
        using var dir = new TempDirectory();
        var result = Run(dir, """{"version": 1, "kind": "multiple_choice", "data": "data.jsonl", "format": "cloze", "prompt": "{question}"}""",
            new JsonObject { ["question"] = "Once upon a time, there was a little girl named", ["choices"] = new JsonArray("Lily", "Xylophone"), ["answer"] = 0 },
            new JsonObject { ["question"] = "The dog ran to the", ["choices"] = new JsonArray("park", "zzz qqq"), ["answer"] = 1 });
        var samples = Samples(result);
        Assert.Equal(["Lily", "Xylophone"], samples[0]["choices"]!.AsArray().Select(x => (string)x!));
        Assert.Equal("Lily", (string)samples[0]["reference"]!);
        Assert.Equal("zzz qqq", (string)samples[1]["reference"]!);
        Assert.Equal(result.Metrics.Single(m => m.Name == "acc").Value, samples.Average(s => (bool)s["correct"]! ? 1.0 : 0.0), 12);
        Assert.All(samples, s => Assert.Equal((bool)s["correct"]!, (string)s["answer"]! == (string)s["reference"]!));
    }
}
