using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Grammars;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;
using Json.Schema;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Grammars;

public class JsonSchemaGrammarTests(ITestOutputHelper output)
{
    static Grammar Compile(string schema, JsonSchemaOptions? options = null) => Grammar.FromJsonSchema(JsonNode.Parse(schema)!, options);

    [Theory]
    [InlineData("""{"type": "integer", "minimum": -12, "maximum": 345}""", "-12|-7|0|9|10|99|100|345", "-13|346|-0|01|1000|-100")]
    [InlineData("""{"type": "integer", "minimum": 17}""", "17|18|99|100|123456", "16|0|-1|1.5")]
    [InlineData("""{"type": "integer", "maximum": -3}""", "-3|-4|-100", "-2|0|5")]
    [InlineData("""{"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}""", "1|9", "0|10")]
    [InlineData("""{"type": "integer", "minimum": 1, "maximum": 7.5}""", "1|7", "8|0")]
    [InlineData("""{"type": "string", "minLength": 2, "maxLength": 3}""", "\"ab\"|\"abc\"|\"a\\nb\"", "\"a\"|\"abcd\"")]
    [InlineData("""{"enum": ["red", 1, null, {"a": [true]}]}""", "\"red\"|1|null|{\"a\": [true]}", "\"blue\"|2")]
    [InlineData("""{"enum": ["product 1", "product 12", "product 2", "produce", "🙂a", "🙃b", "p"]}""", "\"product 1\"|\"product 12\"|\"product 2\"|\"produce\"|\"🙂a\"|\"🙃b\"|\"p\"", "\"product 3\"|\"product\"|\"product 123\"|\"🙂b\"|\"\"")]
    [InlineData("""{"const": "x\"y"}""", "\"x\\\"y\"", "\"xy\"")]
    [InlineData("""{"type": ["string", "null"]}""", "\"a\"|null", "1")]
    [InlineData("""{"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2}""", "[true]|[true, false]|[ false ,true ]", "[]|[true, true, true]")]
    [InlineData("""{"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": false}""", "[1, \"a\"]|[1]|[]", "[\"a\"]|[1, \"a\", 2]")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["b"]}""", "{\"b\": \"x\"}|{\"a\": 1, \"b\": \"x\"}", "{}|{\"a\": 1}|{\"b\": \"x\", \"c\": 1}|{\"b\": \"x\", \"a\": 1}")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "integer"}}""", "{}|{\"a\": 1, \"ab\": 2}|{\"b\": 2, \"c\": 3}|{\"\": 1}", "{\"a\": 1, \"a\": 2}|{\"b\": \"x\"}")]
    [InlineData("""{"anyOf": [{"type": "integer"}, {"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]}]}""", "5|{\"k\": 1}", "{}|\"5\"")]
    [InlineData("""{"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}}, "required": ["v"]}}, "$ref": "#/$defs/node"}""", "{\"v\": 1}|{\"v\": 1, \"next\": {\"v\": 2, \"next\": {\"v\": 3}}}", "{\"next\": {\"v\": 1}}")]
    [InlineData("""{"type": "string", "format": "date"}""", "\"2024-02-29\"|\"2023-12-31\"|\"2000-02-29\"", "\"2023-02-29\"|\"1900-02-29\"|\"2023-04-31\"|\"2023-13-01\"")]
    [InlineData("""{"type": "string", "format": "date-time"}""", "\"2024-09-05T14:07:03Z\"|\"2024-09-05T14:07:03.25+02:00\"", "\"2024-09-05 14:07:03Z\"|\"2024-09-05T24:00:00Z\"")]
    [InlineData("""{"type": "string", "format": "uuid"}""", "\"123e4567-e89b-12d3-a456-426614174000\"", "\"123e4567e89b12d3a456426614174000\"")]
    [InlineData("""{"type": "string", "format": "email"}""", "\"ann.lee@example.co.uk\"", "\"ann@@example.com\"|\"ann\"")]
    [InlineData("""{"type": "string", "pattern": "^#[0-9]{3,5}(-[A-Z]+)?$"}""", "\"#123\"|\"#12345-AB\"", "\"#12\"|\"#123-\"|\"x#123\"")]
    [InlineData("""{"type": "string", "pattern": "a\\.b"}""", "\"xa.by\"|\"a.b\"", "\"axb\"")]
    [InlineData("""{"type": "string", "pattern": "^[^a]\\d$"}""", "\"\\\"1\"|\"\\\\1\"|\"b1\"", "\"a1\"|\"bb\"")]
    public void Schema_grammar_takes_valid_json_and_refuses_invalid(string schema, string valid, string invalid)
    {
        var grammar = Compile(schema);
        foreach (var text in valid.Split('|')) Assert.True(grammar.Matches(text), $"should match: {text}\n{grammar.Text}");
        foreach (var text in invalid.Split('|')) Assert.False(grammar.Matches(text), $"should not match: {text}\n{grammar.Text}");
    }

    [Theory]
    [InlineData("""{"type": "object", "minProperties": 1}""", "keyword 'minProperties' is not supported")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}""", "#/properties/a/format: format 'uri' is not enforced")]
    [InlineData("""{"type": "number", "minimum": 0}""", "'minimum' on a number")]
    [InlineData("""{"type": "array", "items": {"not": {}}}""", "#/items: keyword 'not' is not supported")]
    [InlineData("""{"allOf": [{}]}""", "keyword 'allOf' is not supported")]
    [InlineData("""{"type": "strin"}""", "unknown type 'strin'")]
    [InlineData("""{"$ref": "#/$defs/missing"}""", "points at nothing")]
    [InlineData("""{"type": "string", "pattern": "(?=a)b"}""", "lookaround")]
    [InlineData("""{"type": "string", "pattern": "(a)\\1"}""", "backreferences")]
    [InlineData("""{"type": "object", "properties": {"a": {}}, "required": ["b"]}""", "'b' is required but not among the properties")]
    [InlineData("""false""", "matches nothing")]
    public void Unsupported_keywords_are_refused_by_name(string schema, string message)
    {
        var e = Assert.Throws<GrammarException>(() => Compile(schema));
        Assert.Contains(message, e.Message);
    }

    /// <summary>Schemas whose every valid document is bounded, so a sampler that never finishes on its own still ends.</summary>
    static readonly string[] BoundedSchemas =
    [
        """{"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^#W[0-9]{7}$"}, "reason": {"enum": ["no longer needed", "ordered by mistake"]}, "count": {"type": "integer", "minimum": 1, "maximum": 20}}, "required": ["order_id", "reason"]}""",
        """{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3}, "price": {"type": "number"}, "ok": {"type": ["boolean", "null"]}}, "required": ["name", "price"]}""",
        """{"type": "array", "prefixItems": [{"type": "string", "format": "date"}, {"type": "string", "format": "uuid"}], "items": {"type": "integer", "minimum": -50, "maximum": 50}, "maxItems": 4}""",
        """{"anyOf": [{"type": "object", "properties": {"kind": {"const": "refund"}, "amount": {"type": "integer", "minimum": 0, "maximum": 999}}, "required": ["kind", "amount"]}, {"type": "object", "properties": {"kind": {"const": "exchange"}, "item": {"type": "string", "format": "email"}}, "required": ["kind"]}]}""",
        """{"$defs": {"address": {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}, "city": {"type": "string", "minLength": 1, "maxLength": 8}}, "required": ["zip", "city"]}}, "type": "object", "properties": {"home": {"$ref": "#/$defs/address"}, "work": {"$ref": "#/$defs/address"}, "when": {"type": "string", "format": "date-time"}}, "required": ["home"], "additionalProperties": false}""",
    ];

    [Fact]
    public void A_random_model_at_temperature_one_writes_only_valid_json()
    {
        var (model, tokenizer) = RandomJsonModel();
        var generator = new Generator(model, tokenizer);
        var prompt = tokenizer.Encode("{", addSpecialTokens: true);
        int total = 0, ended = 0;
        var failures = new List<string>();
        foreach (var schemaText in BoundedSchemas)
        {
            var schemaNode = JsonNode.Parse(schemaText)!;
            var grammar = Grammar.FromJsonSchema(schemaNode);
            var validator = JsonSchema.FromText(schemaText);
            var validation = new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = true };
            for (int seed = 0; seed < 600; seed++)
            {
                var sampler = new SamplerOptions(Temperature: 1, TopK: 0, TopP: 1, MinP: 0, Seed: (ulong)seed + 1);
                var result = generator.Generate(prompt, new GenerationOptions(MaxTokens: 600, Sampler: sampler, Grammar: new GrammarSpec(grammar)));
                total++;
                if (result.FinishReason == "stop") ended++;
                JsonElement document;
                try { document = JsonDocument.Parse(result.Text).RootElement; }
                catch (JsonException e) { failures.Add($"not JSON ({e.Message}): {result.Text}"); continue; }
                var evaluation = validator.Evaluate(document, validation);
                if (!evaluation.IsValid)
                    failures.Add($"invalid under {schemaText}: {result.Text}: " +
                                 string.Join("; ", (evaluation.Details ?? []).Where(d => d.Errors != null).SelectMany(d => d.Errors!.Select(kv => $"{d.InstanceLocation}: {kv.Value}"))));
            }
        }
        output.WriteLine($"{total} outputs, {ended} ended by the grammar, {failures.Count} invalid");
        Assert.True(failures.Count == 0, $"{failures.Count} of {total} outputs are invalid:\n" + string.Join("\n", failures.Take(10)));
        Assert.Equal(total, ended);
        Assert.True(total >= 3000);
    }

    /// <summary>A random model over a byte-level BPE vocabulary learned from JSON (so tokens straddle quotes, commas and
    /// numbers) — the worst writer there is at temperature 1.</summary>
    internal static (LlamaModel, Tokenizer) RandomJsonModel()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"hone-json-tokenizer-{Environment.ProcessId}-{Guid.NewGuid():N}");
        var texts = Enumerable.Range(0, 60).Select(i =>
            $$"""{"order_id": "#W{{1000000 + i * 7919}}", "reason": "no longer needed", "count": {{i % 20}}, "tags": ["a{{i}}", "b"], "price": {{i * 3.25}}, "ok": {{(i % 2 == 0 ? "true" : "null")}}, "home": {"zip": "{{10000 + i}}", "city": "Paris"}, "when": "2024-0{{i % 9 + 1}}-1{{i % 9}}T12:00:00Z"}""").ToList();
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 400), dir);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(dir);
        Directory.Delete(dir, true);
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = tokenizer.VocabSize, HiddenSize = 32, IntermediateSize = 64, Layers = 1, Heads = 2, KvHeads = 1,
            HeadDim = 16, RotaryDims = 16, MaxPositions = 1024, TiedEmbeddings = false,
        };
        var weights = LlamaWeights.CreateRandom(config, TensorType.F32, 11, std: 0.05f, embeddingStd: 0.5f);
        return (new LlamaModel(weights, new WorkerPool(1), maxContext: 1024), tokenizer);
    }
}

public class GrammarMaskTests
{
    [Fact]
    public void Every_mask_equals_trying_each_token_alone()
    {
        var (_, tokenizer) = JsonSchemaGrammarTests.RandomJsonModel();
        var vocabulary = TokenVocabulary.For(tokenizer);
        var grammars = new[]
        {
            Grammar.FromJsonSchema(JsonNode.Parse("""{"type": "object", "properties": {"order_id": {"type": "string"}, "count": {"type": "integer", "minimum": 3, "maximum": 250}, "tags": {"type": "array", "items": {"enum": ["a1", "b", "zip"]}}}, "required": ["order_id"]}""")!),
            Grammar.ParseGbnf("root ::= \"say \" (\"\\\"\" [a-z]* \"\\\"\" | [0-9]+) \"!\""),
            // Counted repetitions, whose levels share the masks of an unbounded loop cut to a budget.
            Grammar.FromJsonSchema(JsonNode.Parse("""{"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "code": {"type": "string", "pattern": "^[a-z0-9]{2,9}$"}, "mail": {"type": "string", "format": "email"}}, "required": ["name", "code", "mail"]}""")!),
        };
        var random = new Random(7);
        var mask = new ulong[vocabulary.MaskWords];
        foreach (var grammar in grammars)
            for (int walk = 0; walk < 30; walk++)
            {
                var matcher = new GrammarMatcher(grammar, vocabulary);
                for (int step = 0; step < 60 && !matcher.IsComplete; step++)
                {
                    matcher.FillAllowed(mask);
                    var allowed = new List<int>();
                    for (int id = 0; id < vocabulary.Count; id++)
                    {
                        bool expected = vocabulary.IsEnd(id) ? matcher.IsAccepting
                            : !vocabulary.Special[id] && vocabulary.Bytes[id].Length > 0 && matcher.WouldAccept(vocabulary.Bytes[id]);
                        bool actual = (mask[id >> 6] >> (id & 63) & 1) != 0;
                        Assert.True(expected == actual, $"token {id} '{tokenizer.TokenText(id)}': mask says {actual}, trying it says {expected}");
                        if (actual && !vocabulary.IsEnd(id)) allowed.Add(id);
                    }
                    if (allowed.Count == 0) break;
                    Assert.True(matcher.Accept(allowed[random.Next(allowed.Count)]));
                }
            }
    }

    [Fact]
    public void A_lazy_grammar_starts_at_its_trigger_and_not_before()
    {
        var (_, tokenizer) = JsonSchemaGrammarTests.RandomJsonModel();
        var vocabulary = TokenVocabulary.For(tokenizer);
        var grammar = Grammar.ParseGbnf("root ::= \"<call>\" [0-9]{2} \"</call>\"");
        var constraint = new GrammarConstraint(new GrammarSpec(grammar, ["<call>"]), vocabulary);
        var mask = new ulong[vocabulary.MaskWords];
        foreach (int id in tokenizer.Encode("free text <ca", addSpecialTokens: false))
        {
            Assert.False(constraint.TryFillAllowed(mask));
            constraint.Accept(id);
        }
        foreach (int id in tokenizer.Encode("ll>4", addSpecialTokens: false)) constraint.Accept(id);
        Assert.True(constraint.IsActive);
        Assert.True(constraint.TryFillAllowed(mask));
        int five = tokenizer.Encode("5", addSpecialTokens: false).Single();
        int letter = tokenizer.Encode("x", addSpecialTokens: false).Single();
        Assert.True((mask[five >> 6] >> (five & 63) & 1) != 0);
        Assert.False((mask[letter >> 6] >> (letter & 63) & 1) != 0);
        Assert.Throws<GrammarException>(() => constraint.Accept(letter));
        constraint.Accept(five);
        foreach (int id in tokenizer.Encode("</call>", addSpecialTokens: false)) constraint.Accept(id);
        Assert.True(constraint.IsComplete);
    }
}

public class GrammarTriggerTests
{
    [Theory]
    [InlineData("  {\"a\"", true)]
    [InlineData("{", true)]
    [InlineData("Sure: {\"a\"", false)]
    public void A_start_only_trigger_counts_only_at_the_start(string text, bool active)
    {
        var (_, tokenizer) = JsonSchemaGrammarTests.RandomJsonModel();
        var vocabulary = TokenVocabulary.For(tokenizer);
        var grammar = Grammar.ParseGbnf("root ::= \"{\" [^}]* \"}\"");
        var constraint = new GrammarConstraint(new GrammarSpec(grammar, ["{"], TriggerAtStartOnly: true), vocabulary);
        foreach (int id in tokenizer.Encode(text, addSpecialTokens: false)) constraint.Accept(id);
        Assert.Equal(active, constraint.IsActive);
    }
}
