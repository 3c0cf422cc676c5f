using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;

namespace Hone.Tests.Infrastructure;

/// <summary>A tiny random Llama with a real byte-level BPE tokenizer and Hone's chat template (tokenizer.json,
/// tokenizer_config.json; the plain template, which renders no tools), built once per test run as a Hugging Face directory: enough for every command (generate,
/// train, perplexity, convert) without shared data. Context 128 tokens, 2 layers, hidden 32.</summary>
public static class TinyChatModel
{
    public const int Context = 128;
    public const int Layers = 2;

    static readonly Lazy<string> Built = new(() => Build("chat", vocab => new ModelConfig
    {
        Architecture = "llama", VocabSize = vocab, HiddenSize = 32, IntermediateSize = 64, Layers = Layers, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = Context, TiedEmbeddings = false,
    }, seed: 5, std: 0.05f, embeddingStd: 0.1f));

    /// <summary>A Hugging Face directory "hone-tiny-NAME-PID" under the temp folder: the byte-level BPE tokenizer (320
    /// tokens, plain chat template) trained on a few order sentences, and random F32 weights of the config made for its
    /// vocabulary size.</summary>
    internal static string Build(string name, Func<int, ModelConfig> config, int seed, float std, float embeddingStd)
    {
        var dir = TestFolders.DeletedAtExit(System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"hone-tiny-{name}-{Environment.ProcessId}"));
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        var texts = Enumerable.Range(0, 40).Select(i =>
            $"Order {i} ships in {i % 5 + 1} days. The customer asked where order {i} is, and the answer was that it is on its way.").ToList();
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 320, ChatTemplate: ChatFormat.PlainTemplate), dir);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(dir);
        using var w = LlamaWeights.CreateRandom(config(tokenizer.VocabSize), TensorType.F32, seed, std, embeddingStd);
        Hone.Transforms.ModelConverter.Write(w, null, dir, TensorType.F32, new List<string>());
        return dir;
    }

    public static string Path => Built.Value;
}
