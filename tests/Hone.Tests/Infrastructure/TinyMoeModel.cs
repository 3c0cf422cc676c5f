using Hone.Model;

namespace Hone.Tests.Infrastructure;

/// <summary>A tiny random Mixtral (4 experts, top 2) with a real byte-level BPE tokenizer, built once per test run as a
/// Hugging Face directory: enough for the commands that run mixtures of experts. Context 128, 2 layers, hidden 32.</summary>
public static class TinyMoeModel
{
    static readonly Lazy<string> Built = new(() => TinyChatModel.Build("moe", vocab => new ModelConfig
    {
        Architecture = "mixtral", VocabSize = vocab, HiddenSize = 32, IntermediateSize = 64, Layers = 2, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = 128, Experts = 4, ExpertsPerToken = 2, ExpertFeedForwardSize = 64, NormalizeTopK = true, RouterAuxLossCoef = 0.02,
    }, seed: 7, std: 0.2f, embeddingStd: 0.5f));

    public static string Path => Built.Value;

    /// <summary>A Qwen2-MoE of the same size: attention biases, unnormalized top-2 of 4 and a shared expert.</summary>
    static readonly Lazy<string> BuiltQwen = new(() => TinyChatModel.Build("qwen-moe", vocab => new ModelConfig
    {
        Architecture = "qwen2_moe", VocabSize = vocab, HiddenSize = 32, IntermediateSize = 64, Layers = 2, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = 128, AttentionBias = true, Experts = 4, ExpertsPerToken = 2, ExpertFeedForwardSize = 32,
        SharedExpertFeedForwardSize = 48, NormalizeTopK = false, RouterAuxLossCoef = 0.001,
    }, seed: 9, std: 0.2f, embeddingStd: 0.5f));

    public static string QwenPath => BuiltQwen.Value;
}
