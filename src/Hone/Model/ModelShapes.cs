namespace Hone.Model;

/// <summary>Architectures of well-known small models, for random-weight benchmarks and tests.</summary>
public static class ModelShapes
{
    static readonly Dictionary<string, ModelConfig> Shapes = new(StringComparer.OrdinalIgnoreCase)
    {
        // HuggingFaceTB/SmolLM2-135M
        ["smollm2-135m"] = new ModelConfig
        {
            Architecture = "llama", VocabSize = 49152, HiddenSize = 576, IntermediateSize = 1536, Layers = 30, Heads = 9, KvHeads = 3,
            HeadDim = 64, RotaryDims = 64, RopeTheta = 100000, RmsNormEps = 1e-5f, MaxPositions = 8192, TiedEmbeddings = true,
        },
        // karpathy/llama2.c stories15M
        ["stories15m"] = new ModelConfig
        {
            Architecture = "llama", VocabSize = 32000, HiddenSize = 288, IntermediateSize = 768, Layers = 6, Heads = 6, KvHeads = 6,
            HeadDim = 48, RotaryDims = 48, RopeTheta = 10000, RmsNormEps = 1e-5f, MaxPositions = 256, TiedEmbeddings = true,
        },
        // Mixtures of experts of small real shapes (random weights): Mixtral's layout at 512 wide, 8 experts, top 2
        // (140M parameters, 64M used per token, a third of the model being its two embedding tables), and Qwen2-MoE's at
        // 512 wide, 32 experts, top 4, with a shared expert (152M, 64M).
        ["mixtral-small"] = new ModelConfig
        {
            Architecture = "mixtral", VocabSize = 32000, HiddenSize = 512, IntermediateSize = 1024, Layers = 8, Heads = 8, KvHeads = 4,
            HeadDim = 64, RotaryDims = 64, RopeTheta = 1000000, RmsNormEps = 1e-5f, MaxPositions = 4096, TiedEmbeddings = false,
            Experts = 8, ExpertsPerToken = 2, ExpertFeedForwardSize = 1024, NormalizeTopK = true,
        },
        ["qwen2moe-small"] = new ModelConfig
        {
            Architecture = "qwen2_moe", VocabSize = 32000, HiddenSize = 512, IntermediateSize = 1024, Layers = 8, Heads = 8, KvHeads = 4,
            HeadDim = 64, RotaryDims = 64, RopeTheta = 1000000, RmsNormEps = 1e-6f, MaxPositions = 4096, TiedEmbeddings = false, AttentionBias = true,
            Experts = 32, ExpertsPerToken = 4, ExpertFeedForwardSize = 256, SharedExpertFeedForwardSize = 1024,
        },
        // A few-megabyte model for smoke tests and the quick default of `hone bench`.
        ["tiny"] = new ModelConfig
        {
            Architecture = "llama", VocabSize = 4096, HiddenSize = 128, IntermediateSize = 384, Layers = 4, Heads = 4, KvHeads = 2,
            HeadDim = 32, RotaryDims = 32, RopeTheta = 10000, RmsNormEps = 1e-5f, MaxPositions = 1024, TiedEmbeddings = false,
        },
    };

    public static IEnumerable<string> Names => Shapes.Keys;

    public static ModelConfig Get(string name) => Shapes.TryGetValue(name, out var c) ? c
        : throw new ArgumentException($"unknown model shape '{name}'; known: {string.Join(", ", Shapes.Keys)}");
}
