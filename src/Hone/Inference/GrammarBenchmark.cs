using System.Diagnostics;
using System.Text.Json.Nodes;
using Hone.Grammars;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;
using Hone.ToolCalls;

namespace Hone.Inference;

/// <summary>What <see cref="GrammarBenchmark"/> measures: random weights of a shape with the tokenizer's vocabulary.</summary>
/// <param name="Outputs">outputs sampled per grammar (temperature 1, seeds 1..Outputs); the first meets every state cold</param>
public sealed record GrammarBenchOptions(Tokenizer Tokenizer, string TokenizerName, string Shape = "smollm2-135m", TensorType? Type = null,
    int Threads = 0, int Outputs = 8, int MaxTokens = 192, ulong Seed = 1);

/// <param name="CompileMs">schema (or tools) → GBNF → automaton</param>
/// <param name="DecodeMsPerToken">the model's forward pass for one token</param>
/// <param name="MaskMsPerTokenCold">mask + advance per token over the first output (states met for the first time)</param>
/// <param name="MaskMsPerTokenWarm">the same over the other outputs (most states already met)</param>
/// <param name="SampleMsPerToken">sampling among the allowed tokens (temperature 1, full distribution)</param>
/// <param name="MasksComputed">distinct states whose mask was computed (the rest were cache hits)</param>
public sealed record GrammarBenchCase(string Name, double CompileMs, int Outputs, int Tokens, int Completed, double DecodeMsPerToken,
    double MaskMsPerTokenCold, double MaskMsPerTokenWarm, double MaskMsPerTokenAll, double SampleMsPerToken, int MasksComputed, int ColdTokens)
{
    public double ShareCold => MaskMsPerTokenCold / DecodeMsPerToken;
    public double ShareWarm => MaskMsPerTokenWarm / DecodeMsPerToken;
    public double ShareAll => MaskMsPerTokenAll / DecodeMsPerToken;
}

public sealed record GrammarBenchResult(string Model, string TokenizerName, int Vocabulary, int Threads, double VocabularyMs, IReadOnlyList<GrammarBenchCase> Cases)
{
    public const string Protocol =
        "random weights of the shape with the tokenizer's vocabulary; per grammar, Outputs outputs at temperature 1 (top-k 0, top-p 1, min-p 0, seeds 1..n) " +
        "from the prompt \"Reply in JSON:\", each until the grammar completes or MaxTokens; mask = computing the allowed-token mask and advancing the " +
        "grammar by the chosen token, per generated token, over the first output (cold: its states are new) and the others (warm); share = mask / " +
        "one decode step's forward pass; before timing, each grammar is compiled and run for 2 outputs on a copy (JIT warm-up), so compile " +
        "= schema → GBNF → automaton without JIT and cold = states met for the first time; the vocabulary index (once per tokenizer) reported apart";
}

/// <summary>How much constrained decoding costs next to the model: the three grammars of the README's table (a nested
/// object schema, an enum-heavy schema, and a tool set of 10 tools in the Hermes call format, constrained from the first
/// token as tool_choice "required" does).</summary>
public static class GrammarBenchmark
{
    public static GrammarBenchResult Run(GrammarBenchOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        int threads = WorkerPool.ResolveThreadCount(o.Threads);
        using var pool = new WorkerPool(threads);
        var config = ModelShapes.Get(o.Shape) with { VocabSize = o.Tokenizer.VocabSize };
        log($"building a random {o.Shape} model with {config.VocabSize} tokens ({(o.Type ?? TensorType.F32).Name()})...");
        using var weights = LlamaWeights.CreateRandom(config, o.Type ?? TensorType.F32, (int)o.Seed);
        var clock = Stopwatch.StartNew();
        var vocabulary = TokenVocabulary.For(o.Tokenizer);
        double vocabularyMs = clock.Elapsed.TotalMilliseconds;
        log($"vocabulary index: {vocabularyMs:F0} ms");
        var prompt = o.Tokenizer.Encode("Reply in JSON:", addSpecialTokens: true);
        using var model = new LlamaModel(weights, pool, maxContext: prompt.Length + o.MaxTokens + 1);
        var cases = new List<GrammarBenchCase>();
        // Each grammar compiled and run once untimed, on its own copy: the timings below have the code warm (JIT) and
        // every grammar's states cold (each case compiles a fresh grammar, whose masks start empty).
        foreach (var (name, compile) in Grammars()) Measure(name, 0, compile(), model, vocabulary, prompt, o with { Outputs = 2 }, _ => { });
        foreach (var (name, compile) in Grammars())
        {
            clock.Restart();
            var grammar = compile();
            double compileMs = clock.Elapsed.TotalMilliseconds;
            cases.Add(Measure(name, compileMs, grammar, model, vocabulary, prompt, o, log));
        }
        return new GrammarBenchResult($"{o.Shape} (random, {(o.Type ?? TensorType.F32).Name()})", o.TokenizerName, vocabulary.Count, threads, vocabularyMs, cases);
    }

    static GrammarBenchCase Measure(string name, double compileMs, Grammar grammar, LlamaModel model, TokenVocabulary vocabulary, int[] prompt,
        GrammarBenchOptions o, Action<string> log)
    {
        var logits = new float[model.Config.VocabSize];
        var mask = new ulong[vocabulary.MaskWords];
        long decodeTicks = 0, sampleTicks = 0, maskCold = 0, maskWarm = 0;
        int tokens = 0, coldTokens = 0, completed = 0;
        var spec = new GrammarSpec(grammar);
        int masksBefore = new GrammarMatcher(grammar, vocabulary).MasksComputed;
        for (int output = 0; output < o.Outputs; output++)
        {
            model.Reset();
            model.Forward(prompt, logits, promptRows: true);
            var constraint = new GrammarConstraint(spec, vocabulary);
            var sampler = new Sampler(new SamplerOptions(Temperature: 1, TopK: 0, TopP: 1, MinP: 0, Seed: o.Seed + (ulong)output));
            for (int i = 0; i < o.MaxTokens; i++)
            {
                if (constraint.IsComplete) { completed++; break; }
                long t0 = Stopwatch.GetTimestamp();
                constraint.TryFillAllowed(mask);
                long t1 = Stopwatch.GetTimestamp();
                int token = sampler.Sample(logits.AsSpan(0, Math.Min(logits.Length, vocabulary.Count)), mask);
                long t2 = Stopwatch.GetTimestamp();
                constraint.Accept(token);
                long t3 = Stopwatch.GetTimestamp();
                long spent = (t1 - t0) + (t3 - t2);
                if (output == 0) { maskCold += spent; coldTokens++; } else maskWarm += spent;
                sampleTicks += t2 - t1;
                tokens++;
                if (vocabulary.IsEnd(token)) { completed++; break; }
                long t4 = Stopwatch.GetTimestamp();
                model.Forward(new ReadOnlySpan<int>(in token), logits);
                decodeTicks += Stopwatch.GetTimestamp() - t4;
            }
        }
        double Ms(long ticks, int count) => count == 0 ? 0 : ticks * 1000.0 / Stopwatch.Frequency / count;
        int warmTokens = tokens - coldTokens;
        var result = new GrammarBenchCase(name, compileMs, o.Outputs, tokens, completed, Ms(decodeTicks, tokens),
            Ms(maskCold, coldTokens), Ms(maskWarm, warmTokens), Ms(maskCold + maskWarm, tokens), Ms(sampleTicks, tokens),
            new GrammarMatcher(grammar, vocabulary).MasksComputed - masksBefore, coldTokens);
        log($"  {name}: compile {compileMs:F1} ms; {tokens} tokens in {o.Outputs} outputs ({completed} complete); decode {result.DecodeMsPerToken:F2} ms/token; " +
            $"mask {result.MaskMsPerTokenCold * 1000:F0} µs cold ({result.ShareCold:P1}), {result.MaskMsPerTokenWarm * 1000:F0} µs warm ({result.ShareWarm:P1}); " +
            $"{result.MasksComputed} masks computed");
        return result;
    }

    /// <summary>The three grammars of the benchmark, each compiled from scratch when called.</summary>
    public static IEnumerable<(string Name, Func<Grammar> Compile)> Grammars()
    {
        yield return ("nested object schema", () => Grammar.FromJsonSchema(JsonNode.Parse(NestedSchema)!));
        yield return ("enum-heavy schema", () => Grammar.FromJsonSchema(JsonNode.Parse(EnumSchema())!));
        yield return ("10 tools (Hermes calls)", () =>
        {
            var builder = new GbnfBuilder(new JsonSchemaOptions(AdditionalPropertiesDefault: false));
            var format = ToolCallFormat.All.Single(f => f.Name == "hermes");
            var tools = ToolDefinition.ParseList(JsonNode.Parse(RetailTools), "tools");
            return Grammar.ParseGbnf(builder.Build(format.AddCallRules(builder, tools, parallel: true)), "tools");
        });
    }

    public const string NestedSchema = """
        {"type": "object", "required": ["order_id", "customer", "items", "status"], "properties": {
          "order_id": {"type": "string", "pattern": "^#W[0-9]{7}$"},
          "customer": {"type": "object", "required": ["name", "email", "address"], "properties": {
            "name": {"type": "string", "maxLength": 40}, "email": {"type": "string", "format": "email"},
            "address": {"type": "object", "required": ["street", "city", "zip", "country"], "properties": {
              "street": {"type": "string"}, "city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
              "country": {"enum": ["USA", "Canada", "Mexico"]}}}}},
          "items": {"type": "array", "minItems": 1, "maxItems": 5, "items": {"type": "object", "required": ["product_id", "quantity", "price"], "properties": {
            "product_id": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1, "maximum": 10}, "price": {"type": "number"},
            "options": {"type": "object", "additionalProperties": {"type": "string"}}}}},
          "status": {"enum": ["pending", "processed", "delivered", "cancelled", "return requested", "exchange requested"]},
          "placed": {"type": "string", "format": "date-time"},
          "notes": {"type": ["string", "null"]}}}
        """;

    static string EnumSchema()
    {
        string Enum(string prefix, int n) => "[" + string.Join(", ", Enumerable.Range(0, n).Select(i => $"\"{prefix} {i:D3}\"")) + "]";
        return """
            {"type": "object", "required": ["category", "product", "color", "size", "country", "reason", "priority", "channel"], "properties": {
              "category": {"enum": CATEGORIES}, "product": {"enum": PRODUCTS},
              "color": {"enum": ["red", "orange", "yellow", "green", "blue", "indigo", "violet", "black", "white", "grey", "brown", "pink"]},
              "size": {"enum": ["XXS", "XS", "S", "M", "L", "XL", "XXL", "3XL"]}, "country": {"enum": COUNTRIES},
              "reason": {"enum": ["no longer needed", "ordered by mistake", "damaged", "wrong item", "late delivery", "better price elsewhere"]},
              "priority": {"enum": ["low", "medium", "high", "urgent"]}, "channel": {"enum": ["email", "chat", "phone", "in store"]}}}
            """.Replace("CATEGORIES", Enum("category", 30)).Replace("PRODUCTS", Enum("product", 200)).Replace("COUNTRIES", Enum("country", 60));
    }

    /// <summary>Ten tools after τ-bench retail's (names and arguments).</summary>
    public const string RetailTools = """
        [
          {"type": "function", "function": {"name": "find_user_id_by_email", "description": "Find a user id by e-mail.", "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}}},
          {"type": "function", "function": {"name": "find_user_id_by_name_zip", "description": "Find a user id by name and zip code.", "parameters": {"type": "object", "properties": {"first_name": {"type": "string"}, "last_name": {"type": "string"}, "zip": {"type": "string"}}, "required": ["first_name", "last_name", "zip"]}}},
          {"type": "function", "function": {"name": "get_user_details", "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}}, "required": ["user_id"]}}},
          {"type": "function", "function": {"name": "get_order_details", "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^#W[0-9]{7}$"}}, "required": ["order_id"]}}},
          {"type": "function", "function": {"name": "get_product_details", "parameters": {"type": "object", "properties": {"product_id": {"type": "string"}}, "required": ["product_id"]}}},
          {"type": "function", "function": {"name": "list_all_product_types", "parameters": {"type": "object", "properties": {}}}},
          {"type": "function", "function": {"name": "cancel_pending_order", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "reason": {"enum": ["no longer needed", "ordered by mistake"]}}, "required": ["order_id", "reason"]}}},
          {"type": "function", "function": {"name": "modify_pending_order_address", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "address1": {"type": "string"}, "address2": {"type": "string"}, "city": {"type": "string"}, "state": {"type": "string"}, "country": {"type": "string"}, "zip": {"type": "string"}}, "required": ["order_id", "address1", "address2", "city", "state", "country", "zip"]}}},
          {"type": "function", "function": {"name": "return_delivered_order_items", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "item_ids": {"type": "array", "items": {"type": "string"}}, "payment_method_id": {"type": "string"}}, "required": ["order_id", "item_ids", "payment_method_id"]}}},
          {"type": "function", "function": {"name": "transfer_to_human_agents", "parameters": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}}
        ]
        """;
}
