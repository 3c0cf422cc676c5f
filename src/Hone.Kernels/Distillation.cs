using System.Buffers;
using System.Runtime.CompilerServices;

namespace Hone.Tensors;

/// <summary>Which divergence between the teacher's and the student's tempered distributions knowledge distillation
/// minimizes (p_t = softmax(teacher logits / T), p_s = softmax(student logits / T)).</summary>
public enum DistillationDivergence
{
    /// <summary>KL(p_t ‖ p_s) (Hinton et al. 2015): mass-covering, the student spreads over everything the teacher allows.</summary>
    Forward,
    /// <summary>KL(p_s ‖ p_t) (MiniLLM): mode-seeking, the student concentrates where the teacher is confident.</summary>
    Reverse,
    /// <summary>½ (KL(p_t ‖ p_s) + KL(p_s ‖ p_t)).</summary>
    Symmetric,
}

/// <summary>The summed losses of some rows: cross-entropy against the targets and the distillation term T²·KL, each
/// before its weight.</summary>
public readonly record struct DistillationSums(double CrossEntropy, double Divergence)
{
    public static DistillationSums operator +(DistillationSums a, DistillationSums b) => new(a.CrossEntropy + b.CrossEntropy, a.Divergence + b.Divergence);
}

/// <summary>
/// Knowledge-distillation loss over logit rows, forward and backward in one pass (the counterpart of
/// <see cref="CrossEntropy"/>). For each row t with target ≥ 0:
/// loss_t = (1 − α)·CE(z_t, target) + α·T²·KL, KL being forward KL(p_t ‖ p_s), reverse KL(p_s ‖ p_t) or their mean over
/// the first <c>shared</c> ids of the vocabulary (both distributions renormalized over that range), where z is the
/// student's row, p_s = softmax(z/T) and p_t = softmax(teacher/T). The row is overwritten with
/// ∂(scale·loss_t)/∂z: (1 − α)·(softmax(z) − onehot) + α·T·g with g = p_s − p_t (forward) or
/// p_s ⊙ (log p_s − log p_t − KL(p_s ‖ p_t)) (reverse), times scale. Rows with target &lt; 0 are ignored (zero gradient),
/// as in cross-entropy: distillation covers exactly the positions the hard labels do.
/// Computed in double (per-row temporaries from a pool); scalar only: next to the head's GEMM that produced the row
/// it costs little.
/// </summary>
public static unsafe class Distillation
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static DistillationSums ForwardBackward(float* logits, float* teacher, long teacherStride, int rows, int v, int shared,
        ReadOnlySpan<int> targets, float scale, float ratio, float temperature, DistillationDivergence divergence)
    {
        if (shared < 1 || shared > v) throw new ArgumentOutOfRangeException(nameof(shared), $"the shared vocabulary {shared} must be between 1 and {v}");
        if (teacherStride < shared) throw new ArgumentOutOfRangeException(nameof(teacherStride), $"teacher rows of {teacherStride} hold fewer than the {shared} shared ids");
        if (!(temperature > 0) || !float.IsFinite(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature {temperature} must be positive");
        if (!(ratio >= 0 && ratio <= 1)) throw new ArgumentOutOfRangeException(nameof(ratio), $"ratio {ratio} must be between 0 and 1");
        var (wForward, wReverse) = divergence switch
        {
            DistillationDivergence.Forward => (1.0, 0.0),
            DistillationDivergence.Reverse => (0.0, 1.0),
            DistillationDivergence.Symmetric => (0.5, 0.5),
            _ => throw new ArgumentOutOfRangeException(nameof(divergence)),
        };
        double[] ps = ArrayPool<double>.Shared.Rent(shared), pt = ArrayPool<double>.Shared.Rent(shared), logRatio = ArrayPool<double>.Shared.Rent(shared);
        try
        {
            double ce = 0, kdSum = 0;
            double t = temperature, invT = 1 / t, hard = 1 - (double)ratio, soft = ratio;
            for (int r = 0; r < rows; r++)
            {
                float* z = logits + (long)r * v, zt = teacher + r * teacherStride;
                int target = targets[r];
                if (target < 0) { new Span<float>(z, v).Clear(); continue; }
                if (target >= v) throw new ArgumentOutOfRangeException(nameof(targets), $"target {target} outside vocabulary {v}");
                double lse = Softmax.LogSumExp(z, v);
                ce += lse - z[target];
                // Tempered log-softmaxes over the shared ids: log p = (x − max)/T − log Σ exp((x − max)/T).
                double maxS = double.NegativeInfinity, maxT = double.NegativeInfinity;
                for (int i = 0; i < shared; i++) { maxS = Math.Max(maxS, z[i]); maxT = Math.Max(maxT, zt[i]); }
                double sumS = 0, sumT = 0;
                for (int i = 0; i < shared; i++)
                {
                    ps[i] = Math.Exp((z[i] - maxS) * invT); sumS += ps[i];
                    pt[i] = Math.Exp((zt[i] - maxT) * invT); sumT += pt[i];
                }
                double logSumS = Math.Log(sumS), logSumT = Math.Log(sumT), forward = 0, reverse = 0;
                for (int i = 0; i < shared; i++)
                {
                    ps[i] /= sumS; pt[i] /= sumT;
                    double d = ((z[i] - maxS) * invT - logSumS) - ((zt[i] - maxT) * invT - logSumT); // log p_s − log p_t
                    logRatio[i] = d;
                    forward -= pt[i] * d;
                    reverse += ps[i] * d;
                }
                kdSum += t * t * (wForward * forward + wReverse * reverse);
                for (int i = 0; i < v; i++)
                {
                    double g = hard * Math.Exp(z[i] - lse);
                    if (i < shared) g += soft * t * (wForward * (ps[i] - pt[i]) + wReverse * ps[i] * (logRatio[i] - reverse));
                    z[i] = (float)(g * scale);
                }
                z[target] -= (float)(hard * scale);
            }
            return new DistillationSums(ce, kdSum);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(ps); ArrayPool<double>.Shared.Return(pt); ArrayPool<double>.Shared.Return(logRatio);
        }
    }

    struct Job
    {
        public float* Logits, Teacher;
        public long TeacherStride;
        public int Rows, Width, Shared;
        public int* Targets;
        public float Scale, Ratio, Temperature;
        public DistillationDivergence Divergence;
        public DistillationSums* Sums;
    }

    /// <summary><see cref="ForwardBackward"/> over row ranges on the pool's threads; the per-thread sums are added in
    /// thread order (same threads: same bits).</summary>
    public static DistillationSums ForwardBackward(WorkerPool pool, float* logits, float* teacher, long teacherStride, int rows, int v, int shared,
        ReadOnlySpan<int> targets, float scale, float ratio, float temperature, DistillationDivergence divergence)
    {
        if (targets.Length < rows) throw new ArgumentException($"{targets.Length} targets for {rows} rows");
        if (pool.Threads == 1 || rows < 2)
            return ForwardBackward(logits, teacher, teacherStride, rows, v, shared, targets, scale, ratio, temperature, divergence);
        var sums = stackalloc DistillationSums[pool.Threads];
        fixed (int* t = targets)
        {
            var job = new Job
            {
                Logits = logits, Teacher = teacher, TeacherStride = teacherStride, Rows = rows, Width = v, Shared = shared, Targets = t,
                Scale = scale, Ratio = ratio, Temperature = temperature, Divergence = divergence, Sums = sums,
            };
            pool.Run(&Worker, &job);
        }
        var total = default(DistillationSums);
        for (int i = 0; i < pool.Threads; i++) total += sums[i];
        return total;
    }

    static void Worker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (r0, r1) = WorkerPool.Share(j.Rows, thread, threads);
        j.Sums[thread] = r1 > r0
            ? ForwardBackward(j.Logits + (long)r0 * j.Width, j.Teacher + r0 * j.TeacherStride, j.TeacherStride, r1 - r0, j.Width, j.Shared,
                new ReadOnlySpan<int>(j.Targets + r0, r1 - r0), j.Scale, j.Ratio, j.Temperature, j.Divergence)
            : default;
    }
}
