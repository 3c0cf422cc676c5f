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
