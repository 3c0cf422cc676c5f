using Hone.Inference;
using Xunit;

namespace Hone.Tests.Inference;

public class BenchmarkTests
{
    /// <summary>A small run reports both bandwidth readings and compares generation with the better one, so the
    /// bound and the ratio agree with each other and with the tokens/s (no timing is asserted).</summary>
    [Fact]
    public void Generation_is_compared_with_the_better_bandwidth_reading()
    {
        var r = Benchmark.Run(new BenchOptions(Shape: "tiny", Threads: 2, Prompt: 4, Gen: 2, Repetitions: 1));
        Assert.True(r.Limits.BandwidthGBs > 0 && r.BandwidthAfterGBs > 0, "both bandwidth readings are measured");
        Assert.Equal(Math.Max(r.Limits.BandwidthGBs, r.BandwidthAfterGBs), r.GenBandwidthGBs);
        Assert.True(r.GenTokensPerSecond > 0 && r.PromptTokensPerSecond > 0);
        Assert.Equal(r.GenTokensPerSecond / r.GenBoundTokensPerSecond, r.GenBandwidthRatio, 9);
        Assert.Contains("right after tg", r.Protocol);
    }
}
