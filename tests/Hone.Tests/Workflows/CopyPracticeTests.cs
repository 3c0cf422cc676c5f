using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Hone.Synthetic;
using Hone.Tensors;
using Xunit;

namespace Hone.Tests.Workflows;

/// <summary>The base model's copying practice: every document repeats what it states, in the shape its kind promises.</summary>
public class CopyPracticeTests
{
    static readonly string[] Pieces = ["ab", " the", "ing", "42", " Mia", "@ex", "ou"];
    static readonly string[] General = ["The cat sat on the mat. It was a sunny day and the birds sang in the tall trees.", "A short one."];

    static List<string> Documents(PracticeKind kind, ulong seed, int count)
    {
        var random = new Xoshiro256(seed);
        return Enumerable.Range(0, count).Select(_ => CopyPractice.Document(kind, random, Pieces, General)).ToList();
    }

    [Theory]
    [InlineData(PracticeKind.Letters, "abcdefghijklmnopqrstuvwxyz", 4, 40)]
    [InlineData(PracticeKind.Digits, "0123456789", 4, 30)]
    public void Spaced_runs_say_the_same_symbols_twice_at_lengths_that_vary(PracticeKind kind, string symbols, int min, int max)
    {
        var lengths = new HashSet<int>();
        foreach (var d in Documents(kind, 1, 400))
        {
            var m = Regex.Match(d, @"^(.+) = (.+)\.$");
            Assert.True(m.Success, d);
            Assert.Equal(m.Groups[1].Value, m.Groups[2].Value);
            var run = m.Groups[1].Value.Split(' ');
            Assert.All(run, s => Assert.True(s.Length == 1 && symbols.Contains(s[0]), d));
            Assert.InRange(run.Length, min, max);
            lengths.Add(run.Length);
        }
        Assert.True(lengths.Count > (max - min) / 2, "lengths vary, so that only copying by content works");
    }

    [Fact]
    public void Vocabulary_pairs_and_value_runs_repeat_their_first_line()
    {
        foreach (var d in Documents(PracticeKind.VocabularyPairs, 2, 200))
        {
            var lines = d.Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.Equal(lines[0], lines[1]);
        }
        foreach (var d in Documents(PracticeKind.ValueRuns, 3, 200))
        {
            var lines = d.Split('\n');
            Assert.InRange(lines.Length, 2, 3);
            Assert.All(lines, l => Assert.Equal(lines[0], l));
        }
        foreach (var kind in new[] { PracticeKind.VocabularyRuns, PracticeKind.RepeatedPassages })
            foreach (var d in Documents(kind, 4, 200))
            {
                var lines = d.Split('\n');
                Assert.Equal(lines[0], lines[^1]);
            }
    }

    [Fact]
    public void Call_markup_passes_on_exactly_what_the_customer_said()
    {
        foreach (var d in Documents(PracticeKind.CallMarkup, 5, 200))
        {
            var calls = Regex.Matches(d, "<tool_call>\n(.+)\n</tool_call>").Select(m => JsonNode.Parse(m.Groups[1].Value)!).ToList();
            Assert.Equal(2, calls.Count);
            var said = string.Join("\n", d.Split('\n').Where(l => l.StartsWith("User: ")));
            foreach (var call in calls)
                foreach (var (_, value) in call["arguments"]!.AsObject())
                    Assert.Contains((string)value!, said);
            Assert.Equal("get_order_details", (string?)calls[1]["name"]);
        }
    }

    [Fact]
    public void The_same_seed_gives_the_same_documents_and_files_kinds_are_refused()
    {
        foreach (var kind in Enum.GetValues<PracticeKind>().Where(k => k is not (PracticeKind.CopyCorpus or PracticeKind.Pretraining)))
        {
            Assert.Equal(Documents(kind, 9, 50), Documents(kind, 9, 50));
            Assert.NotEqual(Documents(kind, 9, 50), Documents(kind, 10, 50));
        }
        Assert.Throws<ArgumentException>(() => CopyPractice.Document(PracticeKind.Pretraining, new Xoshiro256(1), Pieces, General));
    }
}
