using Hone.Model;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>LoRA dropout masks depend only on (seed, step, adapter, element): the same in every process, so a run
/// repeated or resumed in a new process draws the same masks.</summary>
public unsafe class LoraDropoutTests
{
    [Fact]
    public void Masks_are_the_same_in_every_process()
    {
        var x = Enumerable.Repeat(1f, 64).ToArray();
        var buffer = new float[64];
        var dx = new float[64];
        fixed (float* px = x, pb = buffer, pdx = dx)
        {
            var dropout = new LoraDropout(0.5f, seed: 1, pb) { Step = 3, Training = true };
            float* dropped = dropout.Apply("blk.0.attn_q.weight", px, 64);
            // Computed outside .NET (Python, from the same definition: the mixing hash of (seed, step, FNV-1a of the
            // name), then of (key, element)); a per-process string hash would give another pattern in every run.
            const string expected = "1010000000001100000110100000110000100011101111110100111100001010";
            Assert.Equal(expected, string.Concat(Enumerable.Range(0, 64).Select(i => dropped[i] == 0 ? '0' : '1')));
            Assert.All(Enumerable.Range(0, 64), i => Assert.True(dropped[i] is 0 or 2));
            dropout.AddMasked("blk.0.attn_q.weight", px, pdx, 64); // backward applies the same mask
            Assert.Equal(expected, string.Concat(dx.Select(v => v == 0 ? '0' : '1')));
            dropout.Training = false;
            Assert.True(dropout.Apply("blk.0.attn_q.weight", px, 64) == px);
        }
    }
}
