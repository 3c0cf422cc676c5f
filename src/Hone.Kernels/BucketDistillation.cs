using System.Buffers;
using System.Runtime.CompilerServices;

namespace Hone.Tensors;

/// <summary>
/// Knowledge-distillation loss against a teacher known only by its top-K tokens (a cached teacher: hone distill
/// cache), forward and backward in one pass; the counterpart of <see cref="Distillation"/> for full teacher rows.
/// The divergence is taken over K + 1 buckets: the teacher's K ids, and one "rest" bucket holding everything else.
/// For each row with target ≥ 0, with u = z/T over the first <c>shared</c> ids of the student's row z,
/// p = softmax(u), q_j = p[id_j] for the K ids and q_R = Σ p over the other ids (the student's rest mass, summed
/// directly rather than as 1 − Σ q_j so that a small rest keeps its precision), and P_j, P_R the teacher's bucket
/// probabilities exp(log-prob) renormalized to sum to 1 (the stored float log-probs sum to 1 only up to rounding):
/// loss_t = (1 − α)·CE(z_t, target) + α·T²·D, D being forward KL(P ‖ q), reverse KL(q ‖ P) or their mean.
/// The row is overwritten with ∂(scale·loss_t)/∂z = (1 − α)·(softmax(z) − onehot) + α·T·g, where for an id i in
/// bucket b: forward g_i = p_i − p_i·P_b/q_b (= p_i − P_j for a top-K id), reverse g_i = p_i·(log q_b − log P_b − D_rev).
/// With K = <c>shared</c> there is no rest bucket and the loss is the full-vocabulary distillation loss.
/// Rows with target &lt; 0 are ignored (zero gradient). Computed in double; scalar only (next to the head's GEMM that
/// produced the row it costs little).
/// </summary>
public static unsafe class BucketDistillation
{
    /// <param name="logits">student rows [rows, v], overwritten with the gradient</param>
    /// <param name="ids">teacher's top-K ids [rows, k], distinct, each in [0, shared)</param>
    /// <param name="teacherLogProbs">teacher's log-probabilities at T of those ids [rows, k]</param>
    /// <param name="teacherLogRest">teacher's log rest mass [rows] (ignored when k = shared)</param>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static DistillationSums ForwardBackward(float* logits, int rows, int v, int shared, int* ids, float* teacherLogProbs, float* teacherLogRest, int k,
        ReadOnlySpan<int> targets, float scale, float ratio, float temperature, DistillationDivergence divergence)
    {
        if (shared < 1 || shared > v) throw new ArgumentOutOfRangeException(nameof(shared), $"the shared vocabulary {shared} must be between 1 and {v}");
        if (k < 1 || k > shared) throw new ArgumentOutOfRangeException(nameof(k), $"top-k {k} must be between 1 and the shared vocabulary {shared}");
        if (!(temperature > 0) || !float.IsFinite(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature {temperature} must be positive");
        if (!(ratio >= 0 && ratio <= 1)) throw new ArgumentOutOfRangeException(nameof(ratio), $"ratio {ratio} must be between 0 and 1");
        var (wForward, wReverse) = divergence switch
        {
            DistillationDivergence.Forward => (1.0, 0.0),
            DistillationDivergence.Reverse => (0.0, 1.0),
            DistillationDivergence.Symmetric => (0.5, 0.5),
            _ => throw new ArgumentOutOfRangeException(nameof(divergence)),
        };
        // slot[id] = 1 + the id's bucket among the K, 0 for the rest bucket; reset after every row.
        int[] slot = ArrayPool<int>.Shared.Rent(shared);
        double[] logP = ArrayPool<double>.Shared.Rent(k), logQ = ArrayPool<double>.Shared.Rent(k);
        Array.Clear(slot, 0, shared);
        try
        {
            double ce = 0, kdSum = 0;
            double t = temperature, invT = 1 / t, hard = 1 - (double)ratio, soft = ratio;
            bool hasRest = k < shared;
            for (int r = 0; r < rows; r++)
            {
                float* z = logits + (long)r * v;
                int* rowIds = ids + (long)r * k;
                float* rowLogP = teacherLogProbs + (long)r * k;
                int target = targets[r];
                if (target < 0) { new Span<float>(z, v).Clear(); continue; }
                if (target >= v) throw new ArgumentOutOfRangeException(nameof(targets), $"target {target} outside vocabulary {v}");
                for (int j = 0; j < k; j++)
                {
                    int id = rowIds[j];
                    if ((uint)id >= (uint)shared || slot[id] != 0)
                    {
                        for (int i = 0; i < j; i++) slot[rowIds[i]] = 0;
                        throw new ArgumentOutOfRangeException(nameof(ids), (uint)id >= (uint)shared
                            ? $"row {r}: teacher id {id} outside the shared vocabulary {shared}" : $"row {r}: teacher id {id} appears twice");
                    }
                    slot[id] = j + 1;
                }
                double lse = Softmax.LogSumExp(z, v);
                ce += lse - z[target];
                // Student: log p_i = (z_i − max)/T − log Σ exp((z_i − max)/T) over the shared ids; the rest bucket's
                // log mass from its own maximum, so that it does not underflow when the top-K hold nearly everything.
                double maxS = double.NegativeInfinity, maxRest = double.NegativeInfinity;
                for (int i = 0; i < shared; i++)
                {
                    maxS = Math.Max(maxS, z[i]);
                    if (slot[i] == 0) maxRest = Math.Max(maxRest, z[i]);
                }
                double sumS = 0, sumRest = 0;
                for (int i = 0; i < shared; i++)
                {
                    sumS += Math.Exp((z[i] - maxS) * invT);
                    if (slot[i] == 0) sumRest += Math.Exp((z[i] - maxRest) * invT);
                }
                double logSumS = Math.Log(sumS);
                for (int j = 0; j < k; j++) logQ[j] = (z[rowIds[j]] - maxS) * invT - logSumS;
                double logQRest = hasRest ? (maxRest - maxS) * invT + Math.Log(sumRest) - logSumS : double.NegativeInfinity;
                // Teacher: renormalize the K + 1 stored log-probabilities.
                double maxT = hasRest ? teacherLogRest[r] : double.NegativeInfinity;
                for (int j = 0; j < k; j++) maxT = Math.Max(maxT, rowLogP[j]);
                double sumT = hasRest ? Math.Exp(teacherLogRest[r] - maxT) : 0;
                for (int j = 0; j < k; j++) sumT += Math.Exp(rowLogP[j] - maxT);
                double logNorm = maxT + Math.Log(sumT);
                for (int j = 0; j < k; j++) logP[j] = rowLogP[j] - logNorm;
                double logPRest = hasRest ? teacherLogRest[r] - logNorm : double.NegativeInfinity;
                // Divergences over the buckets (0·log 0 = 0 on either side).
                double forward = 0, reverse = 0;
                for (int j = 0; j < k; j++)
                {
                    double d = logQ[j] - logP[j];
                    if (logP[j] > double.NegativeInfinity) forward -= Math.Exp(logP[j]) * d;
                    if (logQ[j] > double.NegativeInfinity) reverse += Math.Exp(logQ[j]) * d;
                }
                if (hasRest)
                {
                    double d = logQRest - logPRest;
                    if (logPRest > double.NegativeInfinity) forward -= Math.Exp(logPRest) * d;
                    if (logQRest > double.NegativeInfinity) reverse += Math.Exp(logQRest) * d;
                }
                kdSum += t * t * (wForward * forward + wReverse * reverse);
                // The rest bucket's per-id factors: forward p_i·(1 − P_R/q_R), reverse p_i·(log q_R − log P_R − D).
                double restForward = logPRest > double.NegativeInfinity ? Math.Exp(logPRest - logQRest) : 0;
                double restReverse = logQRest - logPRest - reverse;
                for (int i = 0; i < v; i++)
                {
                    double g = hard * Math.Exp(z[i] - lse);
                    if (i < shared)
                    {
                        double p = Math.Exp((z[i] - maxS) * invT - logSumS);
                        int j = slot[i] - 1;
                        double gForward = j >= 0 ? p - Math.Exp(logP[j]) : p * (1 - restForward);
                        double gReverse = wReverse == 0 ? 0 : j >= 0 ? p * (logQ[j] - logP[j] - reverse) : p * restReverse;
                        g += soft * t * (wForward * gForward + wReverse * gReverse);
                    }
                    z[i] = (float)(g * scale);
                }
                z[target] -= (float)(hard * scale);
                for (int j = 0; j < k; j++) slot[rowIds[j]] = 0;
            }
            return new DistillationSums(ce, kdSum);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(slot); ArrayPool<double>.Shared.Return(logP); ArrayPool<double>.Shared.Return(logQ);
        }
    }

    struct Job
    {
        public float* Logits, TeacherLogProbs, TeacherLogRest;
        public int* Ids, Targets;
        public int Rows, Width, Shared, TopK;
        public float Scale, Ratio, Temperature;
        public DistillationDivergence Divergence;
        public DistillationSums* Sums;
    }

    /// <summary><see cref="ForwardBackward"/> over row ranges on the pool's threads; the per-thread sums are added in
    /// thread order (same threads: same bits).</summary>
    public static DistillationSums ForwardBackward(WorkerPool pool, float* logits, int rows, int v, int shared, int* ids, float* teacherLogProbs, float* teacherLogRest, int k,
        ReadOnlySpan<int> targets, float scale, float ratio, float temperature, DistillationDivergence divergence)
    {
        if (targets.Length < rows) throw new ArgumentException($"{targets.Length} targets for {rows} rows");
        if (pool.Threads == 1 || rows < 2)
            return ForwardBackward(logits, rows, v, shared, ids, teacherLogProbs, teacherLogRest, k, targets, scale, ratio, temperature, divergence);
        var sums = stackalloc DistillationSums[pool.Threads];
        fixed (int* tg = targets)
        {
            var job = new Job
            {
                Logits = logits, TeacherLogProbs = teacherLogProbs, TeacherLogRest = teacherLogRest, Ids = ids, Targets = tg, Rows = rows, Width = v,
                Shared = shared, TopK = k, Scale = scale, Ratio = ratio, Temperature = temperature, Divergence = divergence, Sums = sums,
            };
            // A bad id in a cache record fails on a worker thread: rethrown here as the kernel's own error.
            try { pool.Run(&Worker, &job); }
            catch (AggregateException e) when (e.InnerException is ArgumentException inner)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(inner).Throw();
            }
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
            ? ForwardBackward(j.Logits + (long)r0 * j.Width, r1 - r0, j.Width, j.Shared, j.Ids + (long)r0 * j.TopK, j.TeacherLogProbs + (long)r0 * j.TopK,
                j.TeacherLogRest + r0, j.TopK, new ReadOnlySpan<int>(j.Targets + r0, r1 - r0), j.Scale, j.Ratio, j.Temperature, j.Divergence)
            : default;
    }
}
