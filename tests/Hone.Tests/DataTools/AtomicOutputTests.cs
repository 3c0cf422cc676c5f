using Hone.DataTools;
using Hone.Tests.Infrastructure;
using Xunit;
using Hone.Formats;

namespace Hone.Tests.DataTools;

/// <summary>Outputs never exist half-written under their final name: an interrupted run leaves nothing behind.</summary>
public class AtomicOutputTests
{
    internal static string BigInput(TempDirectory dir, int records = 300_000)
    {
        var path = dir.File("in.jsonl");
        using var w = new StreamWriter(path);
        for (int i = 0; i < records; i++) w.WriteLine($"{{\"text\":\"record {i} with some words to shingle {i % 1000} and more words {i % 777}\",\"ppl\":{i % 100}}}");
        return path;
    }

    [Fact]
    public async Task Cancelling_mid_run_deletes_the_partial_output()
    {
        using var dir = new TempDirectory();
        var input = BigInput(dir);
        using var cancel = new CancellationTokenSource();
        var run = Task.Run(() => DataDedup.Run(new DataDedupOptions(input, dir.File("out.jsonl"), Near: true, Threads: 1), null, cancel.Token));
        // Wait until the temporary output has data in it, then cancel.
        HangGuard.WaitUntil(() => Directory.GetFiles(dir.Path, ".out.jsonl.*.tmp").Any(f => new FileInfo(f).Length > 0) || run.IsCompleted, 5);
        Assert.False(run.IsCompleted, "the run ended before it could be cancelled; make the input bigger");
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        Assert.Empty(Jsonl.Others(dir, "in.jsonl"));
    }

    [Fact]
    public void Every_writing_tool_cleans_up_when_cancelled()
    {
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "in.jsonl", "{\"text\":\"the quick brown fox jumps over the lazy dog again and again and again\",\"ppl\":3}");
        var eval = Jsonl.Write(dir, "eval.jsonl", "{\"q\":\"the quick brown fox jumps over the lazy dog again and again and again\"}");
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var runs = new Action[]
        {
            () => DataDedup.Run(new DataDedupOptions(input, dir.File("o.jsonl"), Near: true), null, cancelled.Token),
            () => DataFilter.Run(new DataFilterOptions(input, dir.File("o.jsonl"), KeepQuantiles: (0.1, 0.9)), null, cancelled.Token),
            () => DataFilter.Run(new DataFilterOptions(input, dir.File("o.jsonl"), MaxValue: 5), null, cancelled.Token),
            () => Decontaminate.Run(new DecontaminateOptions(input, [eval], dir.File("o.jsonl")), null, cancelled.Token),
            () => DataSplit.Run(new DataSplitOptions(input, dir.File("t.jsonl"), dir.File("v.jsonl")), null, cancelled.Token),
        };
        foreach (var run in runs)
        {
            Assert.ThrowsAny<OperationCanceledException>(run);
            Assert.Empty(Jsonl.Others(dir, "in.jsonl", "eval.jsonl"));
        }
    }

    [Fact]
    public void A_failure_half_way_leaves_no_output_either()
    {
        using var dir = new TempDirectory();
        var lines = Enumerable.Range(0, 20_000).Select(i => $"{{\"text\":\"r{i}\"}}").Append("{\"text\":").ToArray();
        var input = Jsonl.Write(dir, "in.jsonl", lines);
        var e = Assert.Throws<DataFormatException>(() => DataSplit.Run(new DataSplitOptions(input, dir.File("t.jsonl"), dir.File("v.jsonl"))));
        Assert.Equal(20_001, e.Line);
        Assert.Empty(Jsonl.Others(dir, "in.jsonl"));
    }
}
