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

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Temperature, TopK, TopP, MinP, RepeatPenalty, PresencePenalty, FrequencyPenalty, PenaltyWindow, Seed })
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
}
