using System.Diagnostics;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

public sealed record TrainingBenchOptions(string Shape = "smollm2-135m", TrainingMethod Method = TrainingMethod.Lora, int Batch = 4,
    int Sequence = 256, int Steps = 3, int Threads = 0, int LoraRank = 16, bool CheckpointActivations = false, int Seed = 1);

/// <param name="FlopsPerToken">matrix FLOPs of one training token: forward 2·P, input gradients 2·P, weight gradients
/// 2·(trainable P), plus attention (forward and backward) and the adapters' own products; P counts the weights a
/// token multiplies with (a mixture of experts: its k routed experts, not all E)</param>
public sealed record TrainingBenchResult(string Shape, string Method, int Threads, int Batch, int Sequence, long Parameters,
    long TrainableParameters, double TokensPerSecond, double FlopsPerToken, long PeakRssBytes, MachineLimits Limits)
{
    public double FlopRatio => TokensPerSecond * FlopsPerToken / (Limits.PeakGflops * 1e9);
    public double BoundTokensPerSecond => Limits.PeakGflops * 1e9 / FlopsPerToken;
}

/// <summary>Training speed and memory on a random model: optimizer steps of Batch × Sequence tokens, timed after one warm-up step.</summary>
public static class TrainingBenchmark
{
    public static TrainingBenchResult Run(TrainingBenchOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        int threads = WorkerPool.ResolveThreadCount(o.Threads);
        using var pool = new WorkerPool(threads);
        log($"measuring machine limits with {threads} thread(s)...");
        var limits = MachineLimits.Measure(pool);
        log($"  peak {limits.PeakGflops:F0} GFLOP/s, bandwidth {limits.BandwidthGBs:F1} GB/s");
        var config = ModelShapes.Get(o.Shape);
        using var weights = LlamaWeights.CreateRandom(config, TensorType.F32, o.Seed);
        var setup = new TrainingSetup(o.Method, new AdapterSettings(o.LoraRank, 2 * o.LoraRank, 0, ["all-linear"]), new FreezeSettings(),
            o.CheckpointActivations, (ulong)o.Seed);
        using var model = new TrainableLlama(weights, pool, setup, o.Batch, o.Sequence);
        using var optimizer = new AdamW(model.Parameters, new AdamWOptions(), pool);
        var rng = new Random(o.Seed);
        int n = o.Batch * o.Sequence;
        var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(0).ToArray();
        double best = double.MaxValue;
        for (int step = 0; step <= o.Steps; step++)
        {
            var clock = Stopwatch.StartNew();
            model.ZeroGradients();
            model.Step = step;
            model.ForwardBackward(tokens, targets, o.Batch, o.Sequence, 1f / n);
            optimizer.ClipGradients(1.0);
            optimizer.Update(1e-4f);
            model.AfterStep();
            double seconds = clock.Elapsed.TotalSeconds;
            log($"  step {step}{(step == 0 ? " (warm-up)" : "")}: {n / seconds:F1} tokens/s");
            if (step > 0) best = Math.Min(best, seconds);
        }
        long trainable = model.Parameters.Sum(p => p.Count);
        // Matrix weights a token multiplies with: the head and every layer's projections (a mixture of experts: the
        // router, the k routed experts and the shared expert).
        long matrix = 2L * config.VocabSize * config.HiddenSize / (config.TiedEmbeddings ? 2 : 1) // head (tied: the embedding is the head)
                      + Enumerable.Range(0, config.Layers).Sum(l => config.LayerMatrixParameters(l, active: true));
        long trainableMatrix = o.Method == TrainingMethod.Full ? matrix : trainable;
        double attention = 4.0 * config.Layers * config.QueryDim * (o.Sequence + 1) / 2.0;
        double flops = 2.0 * matrix + 2.0 * matrix + 2.0 * trainableMatrix + attention * 3
                       + (o.Method == TrainingMethod.Full ? 0 : 6.0 * trainable); // adapter products: forward, input and weight gradients
        return new TrainingBenchResult(o.Shape, o.Method.ToString().ToLowerInvariant(), threads, o.Batch, o.Sequence, config.ParameterCount, trainable,
            n / best, flops, PeakRss(), limits);
    }

    /// <summary>Peak resident set size of this process (VmHWM), or the current working set where /proc is absent.</summary>
    public static long PeakRss()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line[6..].Trim().Split(' ')[0]) * 1024;
        }
        catch (IOException) { }
        return Environment.WorkingSet;
    }
}
