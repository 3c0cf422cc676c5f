using System.Numerics;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Synthetic;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>The truth-ratio task, TOFU's forget quality (two-sample KS test) and the policy unlearning benchmark.</summary>
public class TruthRatioTests
{
    /// <summary>P(D ≥ h/n) for two samples of n each, by the classical closed form
    /// 2·Σ_{j≥1} (−1)^{j−1} C(2n, n−jh) / C(2n, n), in exact integers: independent of the lattice count.</summary>
    static double EqualSizesPValue(int n, int h)
    {
        BigInteger sum = 0;
        for (int j = 1; j * h <= n; j++) sum += (j % 2 == 1 ? 1 : -1) * Binomial(2 * n, n - j * h);
        return Math.Exp(BigInteger.Log(2 * sum) - BigInteger.Log(Binomial(2 * n, n)));
    }

    static BigInteger Binomial(int n, int k)
    {
        BigInteger r = 1;
        for (int i = 1; i <= k; i++) r = r * (n - k + i) / i;
        return r;
    }

    [Fact]
    public void Ks_two_sample_p_values_match_the_closed_form_and_scipy()
    {
        // scipy.stats.ks_2samp([1, 2, 3], [4, 5, 6]) = (1.0, 0.1)
        var (d, p) = KolmogorovSmirnov.TwoSample([1, 2, 3], [4, 5, 6]);
        Assert.Equal(1.0, d, 12);
        Assert.Equal(0.1, p, 12);
        Assert.Equal((0.0, 1.0), KolmogorovSmirnov.TwoSample([1, 2, 2, 5], [5, 2, 1, 2]));
        foreach (var (n, h) in new[] { (10, 4), (48, 16), (48, 7), (30, 30), (25, 3) })
        {
            double exact = KolmogorovSmirnov.ExactPValue(n, n, (double)h / n), closed = EqualSizesPValue(n, h);
            Assert.True(Math.Abs(exact - closed) <= 1e-9 + 1e-4 * closed, $"n {n}, h {h}: lattice {exact:G10}, closed form {closed:G10}");
        }
        // Unequal sizes: every value of x below every value of y gives D = 1 and p = 2 / C(n+m, n).
        var (d2, p2) = KolmogorovSmirnov.TwoSample([0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4, 5, 6]);
        Assert.Equal(1.0, d2, 12);
        Assert.Equal(2.0 / 210, p2, 12);
        // The asymptotic series approaches the exact value for large samples.
        double large = KolmogorovSmirnov.ExactPValue(400, 400, 0.08), asymptotic = KolmogorovSmirnov.AsymptoticPValue(400, 400, 0.08);
        Assert.InRange(asymptotic / large, 0.8, 1.25);
    }

    static JsonObject Item(string question, string truth, params string[] wrong) => new()
    {
        ["prompt_messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question }),
        ["paraphrased"] = truth, ["perturbed"] = new JsonArray(wrong.Select(w => (JsonNode)w).ToArray()),
    };

    [Fact]
    public void The_truth_ratio_task_scores_answers_and_reports_forget_quality_against_a_reference()
    {
        using var dir = new TempDirectory();
        File.WriteAllLines(dir.File("items.jsonl"), new[]
        {
            Item("Where is order 3?", "Order 3 ships in 4 days.", "Order 3 ships in 2 days.", "Order 3 ships in 5 days."),
            Item("Where is order 7?", "It is on its way.", "It was cancelled."),
            Item("When does order 1 ship?", "Order 1 ships in 2 days.", "Order 1 ships in 3 days.", "Order 1 ships in 9 days.", "Never."),
        }.Select(i => i.ToJsonString()));
        File.WriteAllText(dir.File("truth.json"), new JsonObject { ["version"] = 1, ["kind"] = "truth_ratio", ["data"] = "items.jsonl" }.ToJsonString());
        var (document, results) = EvalRunner.Run(TinyChatModel.Path, null, [dir.File("truth.json")], new EvalOptions(), dir.File("first.json"), threads: 2);
        var ratios = results[0].Details["truth_ratios"]!.AsArray().Select(x => (double)x!).ToArray();
        Assert.Equal(3, ratios.Length);
        Assert.All(ratios, r => Assert.True(r > 0 && double.IsFinite(r)));
        Assert.Equal(ratios.Average(), results[0].Metrics.Single(m => m.Name == "truth_ratio").Value, 12);
        Assert.Equal(ratios.Count(r => r < 1) / 3.0, results[0].Metrics.Single(m => m.Name == "prefers_true").Value, 12);
        Assert.DoesNotContain(results[0].Metrics, m => m.Name == "forget_quality");

        // Against its own ratios the model is indistinguishable from the reference: D = 0, p = 1.
        File.WriteAllText(dir.File("truth.json"), new JsonObject { ["version"] = 1, ["kind"] = "truth_ratio", ["data"] = "items.jsonl", ["reference"] = "first.json" }.ToJsonString());
        var (_, again) = EvalRunner.Run(TinyChatModel.Path, null, [dir.File("truth.json")], new EvalOptions(), dir.File("second.json"), threads: 2);
        Assert.Equal(1.0, again[0].Metrics.Single(m => m.Name == "forget_quality").Value);
        Assert.Equal(0.0, again[0].Metrics.Single(m => m.Name == "ks_statistic").Value);

        // A reference without this task's result is refused, naming the file and the task.
        File.WriteAllText(dir.File("other.json"), new JsonObject { ["version"] = 1, ["kind"] = "truth_ratio", ["data"] = "items.jsonl", ["reference"] = "first.json" }.ToJsonString());
        var error = Assert.Throws<FormatException>(() => EvalRunner.Run(TinyChatModel.Path, null, [dir.File("other.json")], new EvalOptions(), dir.File("third.json"), threads: 2));
        Assert.Contains("no result for task \"other\"", error.Message);
        File.WriteAllText(dir.File("bad.jsonl"), new JsonObject { ["prompt_messages"] = new JsonArray(), ["paraphrased"] = "x" }.ToJsonString());
        File.WriteAllText(dir.File("bad.json"), new JsonObject { ["version"] = 1, ["kind"] = "truth_ratio", ["data"] = "bad.jsonl" }.ToJsonString());
        Assert.Contains("perturbed", Assert.Throws<FormatException>(() => EvalRunner.Run(TinyChatModel.Path, null, [dir.File("bad.json")], new EvalOptions(), dir.File("fourth.json"), threads: 2)).Message);
    }

    [Fact]
    public void The_policy_benchmark_splits_conversations_and_questions_by_policy()
    {
        using var dir = new TempDirectory();
        var data = PolicyFaq.Generate(3, 240);
        File.WriteAllLines(dir.File("train.jsonl"), data.Train.Select(c => c.ToJsonString())
            .Append(new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Where is my order?" }, new JsonObject { ["role"] = "assistant", ["content"] = "On its way." }) }.ToJsonString()));
        File.WriteAllLines(dir.File("items.jsonl"), data.TaskItems.Select(i => i.ToJsonString()));
        var files = PolicyUnlearning.Build(new PolicyUnlearningOptions(dir.File("train.jsonl"), dir.File("items.jsonl"), dir.File("bench"), ["warranty", "invoice"]));
        Assert.Equal(["warranty", "invoice"], files.ForgetTopics);
        Assert.Equal(data.Train.Count, files.ForgetConversations + files.RetainConversations);
        Assert.Equal(1, files.OtherConversations);
        var forget = File.ReadAllLines(dir.File("bench/forget.jsonl")).Select(l => PolicyUnlearning.TopicOf((JsonObject)JsonNode.Parse(l)!)!.Name).ToList();
        Assert.All(forget, t => Assert.Contains(t, new[] { "warranty", "invoice" }));
        Assert.Equal(files.RetainConversations + 1, File.ReadAllLines(dir.File("bench/train-without-forget.jsonl")).Length);
        var truth = File.ReadAllLines(dir.File("bench/truth-ratio-forget.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(2 * files.ForgetQuestions, truth.Count);
        foreach (var item in truth)
        {
            var topic = PolicyFaq.Topics.First(t => t.Name == (string)item["intent"]!);
            Assert.Contains(topic.Fact, (string)item["paraphrased"]!);
            Assert.All(item["perturbed"]!.AsArray(), p => Assert.DoesNotContain(topic.Fact, (string)p!));
            Assert.Equal(3, item["perturbed"]!.AsArray().Count);
        }
        // The task files load as tasks.
        foreach (var task in new[] { "policies_forget", "retain_perplexity", "truth_ratio_forget" })
            Assert.Equal(task, TaskLoader.Load(dir.File($"bench/{task}.json")).Name);
        Assert.Contains("unknown policy topic 'warrenty'", Assert.Throws<ArgumentException>(() =>
            PolicyUnlearning.Build(new PolicyUnlearningOptions(dir.File("train.jsonl"), dir.File("items.jsonl"), dir.File("b2"), ["warrenty"]))).Message);
    }
}
