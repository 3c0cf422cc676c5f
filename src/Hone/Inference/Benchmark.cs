using System.Diagnostics;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Inference;

/// <summary>What <see cref="Benchmark"/> measures: a checkpoint, or random weights of a named shape.</summary>
/// <param name="Type">matrix storage type (random models are quantized to it; checkpoints are requantized when set)</param>
/// <param name="Repetitions">timed repetitions of each test after one warm-up</param>
/// <param name="Precision">how activations meet the weights (Fast: llama.cpp's kernels, what llama-bench measures)</param>
/// <param name="ExpertCache">a mixture of experts checkpoint: run with its experts left in the file and this cache</param>
public sealed record BenchOptions(string? Model = null, string Shape = "smollm2-135m", TensorType? Type = null, int Threads = 0,
    int Prompt = 512, int Gen = 128, int Repetitions = 3, int Seed = 1, ComputePrecision Precision = ComputePrecision.Fast, float ExpertSkipThreshold = 0,
    ExpertCacheOptions? ExpertCache = null);

/// <summary>One benchmark run, with the protocol spelled out: prompt processing is one batch of Prompt tokens from an
/// empty cache with logits for the last token only (as llama-bench's pp); generation decodes Gen tokens one at a time
/// from an empty cache with full logits every step (as llama-bench's tg). For a mixture of experts the bounds count what a
/// token uses (<see cref="ActiveParameters"/>, the k routed experts' bytes), not the whole model.</summary>
public sealed record BenchResult(
    string Model, string Type, int Threads, int Prompt, int Gen, long Parameters, long WeightBytes,
    double PromptTokensPerSecond, double PromptStdDev, double GenTokensPerSecond, double GenStdDev,
    double PromptFlopsPerToken, double GenBytesPerToken, MachineLimits Limits, double BandwidthAfterGBs = 0,
    ComputePrecision Precision = ComputePrecision.Fast, long ActiveParameters = 0, double SkippedExpertShare = 0,
    ExpertCacheStatistics? PromptCache = null, ExpertCacheStatistics? GenCache = null, long ResidentBytes = 0)
{
    /// <summary>The bandwidth generation is compared with: the better of the readings before the runs and right after
    /// generation (a VM's bandwidth moves with its neighbours; the better reading keeps the ratio from flattering).</summary>
    public double GenBandwidthGBs => Math.Max(Limits.BandwidthGBs, BandwidthAfterGBs);
    /// <summary>Achieved prompt FLOP/s as a fraction of the measured FMA peak.</summary>
    public double PromptFlopRatio => PromptTokensPerSecond * PromptFlopsPerToken / (Limits.PeakGflops * 1e9);
    /// <summary>Achieved generation bytes/s as a fraction of the measured memory bandwidth.</summary>
    public double GenBandwidthRatio => GenTokensPerSecond * GenBytesPerToken / (GenBandwidthGBs * 1e9);
    public double PromptBoundTokensPerSecond => Limits.PeakGflops * 1e9 / PromptFlopsPerToken;
    public double GenBoundTokensPerSecond => GenBandwidthGBs * 1e9 / GenBytesPerToken;
    public string Protocol => "pp: one batch from an empty cache, last-token logits; tg: one token per step from an empty cache; mean of repetitions after a warm-up; tg bound from the better of the bandwidth readings before the runs and right after tg";
}

public static class Benchmark
{
    /// <summary>What a benchmark runs: the checkpoint at <paramref name="model"/> (requantized to <paramref name="type"/>
    /// when set), or random weights of the named shape in <paramref name="type"/> (F32 by default).</summary>
    public static (LlamaWeights Weights, string Name) Weights(string? model, string shape, TensorType? type, int seed, Action<string> log)
    {
        if (model != null)
        {
            using var checkpoint = Checkpoint.Open(model);
            return (LlamaWeights.Load(checkpoint, new WeightLoadOptions(type)), model);
        }
        return Random(shape, type, seed, log);
    }

    static (LlamaWeights Weights, string Name) Random(string shape, TensorType? type, int seed, Action<string> log)
    {
        log($"building a random {shape} model ({(type ?? TensorType.F32).Name()})...");
        return (LlamaWeights.CreateRandom(ModelShapes.Get(shape), type ?? TensorType.F32, seed), $"{shape} (random)");
    }

    public static BenchResult Run(BenchOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        int threads = WorkerPool.ResolveThreadCount(o.Threads);
        using var pool = new WorkerPool(threads);
        log($"measuring machine limits with {threads} thread(s)...");
        var limits = MachineLimits.Measure(pool);
        log($"  peak {limits.PeakGflops:F0} GFLOP/s, bandwidth {limits.BandwidthGBs:F1} GB/s ({limits.Vectors})");

        Checkpoint? mapped = null;
        ExpertCache? cache = null;
        LlamaWeights weights;
        string name;
        if (o.ExpertCache != null)
        {
            if (o.Model == null) throw new ArgumentException("--expert-cache needs a --model file (random weights have no file to map)");
            if (o.Type != null) throw new ArgumentException("--expert-cache runs the experts in the file's type; convert the model instead of --type");
            mapped = Checkpoint.Open(o.Model);
            try
            {
                if (!mapped.Config.IsMixtureOfExperts) throw new ArgumentException($"--expert-cache applies to mixtures of experts; {o.Model} is dense");
                weights = LlamaWeights.Load(mapped, new WeightLoadOptions(ExpertsInPlace: true));
                cache = ExpertCache.Open(weights, o.ExpertCache, pool, o.Precision);
                name = o.Model;
            }
            catch { mapped.Dispose(); throw; }
        }
        else (weights, name) = Weights(o.Model, o.Shape, o.Type, o.Seed, log);
        using var mappedLifetime = mapped;
        using var cacheLifetime = cache;
        using (weights)
        {
            var c = weights.Config;
            int context = Math.Max(o.Prompt, o.Gen) + 1;
            if (context > c.MaxPositions) throw new ArgumentException($"--prompt/--gen need {context} positions, the model has {c.MaxPositions}");
            using var model = new LlamaModel(weights, pool, maxContext: context, maxBatch: Math.Max(1, o.Prompt))
            {
                Precision = o.Precision, ExpertSkipThreshold = o.ExpertSkipThreshold, ExpertCache = cache,
            };
            var rng = new Random(o.Seed);
            var prompt = Enumerable.Range(0, o.Prompt).Select(_ => rng.Next(c.VocabSize)).ToArray();
            var logits = new float[c.VocabSize];

            var promptRates = new List<double>();
            if (o.Prompt > 0)
                for (int rep = 0; rep <= o.Repetitions; rep++)
                {
                    model.Reset();
                    var sw = Stopwatch.StartNew();
                    model.Forward(prompt, logits);
                    double rate = o.Prompt / sw.Elapsed.TotalSeconds;
                    if (rep > 0) promptRates.Add(rate);
                    log($"  pp{o.Prompt} {(rep == 0 ? "warm-up" : $"#{rep}")}: {rate:F1} tokens/s");
                }
            var promptCache = cache?.Statistics;
            cache?.ResetStatistics();
            var genRates = new List<double>();
            if (o.Gen > 0)
                for (int rep = 0; rep <= o.Repetitions; rep++)
                {
                    model.Reset();
                    int token = prompt.Length > 0 ? prompt[0] : 1;
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < o.Gen; i++)
                    {
                        model.Forward(new ReadOnlySpan<int>(in token), logits);
                        token = (token * 31 + i) % c.VocabSize; // data-independent next token: timing only
                    }
                    double rate = o.Gen / sw.Elapsed.TotalSeconds;
                    if (rep > 0) genRates.Add(rate);
                    log($"  tg{o.Gen} {(rep == 0 ? "warm-up" : $"#{rep}")}: {rate:F1} tokens/s");
                }

            long resident = ResidentBytes(); // before the bandwidth reading allocates its buffers
            double bandwidthAfter = o.Gen > 0 ? MachineLimits.MeasureBandwidth(pool) : 0;
            if (o.Gen > 0) log($"  bandwidth right after tg: {bandwidthAfter:F1} GB/s");

            // A mixture of experts counts what a token uses: k experts of E (the FLOP bound of pp, the bandwidth bound of tg).
            long layerMatrixParams = Enumerable.Range(0, c.Layers).Sum(l => c.LayerMatrixParameters(l));
            double attentionFlops = 4.0 * c.Layers * c.QueryDim * (o.Prompt + 1) / 2.0; // QKᵀ and PV over the average causal span
            double headFlops = 2.0 * c.VocabSize * c.HiddenSize / Math.Max(1, o.Prompt);
            double promptFlops = 2.0 * layerMatrixParams + attentionFlops + headFlops;
            long weightBytes = weights.ByteLength;
            double kvBytes = 2.0 * c.Layers * c.KvDim * 4 * (o.Gen / 2.0);
            return new BenchResult(name, weights.TokenEmbedding.Type.Name(), threads, o.Prompt, o.Gen, c.ParameterCount, weightBytes,
                Mean(promptRates), StdDev(promptRates), Mean(genRates), StdDev(genRates), promptFlops, weights.ActiveByteLength + kvBytes, limits, bandwidthAfter,
                o.Precision, c.ActiveParameterCount, model.RoutedExpertRuns == 0 ? 0 : (double)model.SkippedExpertRuns / model.RoutedExpertRuns,
                promptCache, cache?.Statistics, resident);
        }
    }

    /// <summary>The process's resident set now (VmRSS on Linux: its own memory and the mapped file pages it holds),
    /// or 0 where it cannot be read.</summary>
    public static long ResidentBytes()
    {
        try
        {
            if (!OperatingSystem.IsLinux()) return 0;
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:") && long.TryParse(line[6..].Trim().Split(' ')[0], out long kb)) return kb * 1024;
        }
        catch (IOException) { }
        return 0;
    }

    static double Mean(List<double> x) => x.Count == 0 ? 0 : x.Average();
    static double StdDev(List<double> x)
    {
        if (x.Count < 2) return 0;
        double m = x.Average();
        return Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Count - 1));
    }
}
