using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;

namespace Hone.Tests.Infrastructure;

/// <summary>A tiny random Mixtral (4 experts, top 2) with a real byte-level BPE tokenizer, built once per test run as a
/// Hugging Face directory: enough for the commands that run mixtures of experts. Context 128, 2 layers, hidden 32.</summary>
public static class TinyMoeModel
{
    static readonly Lazy<string> Built = new(() =>
    {
        var dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"hone-tiny-moe-{Environment.ProcessId}");
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        var texts = Enumerable.Range(0, 40).Select(i =>
            $"Order {i} ships in {i % 5 + 1} days. The customer asked where order {i} is, and the answer was that it is on its way.").ToList();
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 320, ChatTemplate: ChatFormat.PlainTemplate), dir);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(dir);
        var config = new ModelConfig
        {
            Architecture = "mixtral", VocabSize = tokenizer.VocabSize, HiddenSize = 32, IntermediateSize = 64, Layers = 2, Heads = 2, KvHeads = 1,
            HeadDim = 16, RotaryDims = 16, MaxPositions = 128, Experts = 4, ExpertsPerToken = 2, ExpertFeedForwardSize = 64, NormalizeTopK = true,
        };
        using var w = LlamaWeights.CreateRandom(config, TensorType.F32, 7, std: 0.2f, embeddingStd: 0.5f);
        Hone.Transforms.ModelConverter.Write(w, null, dir, TensorType.F32, new List<string>());
        return dir;
    });

    public static string Path => Built.Value;
}
