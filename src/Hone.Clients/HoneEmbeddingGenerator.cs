using Hone.Batching;
using Microsoft.Extensions.AI;

namespace Hone.Clients;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over an in-process
/// <see cref="BatchEngine"/>: each text is tokenized (BOS as the tokenizer adds it; special-token text is not parsed) and
/// embedded by <see cref="BatchEngine.EmbedAsync"/> — the mean of the final hidden states, L2-normalized, of the model's
/// hidden size. The texts of one call run side by side in the engine's batch. <see cref="EmbeddingGenerationOptions.ModelId"/>
/// names an adapter as for <see cref="HoneChatClient"/>.
/// </summary>
public sealed class HoneEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    readonly BatchEngine _engine;
    readonly bool _ownsEngine;
    readonly EmbeddingGeneratorMetadata _metadata;

    public HoneEmbeddingGenerator(BatchEngine engine, bool ownsEngine = false)
    {
        ArgumentNullException.ThrowIfNull(engine);
        _engine = engine;
        _ownsEngine = ownsEngine;
        _metadata = new EmbeddingGeneratorMetadata(HoneChatClient.ProviderName, null, engine.ModelName, engine.Config.HiddenSize);
    }

    public int Dimensions => _engine.Config.HiddenSize;

    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        string? adapter = HoneChatClient.ResolveModel(_engine, options?.ModelId, "EmbeddingGenerationOptions.ModelId");
        if (options?.Dimensions is int d && d != Dimensions)
            throw new NotSupportedException($"EmbeddingGenerationOptions.Dimensions: this model's embeddings have {Dimensions} dimensions, {d} were asked for");
        var texts = values.ToList();
        var prompts = new int[texts.Count][];
        for (int i = 0; i < texts.Count; i++)
        {
            ArgumentNullException.ThrowIfNull(texts[i], $"{nameof(values)}[{i}]");
            prompts[i] = _engine.Tokenizer.Encode(texts[i], addSpecialTokens: true, parseSpecialTokens: false);
            if (prompts[i].Length == 0) throw new ArgumentException($"text {i} has no tokens", nameof(values));
        }
        using var refused = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var tasks = new List<Task<float[]>>(prompts.Length);
        try
        {
            foreach (var p in prompts) tasks.Add(_engine.EmbedAsync(p, adapter, refused.Token));
        }
        catch
        {
            refused.Cancel(); // the engine refused one text (too long, queue full): the ones already queued need not run
            throw;
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
        string modelId = adapter ?? _engine.ModelName;
        var created = DateTimeOffset.UtcNow;
        var result = new GeneratedEmbeddings<Embedding<float>>(tasks.Select(t => new Embedding<float>(t.Result) { ModelId = modelId, CreatedAt = created }))
        {
            Usage = new UsageDetails { InputTokenCount = prompts.Sum(p => (long)p.Length), TotalTokenCount = prompts.Sum(p => (long)p.Length) },
        };
        return result;
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return _metadata;
        if (serviceType == typeof(BatchEngine)) return _engine;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_ownsEngine) _engine.Dispose();
    }
}
