using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hone.Tensors;

/// <summary>Softmax cross-entropy over logit rows, forward and backward in one pass.</summary>
public static unsafe class CrossEntropy
{
    /// <summary>
    /// For each row t with target ≥ 0: loss += −log softmax(logits[t])[target]; logits[t] is overwritten with
    /// ∂(scale·loss)/∂logits = scale·(softmax − onehot). Rows with target &lt; 0 (ignored) get zero gradient.
    /// Returns the summed loss (double) of the rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static double ForwardBackward(float* logits, int rows, int v, ReadOnlySpan<int> targets, float scale)
    {
        double loss = 0;
        for (int t = 0; t < rows; t++)
        {
            float* row = logits + (long)t * v;
            int target = targets[t];
            if (target < 0) { new Span<float>(row, v).Clear(); continue; }
            if (target >= v) throw new ArgumentOutOfRangeException(nameof(targets), $"target {target} outside vocabulary {v}");
            double lse = Softmax.LogSumExp(row, v);
            loss += lse - row[target];
            float shift = (float)lse;
            var s = Vector512.Create(scale);
            var m = Vector512.Create(shift);
            int i = 0;
            for (; i + 16 <= v; i += 16) Vector512.Store(Vector512.Exp(Vector512.Load(row + i) - m) * s, row + i);
            for (; i < v; i++) row[i] = MathF.Exp(row[i] - shift) * scale;
            row[target] -= scale;
        }
        return loss;
    }
}
