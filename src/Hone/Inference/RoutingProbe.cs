using Hone.Experts;
using Hone.Formats;
using Hone.Model;

namespace Hone.Inference;

/// <summary>
/// Router telemetry of a mixture-of-experts model on a text: the text is tokenized and run as prompts in windows of
/// <c>context</c> tokens (each from an empty cache, like perplexity's windows), every sparse layer's routing recorded
/// (<see cref="RoutingStatistics"/>). What `hone inspect --routing --data F` prints.
/// </summary>
public static class RoutingProbe
{
    /// <param name="maxTokens">stop after this many tokens of the text</param>
    public static (RoutingStatistics Statistics, int Tokens, int Windows) Run(string model, string textFile, int context, int maxTokens, int threads)
    {
        int positions;
        using (var checkpoint = Checkpoint.Open(model)) positions = checkpoint.Config.MaxPositions;
        using var loaded = LoadedModel.Open(model, null, threads, Math.Min(context, positions)); // windows fit the model's context
        var c = loaded.Weights.Config;
        if (!c.IsMixtureOfExperts) throw new NotSupportedException($"{model} is a dense model ({c.Architecture}): it has no router to inspect");
        if (!File.Exists(textFile)) throw new FileNotFoundException($"{textFile}: no such file", textFile);
        var tokens = loaded.Tokenizer.Encode(File.ReadAllText(textFile));
        if (tokens.Length == 0) throw new DataFormatException(textFile, 0, "the text has no tokens");
        int total = Math.Min(tokens.Length, maxTokens), windowSize = Math.Min(context, loaded.Model.MaxContext), windows = 0;
        var statistics = new RoutingStatistics(c.Layers, c.Experts, c.ExpertsPerToken);
        loaded.Model.Routing = statistics;
        try
        {
            var logits = new float[c.VocabSize];
            for (int start = 0; start < total; start += windowSize, windows++)
            {
                loaded.Model.Reset();
                loaded.Model.Forward(tokens.AsSpan(start, Math.Min(windowSize, total - start)), logits, promptRows: true);
            }
        }
        finally { loaded.Model.Routing = null; }
        return (statistics, total, windows);
    }
}
