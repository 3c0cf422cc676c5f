using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;

namespace Hone.Inference;

/// <summary>What commands need to run a model: checkpoint, weights, tokenizer, optional PEFT adapter, a KV-cached
/// model and the thread pool, opened and validated in one place.</summary>
public sealed class LoadedModel : IDisposable
{
    public Checkpoint Checkpoint { get; }
    public LlamaWeights Weights { get; }
    public Tokenizer Tokenizer { get; }
    public WorkerPool Pool { get; }
    public LlamaModel Model { get; }
    public IReadOnlyDictionary<string, LoraAdapter> Adapters { get; }
    public string? AdapterPath { get; }

    LoadedModel(Checkpoint c, LlamaWeights w, Tokenizer t, WorkerPool p, LlamaModel m, Dictionary<string, LoraAdapter> a, string? adapterPath)
    {
        Checkpoint = c; Weights = w; Tokenizer = t; Pool = p; Model = m; Adapters = a; AdapterPath = adapterPath;
    }

    /// <summary>The context used when none is asked for: the model's, capped here to bound the KV cache's memory.</summary>
    public const int DefaultContextCap = 4096;

    /// <param name="context">KV cache length (0 = the model's context, capped at <see cref="DefaultContextCap"/>); at most
    /// the model's context</param>
    /// <param name="threads">worker threads, 0 = one per core</param>
    /// <param name="precision">how activations meet the weights (<see cref="ComputePrecision"/>): evaluation passes Exact</param>
    public static LoadedModel Open(string path, string? adapter = null, int threads = 0, int context = 0, int maxBatch = 512,
        ComputePrecision precision = ComputePrecision.Fast)
    {
        if (context < 0) throw new ArgumentException($"--ctx must be at least 0 (0 = the model's context, at most {DefaultContextCap}), found {context}");
        if (threads < 0) throw new ArgumentException($"--threads must be at least 0 (0 = one per core), found {threads}");
        if (maxBatch < 1) throw new ArgumentException($"the batch must be at least 1 token, found {maxBatch}");
        var checkpoint = Checkpoint.Open(path);
        LlamaWeights? weights = null;
        WorkerPool? pool = null;
        var adapters = new Dictionary<string, LoraAdapter>();
        try
        {
            // Limits that depend on the model, before anything large is allocated.
            var config = checkpoint.Config;
            if (context > config.MaxPositions)
                throw new ArgumentException($"--ctx {context} is more than the model's context of {config.MaxPositions} tokens");
            int ctx = context > 0 ? context : Math.Min(config.MaxPositions, DefaultContextCap);
            long weightBytes = checkpoint.Tensors.Sum(t => t.ByteLength);
            MemoryBudget.Require(LlamaModel.RequiredBytes(config, ctx, maxBatch) + weightBytes,
                $"{checkpoint.Path} with a context of {ctx} tokens (its weights and KV cache)");
            var tokenizer = checkpoint.LoadTokenizer();
            if (tokenizer.VocabSize > checkpoint.Config.VocabSize)
                throw new Formats.ModelFormatException(path, $"the tokenizer has {tokenizer.VocabSize} tokens but the model only {checkpoint.Config.VocabSize}");
            weights = LlamaWeights.Load(checkpoint);
            if (adapter != null) adapters = PeftAdapter.Load(adapter, weights);
            pool = new WorkerPool(WorkerPool.ResolveThreadCount(threads));
            var model = new LlamaModel(weights, pool, ctx, maxBatch) { Precision = precision };
            foreach (var (target, a) in adapters) model.Adapters[target] = a;
            return new LoadedModel(checkpoint, weights, tokenizer, pool, model, adapters, adapter);
        }
        catch
        {
            foreach (var a in adapters.Values) a.Dispose();
            weights?.Dispose(); pool?.Dispose(); checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>Prompt ids for plain text: BOS first when the tokenizer adds one (an empty prompt is BOS alone).</summary>
    public int[] EncodePrompt(string text) => Tokenizer.Encode(text, addSpecialTokens: true, parseSpecialTokens: true) is { Length: > 0 } ids
        ? ids
        : Tokenizer.BosId is int bos ? [bos] : throw new ArgumentException("the prompt is empty and the tokenizer has no BOS token");

    public void Dispose()
    {
        Model.Dispose();
        foreach (var a in Adapters.Values) a.Dispose();
        Weights.Dispose();
        Pool.Dispose();
        Checkpoint.Dispose();
    }
}
