using System.CommandLine;
using Hone.Inference;

namespace Hone.Cli.Commands;

/// <summary>The sampling flags shared by generate and chat.</summary>
internal sealed class SamplingOptions
{
    public readonly Option<float> Temperature = new("--temperature", "--temp") { Description = "0 = greedy (argmax)", DefaultValueFactory = _ => 0.8f };
    public readonly Option<int> TopK = new("--top-k") { Description = "keep the k most likely tokens (0 = off)", DefaultValueFactory = _ => 40 };
    public readonly Option<float> TopP = new("--top-p") { Description = "keep the smallest set with this much probability (1 = off)", DefaultValueFactory = _ => 0.95f };
    public readonly Option<float> MinP = new("--min-p") { Description = "drop tokens below this fraction of the best one's probability (0 = off)", DefaultValueFactory = _ => 0.05f };
    public readonly Option<float> RepeatPenalty = new("--repeat-penalty") { Description = "penalize recent tokens (1 = off)", DefaultValueFactory = _ => 1f };
    public readonly Option<float> PresencePenalty = new("--presence-penalty") { Description = "subtract from tokens already present", DefaultValueFactory = _ => 0f };
    public readonly Option<float> FrequencyPenalty = new("--frequency-penalty") { Description = "subtract per occurrence", DefaultValueFactory = _ => 0f };
    public readonly Option<int> PenaltyWindow = new("--repeat-last-n") { Description = "how many recent tokens the penalties see (-1 = all)", DefaultValueFactory = _ => 64 };
    public readonly Option<ulong> Seed = new("--seed", "-s") { Description = "random seed (same seed, same output)", DefaultValueFactory = _ => 42UL };
    public readonly Option<string?> JsonSchema = new("--json-schema")
    {
        Description = "constrain the output to JSON valid under this JSON Schema file (type, properties, required, additionalProperties " +
                      "[default false], items, prefixItems, min/maxItems, enum, const, anyOf/oneOf, $ref/$defs, min/maxLength, pattern, " +
                      "format date|time|date-time|uuid|email, integer minimum/maximum); other keywords are refused by name",
    };
    public readonly Option<string?> Grammar = new("--grammar") { Description = "constrain the output to a llama.cpp GBNF grammar file (its root rule)" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Temperature, TopK, TopP, MinP, RepeatPenalty, PresencePenalty, FrequencyPenalty, PenaltyWindow, Seed, JsonSchema, Grammar })
            c.Options.Add(o);
    }

    /// <summary>The sampler options, checked (their limits are the sampler's own) before the model loads.</summary>
    public SamplerOptions Read(ParseResult r)
    {
        var options = new SamplerOptions(r.GetValue(Temperature), r.GetValue(TopK), r.GetValue(TopP), r.GetValue(MinP),
            r.GetValue(RepeatPenalty), r.GetValue(PresencePenalty), r.GetValue(FrequencyPenalty), r.GetValue(PenaltyWindow), r.GetValue(Seed));
        options.Validate();
        return options;
    }

    /// <summary>The grammar of --json-schema or --grammar (compiled before the model loads, so a bad file fails fast), or null.</summary>
    public Grammars.GrammarSpec? ReadGrammar(ParseResult r)
    {
        string? schemaFile = r.GetValue(JsonSchema), grammarFile = r.GetValue(Grammar);
        if (schemaFile != null && grammarFile != null) throw new ArgumentException("give --json-schema or --grammar, not both");
        if (grammarFile != null) return new Grammars.GrammarSpec(Grammars.Grammar.FromGbnfFile(grammarFile));
        if (schemaFile == null) return null;
        return new Grammars.GrammarSpec(Grammars.Grammar.FromJsonSchemaFile(schemaFile));
    }
}
