using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Training;
using Xunit;

namespace Hone.Tests.Training;

public unsafe class AdamWTests
{
    static readonly WorkerPool Two = new(2);

    /// <summary>Three parameters (one odd-sized, one past the 2^20-element norm chunk), values and gradients seeded.</summary>
    sealed class Setup : IDisposable
    {
        public readonly NativeBuffer Values = new((1 + 37 + 1_100_003 + 64) * 4L);
        public readonly NativeBuffer Gradients = new((1 + 37 + 1_100_003 + 64) * 4L);
        public readonly List<Parameter> Parameters = new();
        public readonly int[] Sizes = [1, 37, 1_100_003];

        public Setup(float gradientMagnitude)
        {
            var rng = new Random(5);
            long offset = 0;
            for (int i = 0; i < Sizes.Length; i++)
            {
                Parameters.Add(new Parameter($"p{i}", (nint)(Values.AsFloats + offset), (nint)(Gradients.AsFloats + offset), 1, Sizes[i], weightDecay: i != 0));
                for (int j = 0; j < Sizes[i]; j++)
                {
                    Values.AsFloats[offset + j] = (float)(rng.NextDouble() * 2 - 1);
                    Gradients.AsFloats[offset + j] = (float)((rng.NextDouble() * 2 - 1) * gradientMagnitude);
                }
                offset += Sizes[i] + 16;
            }
        }

        public float[] Snapshot() => Parameters.SelectMany(p => p.Values.ToArray()).ToArray();
        public void Dispose() { Values.Dispose(); Gradients.Dispose(); }
    }

    /// <summary>torch.nn.utils.clip_grad_norm_ then torch.optim.AdamW, written out in float for every element.</summary>
    static float[] Reference(Setup s, int steps, double maxNorm, float lr, AdamWOptions o)
    {
        var values = s.Parameters.Select(p => p.Values.ToArray()).ToArray();
        var grads = s.Parameters.Select(p => p.Gradients.ToArray()).ToArray();
        var m = values.Select(v => new float[v.Length]).ToArray();
        var v2 = values.Select(v => new float[v.Length]).ToArray();
        for (int t = 1; t <= steps; t++)
        {
            double sum = 0;
            foreach (var g in grads) foreach (var x in g) sum += (double)x * x;
            double norm = Math.Sqrt(sum);
            float scale = norm > maxNorm ? (float)(maxNorm / (norm + 1e-6)) : 1f;
            float c1 = 1f / (1f - MathF.Pow(o.Beta1, t)), c2 = 1f / (1f - MathF.Pow(o.Beta2, t));
            for (int i = 0; i < values.Length; i++)
            {
                float decay = s.Parameters[i].WeightDecay ? 1f - lr * o.WeightDecay : 1f;
                for (int j = 0; j < values[i].Length; j++)
                {
                    float g = grads[i][j] * scale;
                    m[i][j] = o.Beta1 * m[i][j] + (1 - o.Beta1) * g;
                    v2[i][j] = o.Beta2 * v2[i][j] + (1 - o.Beta2) * g * g;
                    values[i][j] = values[i][j] * decay - lr * (m[i][j] * c1) / (MathF.Sqrt(v2[i][j] * c2) + o.Epsilon);
                }
            }
        }
        return values.SelectMany(v => v).ToArray();
    }

    static float[] Run(Setup s, WorkerPool? pool, int steps, double maxNorm, float lr, AdamWOptions o, out double firstNorm)
    {
        using var optimizer = new AdamW(s.Parameters, o, pool);
        firstNorm = 0;
        for (int t = 0; t < steps; t++)
        {
            double norm = optimizer.ClipGradients(maxNorm);
            if (t == 0) firstNorm = norm;
            optimizer.Update(lr);
        }
        return s.Snapshot();
    }

    [Theory]
    [InlineData(0.001f)] // norm below the limit: no clipping
    [InlineData(0.5f)]   // norm far above: every step clipped (the scale is applied inside the update)
    public void Clipped_updates_match_torch_and_do_not_depend_on_the_thread_count(float gradientMagnitude)
    {
        var options = new AdamWOptions(WeightDecay: 0.1f);
        using var a = new Setup(gradientMagnitude);
        var want = Reference(a, 3, 1.0, 1e-3f, options);
        var serial = Run(a, null, 3, 1.0, 1e-3f, options, out double serialNorm);
        using var b = new Setup(gradientMagnitude);
        var parallel = Run(b, Two, 3, 1.0, 1e-3f, options, out double parallelNorm);
        Assert.Equal(serialNorm, parallelNorm); // fixed chunks in a fixed order: the same bits
        Assert.True(serial.AsSpan().SequenceEqual(parallel), "one thread and two threads must give bit-identical weights");
        Assert.Equal(gradientMagnitude > 0.1f, serialNorm > 1.0);
        TestData.AssertClose(want, serial, 1e-6, "AdamW with clipping vs the torch formulas");
        // the gradients are left as they were: clipping scales them inside the update only
        using var fresh = new Setup(gradientMagnitude);
        foreach (var (p, q) in fresh.Parameters.Zip(b.Parameters)) Assert.True(p.Gradients.SequenceEqual(q.Gradients), p.Name);
    }
}
