using Hone.Model;
using Hone.Tensors;
using Xunit;

namespace Hone.Tests.Model;

public unsafe class RandomWeightsTests
{
    /// <summary>Random initialization depends on the seed and tensor names only, never on the process (string hash
    /// codes are randomized per process, so a seed built from them would give another model every run): the values
    /// recorded here must come back in every test run.</summary>
    [Fact]
    public void Random_weights_are_the_same_in_every_process()
    {
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = 16, HiddenSize = 8, IntermediateSize = 16, Layers = 1, Heads = 2, KvHeads = 1,
            HeadDim = 4, RotaryDims = 4, MaxPositions = 8,
        };
        using var w = LlamaWeights.CreateRandom(config, TensorType.F32, 7, std: 0.02f);
        float* embedding = (float*)w.TokenEmbedding.Data;
        float* down = (float*)w.Layers[0].Down.Data;
        float[] actual = [embedding[0], embedding[1], embedding[8 * 16 - 1], down[0], down[5]];
        int[] recorded = [-1140074393, -1143281288, -1131734185, 1013459031, -1143299534]; // bit patterns of the values, as this implementation first wrote them
        Assert.Equal(recorded, actual.Select(BitConverter.SingleToInt32Bits).ToArray());
        using var again = LlamaWeights.CreateRandom(config, TensorType.F32, 8, std: 0.02f);
        Assert.NotEqual(embedding[0], ((float*)again.TokenEmbedding.Data)[0]);
    }
}
