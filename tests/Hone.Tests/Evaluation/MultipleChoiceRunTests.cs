using System.Text;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Inference;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>A cloze-format multiple-choice task run in process on stories260K, its acc and acc_norm recomputed here
/// from brute-force log-likelihoods of each choice (context + " " + choice, tokenized lm-eval's way).</summary>
public class MultipleChoiceRunTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    static double BruteForce(LoadedModel m, int[] context, int[] continuation)
    {
        var logits = new float[m.Model.Config.VocabSize];
        double sum = 0;
        for (int j = 0; j < continuation.Length; j++)
        {
            m.Model.Reset();
            m.Model.Forward([.. context, .. continuation[..j]], logits);
            double max = logits.Max();
            sum += logits[continuation[j]] - (max + Math.Log(logits.Sum(l => Math.Exp(l - max))));
        }
        return sum;
    }

    [SkippableFact]
    public void Cloze_task_acc_and_acc_norm_equal_a_recomputation_from_brute_force()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        // Choices of very different lengths (and some multi-byte text), so summed and per-byte decisions part ways.
        var questions = new (string Question, string[] Choices, int Answer)[]
        {
            ("Once upon a time, there was a little girl named", ["Lily", "Lily and her mom went to the park", "Sue"], 0),
            ("The dog ran to the", ["park", "big green park near the house", "café"], 1),
            ("Tom was very", ["happy", "sad and lonely because his toy was broken", "hungry"], 0),
            ("She saw a big red", ["ball", "ball that was bouncing on the grass", "naïve ball"], 1),
            ("They played together all", ["day", "day long until the sun went down", "night"], 1),
            ("Mom said, \"Let's go to the", ["store", "park and play on the swings", "zoo"], 1),
        };
        File.WriteAllLines(dir.File("q.jsonl"), questions.Select(q => new JsonObject
        {
            ["question"] = q.Question, ["choices"] = new JsonArray(q.Choices.Select(c => (JsonNode)c).ToArray()), ["answer"] = q.Answer,
        }.ToJsonString()));
        var task = TaskLoader.Parse(JsonNode.Parse("""{"version": 1, "kind": "multiple_choice", "data": "q.jsonl", "format": "cloze", "prompt": "{question}"}""")!.AsObject(),
            new TaskOrigin("cloze", "test", dir.Path));
        using var loaded = LoadedModel.Open(model, context: 256);
        var result = task.Run(new EvalContext(loaded.Model, loaded.Tokenizer, new EvalOptions()));

        double acc = 0, accNorm = 0;
        int differ = 0;
        foreach (var q in questions)
        {
            var lls = q.Choices.Select(c =>
            {
                var pair = LmEvalEncoding.Encode(loaded.Tokenizer, q.Question, " " + c, loaded.Tokenizer.BosId);
                return BruteForce(loaded, pair.Context, pair.Continuation);
            }).ToArray();
            int pred = Array.IndexOf(lls, lls.Max());
            var perByte = lls.Select((l, i) => l / Encoding.UTF8.GetByteCount(q.Choices[i])).ToArray();
            int predNorm = Array.IndexOf(perByte, perByte.Max());
            acc += pred == q.Answer ? 1 : 0;
            accNorm += predNorm == q.Answer ? 1 : 0;
            if (pred != predNorm) differ++;
        }
        Assert.True(differ > 0, "the set should contain a question where the two decisions differ");
        Assert.Equal(acc / questions.Length, result.Metrics.Single(m => m.Name == "acc").Value, 12);
        Assert.Equal(accNorm / questions.Length, result.Metrics.Single(m => m.Name == "acc_norm").Value, 12);
        Assert.Equal("Once upon a time, there was a little girl named", (string)result.Details["first_question"]!["context"]!);
        Assert.Equal(" Lily", (string)result.Details["first_question"]!["continuations"]![0]!);
        Assert.Equal("", (string)result.Protocol["description"]!);
    }
}
