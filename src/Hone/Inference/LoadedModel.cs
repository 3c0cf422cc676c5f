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
    /// <summary>The resident experts of a mixture of experts opened with an expert cache, else null.</summary>
    public ExpertCache? ExpertCache { get; }

    LoadedModel(Checkpoint c, LlamaWeights w, Tokenizer t, WorkerPool p, LlamaModel m, Dictionary<string, LoraAdapter> a, string? adapterPath, ExpertCache? cache)
    {
        Checkpoint = c; Weights = w; Tokenizer = t; Pool = p; Model = m; Adapters = a; AdapterPath = adapterPath; ExpertCache = cache;
    }

    /// <summary>The context used when none is asked for: the model's, capped here to bound the KV cache's memory.</summary>
    public const int DefaultContextCap = 4096;

    /// <param name="context">KV cache length (0 = the model's context, capped at <see cref="DefaultContextCap"/>); at most
    /// the model's context</param>
    /// <param name="threads">worker threads, 0 = one per core</param>
    /// <param name="precision">how activations meet the weights (<see cref="ComputePrecision"/>): evaluation passes Exact</param>
    /// <param name="cacheType">how the KV cache holds keys and values (<see cref="KvCacheType"/>)</param>
    /// <param name="expertCache">a mixture of experts: leave the experts in the file and keep this much of them resident
    /// (<see cref="ExpertCacheOptions"/>); null loads every expert</param>
    public static LoadedModel Open(string path, string? adapter = null, int threads = 0, int context = 0, int maxBatch = 512,
        ComputePrecision precision = ComputePrecision.Fast, KvCacheType cacheType = KvCacheType.F32, ExpertCacheOptions? expertCache = null)
    {
        CheckLimits(context, threads);
        if (maxBatch < 1) throw new ArgumentException($"the batch must be at least 1 token, found {maxBatch}");
        var checkpoint = Checkpoint.Open(path);
        LlamaWeights? weights = null;
        WorkerPool? pool = null;
        var adapters = new Dictionary<string, LoraAdapter>();
        ExpertCache? cache = null;
        try
        {
            if (expertCache != null && !checkpoint.Config.IsMixtureOfExperts)
                throw new ArgumentException($"--expert-cache applies to mixtures of experts; {checkpoint.Path} is dense");
            // Limits that depend on the model, before anything large is allocated.
            var config = checkpoint.Config;
            int ctx = ResolveContext(config, context);
            long weightBytes = checkpoint.Tensors.Where(t => expertCache == null || !ExpertCache.IsExpertProjection(t.Name)).Sum(t => t.ByteLength);
            MemoryBudget.Require(LlamaModel.RequiredBytes(config, ctx, maxBatch, cacheType) + weightBytes,
                $"{checkpoint.Path} with a context of {ctx} tokens (its weights and KV cache)");
            var tokenizer = LoadTokenizer(checkpoint);
            weights = LlamaWeights.Load(checkpoint, new WeightLoadOptions(ExpertsInPlace: expertCache != null));
            if (adapter != null) adapters = PeftAdapter.Load(adapter, weights);
            pool = new WorkerPool(WorkerPool.ResolveThreadCount(threads));
            if (expertCache != null)
                cache = ExpertCache.Open(weights, expertCache, pool, precision);
            var model = new LlamaModel(weights, pool, ctx, maxBatch, cacheType) { Precision = precision, ExpertCache = cache };
            foreach (var (target, a) in adapters) model.Adapters[target] = a;
            return new LoadedModel(checkpoint, weights, tokenizer, pool, model, adapters, adapter, cache);
        }
        catch
        {
            cache?.Dispose();
            foreach (var a in adapters.Values) a.Dispose();
            weights?.Dispose(); pool?.Dispose(); checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>Checks --ctx and --threads as every command that runs a model takes them, before anything is opened.</summary>
    public static void CheckLimits(int context, int threads)
    {
        if (context < 0) throw new ArgumentException($"--ctx must be at least 0 (0 = the model's context, at most {DefaultContextCap}), found {context}");
        if (threads < 0) throw new ArgumentException($"--threads must be at least 0 (0 = one per core), found {threads}");
    }

    /// <summary>The KV cache length for a requested --ctx: the model's context capped at <see cref="DefaultContextCap"/>
    /// when 0; refused when more than the model's.</summary>
    public static int ResolveContext(ModelConfig config, int context)
    {
        if (context > config.MaxPositions)
            throw new ArgumentException($"--ctx {context} is more than the model's context of {config.MaxPositions} tokens");
        return context > 0 ? context : Math.Min(config.MaxPositions, DefaultContextCap);
    }

    /// <summary>The checkpoint's tokenizer, refused when it has more tokens than the model's embedding has rows.</summary>
    public static Tokenizer LoadTokenizer(Checkpoint checkpoint)
    {
        var tokenizer = checkpoint.LoadTokenizer();
        if (tokenizer.VocabSize > checkpoint.Config.VocabSize)
            throw new Formats.ModelFormatException(checkpoint.Path, $"the tokenizer has {tokenizer.VocabSize} tokens but the model only {checkpoint.Config.VocabSize}");
        return tokenizer;
    }

    /// <summary>Prompt ids for plain text: BOS first when the tokenizer adds one (an empty prompt is BOS alone).</summary>
    public int[] EncodePrompt(string text) => Tokenizer.Encode(text, addSpecialTokens: true, parseSpecialTokens: true) is { Length: > 0 } ids
        ? ids
        : Tokenizer.BosId is int bos ? [bos] : throw new ArgumentException("the prompt is empty and the tokenizer has no BOS token");

    public void Dispose()
    {
        Model.Dispose();
        ExpertCache?.Dispose();
        foreach (var a in Adapters.Values) a.Dispose();
        Weights.Dispose();
        Pool.Dispose();
        Checkpoint.Dispose();
    }
}
