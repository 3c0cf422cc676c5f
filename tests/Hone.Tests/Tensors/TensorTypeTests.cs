using Hone.Tensors;
using Xunit;

namespace Hone.Tests.Tensors;

public class TensorTypeTests
{
    [Theory]
    [InlineData("q8_0", 32, 34)]
    [InlineData("q4_0", 32, 18)]
    [InlineData("q4_k", 256, 144)]
    [InlineData("q6_k", 256, 210)]
    [InlineData("bf16", 1, 2)]
    public void Block_geometry_matches_ggml(string name, int blockSize, int blockBytes)
    {
        var t = TensorTypes.Parse(name).Traits();
        Assert.Equal(blockSize, t.BlockSize);
        Assert.Equal(blockBytes, t.BlockBytes);
    }

    [Fact]
    public void Unknown_type_name_lists_the_known_ones()
    {
        var e = Assert.Throws<ArgumentException>(() => TensorTypes.Parse("q9_9"));
        Assert.Contains("q4_k", e.Message);
    }
}
