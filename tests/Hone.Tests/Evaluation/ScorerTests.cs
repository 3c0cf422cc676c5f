using System.Text.Json.Nodes;
using Hone.Evaluation;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>The generate-task scorers and the sampled-task checkers on tables of cases.</summary>
public class ScorerTests
{
    static double Score(string scorer, string output, string reference, string[]? normalize = null, string? pattern = null) =>
        TextScorers.Score(new ScorerSpec(scorer, normalize ?? TextScorers.DefaultNormalization(scorer), pattern), output, [reference]);

    [Theory]
    [InlineData("Paris", "Paris", new string[0], 1)]
    [InlineData(" Paris\n", "Paris", new string[0], 0)]                   // exact means exact
    [InlineData(" Paris\n", "Paris", new[] { "strip" }, 1)]
    [InlineData("PARIS", "paris", new[] { "lowercase" }, 1)]
    [InlineData("Paris.", "Paris", new[] { "punctuation" }, 1)]
    [InlineData("«Paris»!", "Paris", new[] { "punctuation" }, 1)]           // Unicode punctuation too
    [InlineData(" The  Paris ", "paris", new[] { "lowercase", "articles", "whitespace" }, 1)]
    [InlineData("Paris, France", "Paris", new[] { "strip", "lowercase", "punctuation" }, 0)]
    public void Exact_match_with_normalization(string output, string reference, string[] normalize, double expected) =>
        Assert.Equal(expected, Score("exact_match", output, reference, normalize));

    [Theory]
    [InlineData("The answer is Paris, of course.", "Paris", new string[0], 1)]
    [InlineData("The answer is paris", "Paris", new string[0], 0)]
    [InlineData("The answer is paris", "Paris", new[] { "lowercase" }, 1)]
    [InlineData("London", "Paris", new string[0], 0)]
    public void Contains(string output, string reference, string[] normalize, double expected) =>
        Assert.Equal(expected, Score("contains", output, reference, normalize));

    [Theory]
    [InlineData(@"answer: (\d+)", "so the answer: 42 and answer: 7", "42", 1)]   // first match's group 1
    [InlineData(@"answer: (\d+)", "so the answer: 7 and answer: 42", "42", 0)]
    [InlineData(@"answer: (\d+)", "no number here", "42", 0)]
    [InlineData(@"\bdone\b", "all done.", "ignored", 1)]                          // no group: a match passes
    [InlineData(@"\bdone\b", "undone", "ignored", 0)]
    [InlineData(@"is (\w+)", "It is PARIS", "paris", 0)]
    public void Regex(string pattern, string output, string reference, double expected) =>
        Assert.Equal(expected, Score("regex", output, reference, [], pattern));

    [Fact]
    public void Regex_normalizes_the_capture_and_the_reference() =>
        Assert.Equal(1, Score("regex", "It is PARIS.", "paris", ["lowercase"], @"is (\w+)"));

    [Theory]
    // SQuAD normalization: lowercase, no punctuation, no articles, single spaces.
    [InlineData("The cat sat", "the cat sat", 1.0)]
    [InlineData("cat sat on mat", "the cat sat", 2 * (2.0 / 4) * (2.0 / 2) / (2.0 / 4 + 2.0 / 2))] // p 2/4, r 2/2 → 2/3
    [InlineData("a dog", "the cat", 0.0)]
    [InlineData("the", "an", 1.0)]                       // both empty after normalization
    [InlineData("the", "cat", 0.0)]                      // one empty
    [InlineData("cat cat dog", "cat dog dog", 2 * (2.0 / 3) * (2.0 / 3) / (4.0 / 3))] // multiset overlap: cat×1, dog×1
    [InlineData("Hello, world!", "hello world", 1.0)]
    public void Token_f1_squad_style(string output, string reference, double expected) =>
        Assert.Equal(expected, Score("f1", output, reference), 12);

    [Fact]
    public void The_best_reference_counts()
    {
        var spec = new ScorerSpec("exact_match", ["strip", "lowercase"]);
        Assert.Equal(1, TextScorers.Score(spec, " NYC ", ["New York", "nyc"]));
        Assert.Equal(0, TextScorers.Score(spec, "LA", ["New York", "nyc"]));
        Assert.Equal(0, TextScorers.Score(spec, "LA", []));
        var f1 = new ScorerSpec("f1", TextNormalization.Squad);
        Assert.Equal(1.0, TextScorers.Score(f1, "new york city", ["york", "New York City"]));
    }

    [Theory]
    [InlineData("{\"a\": 1, \"b\": [1, 2]}", "{\"b\": [1, 2], \"a\": 1}", true)]   // key order ignored
    [InlineData("{\"a\": 1}", "{\"a\": 1.0}", true)]                                // numbers by value
    [InlineData("{\"a\": 100}", "{\"a\": 1e2}", true)]
    [InlineData("[1, 2]", "[2, 1]", false)]                                          // arrays in order
    [InlineData("{\"a\": 1}", "{\"a\": 1, \"b\": null}", false)]
    [InlineData("{\"a\": \"1\"}", "{\"a\": 1}", false)]                             // a string is not a number
    [InlineData("{\"a\": {\"x\": [true, null]}}", "{\"a\": {\"x\": [true, null]}}", true)]
    [InlineData("{\"a\": {\"x\": [true, null]}}", "{\"a\": {\"x\": [false, null]}}", false)]
    [InlineData("\"caf\\u00e9\"", "\"café\"", true)]                                // JSON escapes decode
    [InlineData("null", "null", true)]
    [InlineData("0.1", "0.10000000000000001", false)]                               // decimal comparison is exact
    public void Json_equality(string a, string b, bool equal)
    {
        Assert.Equal(equal, Checkers.JsonEquals(JsonNode.Parse(a), JsonNode.Parse(b)));
        Assert.Equal(equal, Checkers.JsonEquals(JsonNode.Parse(b), JsonNode.Parse(a)));
    }

    static readonly Checkers.Settings Offline = new(AllowNetwork: false);

    [Theory]
    [InlineData("{\"name\": \"Ann\", \"age\": 3}", true, "pass")]
    [InlineData("  {\"age\": 3.0, \"name\": \"Ann\"}\n", true, "pass")]
    [InlineData("{\"age\": 4, \"name\": \"Ann\"}", false, "fail")]
    [InlineData("{\"age\": 3, \"name\": \"Ann\"", false, "invalid_json")]
    [InlineData("Sure! {\"age\": 3, \"name\": \"Ann\"}", false, "invalid_json")]
    public void Json_checker(string completion, bool passed, string outcome)
    {
        var spec = new CheckerSpec("json", []);
        // A target given as a string holds JSON text; given as an object it is the value itself.
        foreach (var target in new JsonNode[] { JsonValue.Create("{\"name\":\"Ann\",\"age\":3}"), JsonNode.Parse("{\"name\":\"Ann\",\"age\":3}")! })
            Assert.Equal(new CheckResult(passed, outcome), Checkers.Check(spec, new CheckInput(completion, new JsonObject(), target), Offline));
    }

    [Fact]
    public void Exact_and_regex_checkers()
    {
        var exact = new CheckerSpec("exact", ["strip"]);
        Assert.True(Checkers.Check(exact, new CheckInput(" 42\n", new JsonObject(), JsonValue.Create("42")), Offline).Passed);
        Assert.False(Checkers.Check(exact, new CheckInput("42.", new JsonObject(), JsonValue.Create("42")), Offline).Passed);
        Assert.True(Checkers.Check(exact, new CheckInput("b", new JsonObject(), JsonNode.Parse("[\"a\", \"b\"]")), Offline).Passed);
        var regex = new CheckerSpec("regex", [], Pattern: @"#### (\-?\d+)");
        Assert.True(Checkers.Check(regex, new CheckInput("so 6*7\n#### 42", new JsonObject(), JsonValue.Create("42")), Offline).Passed);
        Assert.False(Checkers.Check(regex, new CheckInput("#### 41", new JsonObject(), JsonValue.Create("42")), Offline).Passed);
    }

    [Fact]
    public void Templates_fill_fields_and_keep_doubled_braces()
    {
        var record = JsonNode.Parse("{\"q\": \"2+2?\", \"n\": 3, \"tags\": [\"x\"]}")!.AsObject();
        string Look(string f) => PromptTemplate.FieldText(record, f);
        Assert.Equal("Q: 2+2? ({n}=3) [\"x\"]", PromptTemplate.Render("Q: {q} ({{n}}={n}) {tags}", Look));
        Assert.Equal(["q", "n"], PromptTemplate.Fields("{q}{n}"));
        var missing = Assert.Throws<FormatException>(() => PromptTemplate.Render("{answer}", Look));
        Assert.Contains("\"answer\"", missing.Message);
        Assert.Throws<FormatException>(() => PromptTemplate.Fields("{q"));
        Assert.Throws<FormatException>(() => PromptTemplate.Fields("q}"));
        Assert.Throws<FormatException>(() => PromptTemplate.Fields("{a b}"));
    }
    [Fact]
    public void Facts_checker_wants_every_fact_the_claim_and_no_contradiction()
    {
        var spec = new CheckerSpec("facts", []);
        var target = JsonNode.Parse("""{"contains": ["#48213", "12 March"], "regex": "(?i)shipped on", "forbidden": ["(?i)\\bdelivered\\b"]}""");
        CheckResult Check(string answer) => Checkers.Check(spec, new CheckInput(answer, new JsonObject(), target), Offline);
        Assert.Equal(new CheckResult(true, "pass"), Check("Order #48213 Shipped on 12 March."));
        Assert.Equal(new CheckResult(false, "missing_fact"), Check("Order #48213 shipped on 12 march."));
        Assert.Equal(new CheckResult(false, "claim_mismatch"), Check("Order #48213: 12 March."));
        Assert.Equal(new CheckResult(false, "contradiction"), Check("Order #48213 shipped on 12 March and was Delivered."));
        Assert.Equal(new CheckResult(true, "pass"), Check("Order #48213 shipped on 12 March; undelivered mail returns to us."));
        Assert.Throws<FormatException>(() => Checkers.Check(spec, new CheckInput("x", new JsonObject(), JsonValue.Create("fact")), Offline));
    }
}
