using Hone.Batching;
using Hone.Tensors;

namespace Hone.Server;

/// <summary>What <c>hone serve</c> serves and how: the model, its adapters, where to listen, the engine's size and the
/// request limits.</summary>
public sealed record ServerOptions
{
    /// <summary>A Hugging Face model directory or a GGUF file.</summary>
    public required string ModelPath { get; init; }
    /// <summary>Adapters loaded at start-up: requests name them in their "model" field.</summary>
    public IReadOnlyList<(string Name, string Path)> Adapters { get; init; } = [];
    /// <summary>A request router (hone router build): requests for the model <see cref="AutoModel"/> go to the adapter
    /// (or the base) whose example prompts' centroid is nearest to the prompt's embedding.</summary>
    public string? Router { get; init; }
    public const string AutoModel = "auto";
    /// <summary>Address to listen on: an IP address or "localhost". Loopback by default.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>TCP port; 0 = any free port (read <see cref="HoneServer.Addresses"/>).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Sequences generated at once.</summary>
    public int Parallel { get; init; } = 4;
    /// <summary>Tokens per sequence; 0 = the model's context, at most 4096.</summary>
    public int Context { get; init; }
    /// <summary>Worker threads; 0 = one per core.</summary>
    public int Threads { get; init; }
    /// <summary>Requests that may wait for a free sequence; past this the server answers 429.</summary>
    public int QueueLimit { get; init; } = 64;
    /// <summary>Most rows one forward step runs.</summary>
    public int StepTokens { get; init; } = 512;
    public ComputePrecision Precision { get; init; } = ComputePrecision.Fast;
    /// <summary>How the KV cache holds keys and values (<see cref="KvCacheType"/>).</summary>
    public KvCacheType CacheType { get; init; } = KvCacheType.F32;
    /// <summary>A mixture of experts: keep this much of its experts resident, the rest in the file (null: all resident).</summary>
    public Hone.Model.ExpertCacheOptions? ExpertCache { get; init; }
    /// <summary>When set, every request except the health checks must carry <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Largest request body; larger ones get 413.</summary>
    public long MaxRequestBytes { get; init; } = 4 << 20;
    /// <summary>Whether <c>/v1/load_lora_adapter</c> and <c>/v1/unload_lora_adapter</c> work (off by default, as vLLM gates
    /// them): loading lets any caller that may use the server make it read a path of the caller's choosing.</summary>
    public bool AllowAdapterLoading { get; init; }
    /// <summary>A Jinja chat template file (or a format name, as <c>hone chat --template</c> takes) used instead of the
    /// model's own; null = the model's.</summary>
    public string? ChatTemplate { get; init; }
    /// <summary>Most choices one request may ask for (<c>n</c>).</summary>
    public int MaxChoices { get; init; } = 16;
    /// <summary>How the engine is opened, on a background thread after the server listens (default
    /// <see cref="BatchEngine.Open"/>); tests replace it to hold the server in its loading state.</summary>
    public Func<ServerOptions, BatchEngine>? OpenEngine { get; init; }

    public EngineOptions EngineOptions => new()
    {
        Parallel = Parallel, Context = Context, Threads = Threads, QueueLimit = QueueLimit, StepTokens = StepTokens, Precision = Precision, CacheType = CacheType, ExpertCache = ExpertCache,
    };

    /// <summary>Checks the values a user typed, before anything is loaded.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelPath)) throw new ArgumentException("the model path is empty");
        if (Port is < 0 or > 65535) throw new ArgumentException($"--port must be in [0, 65535], found {Port}");
        if (Parallel < 1) throw new ArgumentException($"--parallel must be at least 1, found {Parallel}");
        if (QueueLimit < 0) throw new ArgumentException($"the queue limit must be at least 0, found {QueueLimit}");
        if (MaxRequestBytes < 1024) throw new ArgumentException($"the request size limit must be at least 1024 bytes, found {MaxRequestBytes}");
        if (MaxChoices < 1) throw new ArgumentException($"the choice limit must be at least 1, found {MaxChoices}");
        if (ApiKey is { Length: 0 }) throw new ArgumentException("the API key is empty");
        if (ChatTemplate is { } template && string.IsNullOrWhiteSpace(template)) throw new ArgumentException("--template is empty");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, path) in Adapters)
        {
            if (!BatchEngine.IsValidAdapterName(name))
                throw new ArgumentException($"--adapter {name}={path}: the name must be 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit");
            if (!names.Add(name)) throw new ArgumentException($"--adapter {name}: two adapters have that name");
        }
    }
}
