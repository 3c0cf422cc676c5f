using System.Text.Json.Nodes;
using Hone.Synthetic;
using Xunit;

namespace Hone.Tests.Synthetic;

public class PolicyFaqTests
{
    static string Question(JsonObject conversation) => (string)conversation["messages"]![1]!["content"]!;
    static string Answer(JsonObject conversation) => (string)conversation["messages"]![2]!["content"]!;

    [Fact]
    public void Answers_state_their_policy_and_held_out_questions_never_occur_in_training()
    {
        var data = PolicyFaq.Generate(7, 900);
        Assert.Equal(900, data.Train.Count + data.HeldOut.Count);
        Assert.Equal(data.HeldOut.Count, data.TaskItems.Count);
        var training = data.Train.Select(Question).ToHashSet(StringComparer.Ordinal);
        foreach (var c in data.Train.Concat(data.HeldOut))
        {
            var topic = PolicyFaq.Topics.Single(t => t.Answers.Any(a => Answer(c).Contains(a.Replace("{fact}", t.Fact))));
            Assert.Contains(topic.Fact, Answer(c), StringComparison.Ordinal);
            Assert.Equal(PolicyFaq.SystemMessage, (string)c["messages"]![0]!["content"]!);
        }
        for (int i = 0; i < data.HeldOut.Count; i++)
        {
            Assert.DoesNotContain(Question(data.HeldOut[i]), training);
            var item = data.TaskItems[i];
            Assert.Equal(Question(data.HeldOut[i]), (string)item["prompt_messages"]![1]!["content"]!);
            Assert.Equal(2, item["prompt_messages"]!.AsArray().Count);
            string fact = (string)item["expected"]!["contains"]![0]!;
            Assert.Contains(fact, Answer(data.HeldOut[i]), StringComparison.Ordinal);
        }
        // Every policy is asked about in the held-out set, about equally often.
        var counts = data.TaskItems.GroupBy(i => (string)i["intent"]!).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(PolicyFaq.Topics.Length, counts.Count);
        Assert.True(counts.Values.Max() - counts.Values.Min() <= 1, string.Join(", ", counts));
    }

    [Fact]
    public void Generation_is_deterministic_per_seed()
    {
        string Text(PolicyFaqData d) => string.Join("\n", d.Train.Concat(d.HeldOut).Select(c => c.ToJsonString()));
        Assert.Equal(Text(PolicyFaq.Generate(3, 200)), Text(PolicyFaq.Generate(3, 200)));
        Assert.NotEqual(Text(PolicyFaq.Generate(3, 200)), Text(PolicyFaq.Generate(4, 200)));
    }
}
