using System.Diagnostics;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Batching;

/// <summary>What <see cref="BatchBenchmark"/> measures: like llama-batched-bench, <see cref="Parallel"/> sequences each
/// with its own random prompt of <see cref="Prompt"/> tokens and <see cref="Gen"/> generated tokens, all submitted at
/// once to one engine.</summary>
public sealed record BatchBenchOptions(string? Model, string Shape, TensorType? Type, int Threads, IReadOnlyList<int> Parallel,
    int Prompt = 128, int Gen = 128, int Repetitions = 3, int StepTokens = 512, int Seed = 1, ComputePrecision Precision = ComputePrecision.Fast,
    KvCacheType CacheType = KvCacheType.F32);

/// <param name="TotalTokensPerSecond">generated tokens of all sequences over the whole run, prefill included</param>
/// <param name="DecodeTokensPerSecond">tokens generated after the last prompt finished prefill, over that time</param>
/// <param name="PrefillSeconds">from submission until every sequence has its first token</param>
public sealed record BatchBenchRow(int Parallel, double TotalTokensPerSecond, double TotalMin, double TotalMax,
    double DecodeTokensPerSecond, double DecodeMin, double DecodeMax, double PrefillSeconds, double Seconds);

public sealed record BatchBenchResult(string Model, string Type, int Threads, int Prompt, int Gen, int StepTokens, IReadOnlyList<BatchBenchRow> Rows)
{
    public string Protocol => "N sequences, each its own random prompt of pp tokens and tg greedy tokens, submitted at once to one engine " +
        "(continuous batching, steps of at most step-tokens rows); total = N·tg generated tokens over the whole run (prefill included, " +
        "as llama-batched-bench's S counts generated tokens); decode = tokens generated after every prompt had its first token, over that " +
        "time; mean and range of the repetitions after a warm-up";
}

public static class BatchBenchmark
{
    public static BatchBenchResult Run(BatchBenchOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        var (weights, name) = Benchmark.Weights(o.Model, o.Shape, o.Type, o.Seed, log);
        using (weights)
        {
            var c = weights.Config;
            int context = o.Prompt + o.Gen + 1;
            if (context > c.MaxPositions) throw new ArgumentException($"--prompt + --gen need {context} positions, the model has {c.MaxPositions}");
            var rows = new List<BatchBenchRow>();
            int threads = WorkerPool.ResolveThreadCount(o.Threads);
            foreach (int n in o.Parallel)
            {
                using var engine = BatchEngine.ForWeights(weights, new EngineOptions
                {
                    Parallel = n, Context = context, StepTokens = Math.Max(o.StepTokens, n), QueueLimit = n, Threads = threads, Precision = o.Precision, CacheType = o.CacheType,
                }, name);
                var rng = new Random(o.Seed);
                var totals = new List<double>();
                var decodes = new List<double>();
                var prefills = new List<double>();
                var seconds = new List<double>();
                for (int rep = 0; rep <= o.Repetitions; rep++)
                {
                    var prompts = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, o.Prompt).Select(_ => rng.Next(c.VocabSize)).ToArray()).ToArray();
                    var (total, decode, prefill, time) = RunOnce(engine, prompts, o.Gen);
                    if (rep == 0) continue; // warm-up
                    totals.Add(total); decodes.Add(decode); prefills.Add(prefill); seconds.Add(time);
                    log($"  N={n} rep {rep}: {total:F1} tokens/s total, {decode:F1} decode, prefill {prefill:F2} s");
                }
                rows.Add(new BatchBenchRow(n, totals.Average(), totals.Min(), totals.Max(), decodes.Average(), decodes.Min(), decodes.Max(),
                    prefills.Average(), seconds.Average()));
            }
            var type = weights.Layers[0].Query.Type.Name();
            return new BatchBenchResult(name, type, threads, o.Prompt, o.Gen, o.StepTokens, rows);
        }
    }

    /// <summary>One run. Times come from the engine's own step records (the end of each step, its decode and prompt
    /// rows), as llama-batched-bench times its batches, not from consumers woken per token: a reader task per sequence
    /// would wake sixteen times a step on the same cores and be measured as the engine's cost. The streams are drained
    /// by one thread that looks every few milliseconds, and their tokens are counted.</summary>
    static (double Total, double Decode, double Prefill, double Seconds) RunOnce(BatchEngine engine, int[][] prompts, int gen)
    {
        var steps = new List<(long Ticks, int DecodeRows, int PromptRows)>(prompts.Length * 4 + gen * 2);
        void Record(StepStatistics s) => steps.Add((Stopwatch.GetTimestamp(), s.DecodeRows, s.PromptRows));
        long start = Stopwatch.GetTimestamp();
        engine.StepCompleted += Record;
        int generated = 0;
        try
        {
            var open = prompts.Select(p => engine.Submit(new SequenceRequest { Prompt = p, MaxTokens = gen, StopAtEndOfTurn = false })).ToList();
            while (open.Count > 0)
            {
                Thread.Sleep(5);
                for (int i = open.Count - 1; i >= 0; i--)
                {
                    var events = open[i].Events;
                    while (events.TryRead(out var e))
                        if (e is SequenceUpdate u) generated += u.Tokens.Count;
                    if (!events.Completion.IsCompleted) continue;
                    events.Completion.GetAwaiter().GetResult(); // a failed sequence throws its error here
                    open.RemoveAt(i);
                }
            }
        }
        finally { engine.StepCompleted -= Record; }
        double At(long ticks) => Stopwatch.GetElapsedTime(start, ticks).TotalSeconds;
        // Every sequence has its first token at the end of the last step that ran prompt rows; the decode phase is the
        // steps after it.
        int lastPrefill = steps.FindLastIndex(s => s.PromptRows > 0);
        double seconds = At(steps[^1].Ticks);
        double prefillDone = lastPrefill < 0 ? 0 : At(steps[lastPrefill].Ticks);
        int after = 0;
        for (int i = lastPrefill + 1; i < steps.Count; i++) after += steps[i].DecodeRows;
        double decode = after / Math.Max(seconds - prefillDone, 1e-9);
        return (generated / seconds, decode, prefillDone, seconds);
    }
}
