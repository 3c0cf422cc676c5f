using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Training;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Training;

/// <summary>
/// Distillation from a teacher cache (hone distill cache, hone train --teacher-cache): the bucket loss kernel against
/// float64 PyTorch (tools/reference/make_distill_cache_fixtures.py → Fixtures/distill/kd_buckets.json) and, with K = the
/// vocabulary, against the live loss; the top-K selection; the file's round trip and its refusals of damaged,
/// truncated and mismatched files; gradients through a tiny model by finite differences; and training from a cache of
/// every id matching training with the live teacher.
/// </summary>
public unsafe class DistillationCacheTests(ITestOutputHelper output)
{
    static readonly WorkerPool Pool = new(2);

    // ---- the kernel against PyTorch ------------------------------------------------------------------------

    static string FixturePath => Path.Combine(AppContext.BaseDirectory, "Fixtures", "distill", "kd_buckets.json");

    public static IEnumerable<object[]> Cases() =>
        ((JsonArray)JsonNode.Parse(File.ReadAllText(FixturePath))!["cases"]!).Select(c => new object[] { (string)c!["name"]! });

    static JsonNode Case(string name) => ((JsonArray)JsonNode.Parse(File.ReadAllText(FixturePath))!["cases"]!).Single(c => (string)c!["name"]! == name)!;

    static float[] Floats(JsonNode node) => ((JsonArray)node).Select(v => v == null ? float.NegativeInfinity : (float)(double)v).ToArray();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Bucket_loss_and_gradient_match_pytorch_float64(string name)
    {
        var c = Case(name);
        int rows = (int)c["rows"]!, v = (int)c["vocab"]!, shared = (int)c["shared"]!, k = (int)c["top_k"]!;
        float ratio = (float)(double)c["ratio"]!, temperature = (float)(double)c["temperature"]!, scale = (float)(double)c["scale"]!;
        var divergence = Enum.Parse<DistillationDivergence>((string)c["divergence"]!, ignoreCase: true);
        var ids = ((JsonArray)c["ids"]!).Select(i => (int)i!).ToArray();
        var logProbs = Floats(c["log_probs"]!);
        var logRest = Floats(c["log_rest"]!);
        var targets = ((JsonArray)c["targets"]!).Select(t => (int)t!).ToArray();
        var want = Floats(c["dlogits"]!);
        foreach (var threads in new[] { 1, 2 })
        {
            var logits = Floats(c["logits"]!);
            using var pool = new WorkerPool(threads);
            DistillationSums sums;
            fixed (float* z = logits, lp = logProbs, lr = logRest)
            fixed (int* id = ids)
                sums = BucketDistillation.ForwardBackward(pool, z, rows, v, shared, id, lp, lr, k, targets, scale, ratio, temperature, divergence);
            double loss = scale * ((1 - (double)ratio) * sums.CrossEntropy + ratio * sums.Divergence);
            AssertClose($"{name} loss", (double)c["loss"]!, loss);
            AssertClose($"{name} cross-entropy", (double)c["cross_entropy_sum"]!, sums.CrossEntropy);
            AssertClose($"{name} divergence", (double)c["divergence_sum"]!, sums.Divergence);
            if (c["full_loss"] is JsonNode full) AssertClose($"{name} against the full-vocabulary loss", (double)full, loss);
            double top = want.Max(Math.Abs), worst = 0;
            for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(logits[i] - want[i]));
            output.WriteLine($"{name} ({threads} threads): loss {loss:G8}, gradient max abs error {worst:E2} of {top:E2}");
            Assert.True(worst <= 1e-5 * top + 1e-8, $"{name}: gradient error {worst:E2} against a scale of {top:E2}");
            for (int r = 0; r < rows; r++)
                if (targets[r] < 0) Assert.All(logits.AsSpan(r * v, v).ToArray(), g => Assert.Equal(0f, g));
        }
    }

    static void AssertClose(string what, double want, double got) =>
        Assert.True(Math.Abs(got - want) <= 1e-5 * Math.Max(1, Math.Abs(want)), $"{what}: {got:G10}, PyTorch float64 {want:G10}");

    /// <summary>With K = the vocabulary the buckets are the ids: the bucket kernel on the selected log-probs gives the
    /// full kernel's loss and gradient on the teacher's logits (up to the log-probs' rounding to float), for rows wider
    /// than SIMD widths and the student wider than the cache.</summary>
    [Theory]
    [InlineData(DistillationDivergence.Forward, 64, 64, 2f)]
    [InlineData(DistillationDivergence.Reverse, 75, 70, 0.8f)]
    [InlineData(DistillationDivergence.Symmetric, 33, 33, 1f)]
    public void With_every_id_kept_the_bucket_loss_is_the_full_loss(DistillationDivergence divergence, int v, int shared, float temperature)
    {
        const int rows = 5;
        var rng = new Random(v);
        var student = Enumerable.Range(0, rows * v).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        var teacher = Enumerable.Range(0, rows * shared).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
        int[] targets = [3, -1, 0, shared - 1, v - 1];
        var ids = new int[rows * shared];
        var logProbs = new float[rows * shared];
        var logRest = new float[rows];
        var rowIndex = Enumerable.Range(0, rows).ToArray();
        fixed (float* zt = teacher, lp = logProbs, lr = logRest)
        fixed (int* id = ids, ri = rowIndex)
            Assert.Null(DistillationCacheBuilder.SelectTopK(Pool, zt, shared, ri, rows, shared, temperature, id, lp, lr));
        Assert.All(logRest, r => Assert.Equal(float.NegativeInfinity, r));
        var live = (float[])student.Clone();
        var bucketed = (float[])student.Clone();
        DistillationSums a, b;
        fixed (float* z = live, zt = teacher) a = Distillation.ForwardBackward(Pool, z, zt, shared, rows, v, shared, targets, 0.5f, 0.6f, temperature, divergence);
        fixed (float* z = bucketed, lp = logProbs, lr = logRest)
        fixed (int* id = ids)
            b = BucketDistillation.ForwardBackward(Pool, z, rows, v, shared, id, lp, lr, shared, targets, 0.5f, 0.6f, temperature, divergence);
        Assert.Equal(a.CrossEntropy, b.CrossEntropy, 10);
        Assert.True(Math.Abs(a.Divergence - b.Divergence) <= 1e-5 * Math.Max(1, a.Divergence), $"divergence {b.Divergence:G10}, live {a.Divergence:G10}");
        double top = live.Max(Math.Abs), worst = live.Zip(bucketed, (x, y) => Math.Abs(x - y)).Max();
        output.WriteLine($"{divergence}: divergence {b.Divergence:G8} vs {a.Divergence:G8}, gradient max difference {worst:E2} of {top:E2}");
        Assert.True(worst <= 1e-5 * top, $"gradient difference {worst:E2} against {top:E2}");
    }

    [Fact]
    public void Bad_cache_ids_are_refused_by_the_kernel()
    {
        var z = new float[2 * 8];
        var lp = new float[2 * 3];
        var lr = new float[2];
        int[] targets = [1, 2];
        foreach (var (ids, message) in new (int[], string)[] { ([0, 1, 1, 2, 3, 4], "appears twice"), ([0, 1, 2, 3, 4, 8], "outside the shared vocabulary") })
            foreach (var threads in new[] { 1, 2 })
            {
                using var pool = new WorkerPool(threads);
                fixed (float* pz = z, plp = lp, plr = lr)
                fixed (int* pid = ids)
                {
                    nint a = (nint)pz, b = (nint)plp, c = (nint)plr, d = (nint)pid;
                    var e = Assert.Throws<ArgumentOutOfRangeException>(() => BucketDistillation.ForwardBackward(pool, (float*)a, 2, 8, 8, (int*)d, (float*)b, (float*)c, 3,
                        targets, 1, 0.5f, 1, DistillationDivergence.Forward));
                    Assert.Contains(message, e.Message);
                }
            }
        fixed (float* pz = z, plp = lp, plr = lr)
        fixed (int* pid = new int[6])
        {
            nint a = (nint)pz, b = (nint)plp, c = (nint)plr, d = (nint)pid;
            Assert.Throws<ArgumentOutOfRangeException>(() => BucketDistillation.ForwardBackward((float*)a, 2, 8, 8, (int*)d, (float*)b, (float*)c, 9, targets, 1, 0.5f, 1, DistillationDivergence.Forward));
            Assert.Throws<ArgumentOutOfRangeException>(() => BucketDistillation.ForwardBackward((float*)a, 2, 8, 9, (int*)d, (float*)b, (float*)c, 3, targets, 1, 0.5f, 1, DistillationDivergence.Forward));
            Assert.Throws<ArgumentOutOfRangeException>(() => BucketDistillation.ForwardBackward((float*)a, 2, 8, 8, (int*)d, (float*)b, (float*)c, 3, targets, 1, 0.5f, 0, DistillationDivergence.Forward));
        }
    }

    // ---- top-K selection ------------------------------------------------------------------------------------

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(36)]
    [InlineData(37)]
    public void Top_k_selection_matches_a_full_sort_with_ties_by_id(int k)
    {
        const int v = 37, rows = 6;
        const float temperature = 0.7f;
        var rng = new Random(k);
        // Logits on a coarse grid, so that ties occur (the lower id first).
        var logits = Enumerable.Range(0, rows * v).Select(_ => (float)(rng.Next(-8, 9) * 0.5)).ToArray();
        int[] pick = [5, 0, 2];
        var ids = new int[pick.Length * k];
        var logProbs = new float[pick.Length * k];
        var logRest = new float[pick.Length];
        fixed (float* z = logits, lp = logProbs, lr = logRest)
        fixed (int* id = ids, pr = pick)
            Assert.Null(DistillationCacheBuilder.SelectTopK(Pool, z, v, pr, pick.Length, k, temperature, id, lp, lr));
        for (int p = 0; p < pick.Length; p++)
        {
            var row = logits.AsSpan(pick[p] * v, v).ToArray();
            var order = Enumerable.Range(0, v).OrderByDescending(i => row[i]).ThenBy(i => i).ToArray();
            Assert.Equal(order.Take(k), ids.AsSpan(p * k, k).ToArray());
            double lse = Math.Log(row.Sum(x => Math.Exp(x / (double)temperature)));
            // Float log-probabilities: to their rounding.
            for (int j = 0; j < k; j++) AssertNear(row[order[j]] / (double)temperature - lse, logProbs[p * k + j]);
            if (k == v) Assert.Equal(float.NegativeInfinity, logRest[p]);
            else AssertNear(Math.Log(order.Skip(k).Sum(i => Math.Exp(row[i] / (double)temperature))) - lse, logRest[p]);
        }
        logits[2 * v + 4] = float.NaN;
        fixed (float* z = logits, lp = logProbs, lr = logRest)
        fixed (int* id = ids, pr = pick)
            Assert.Equal(2, DistillationCacheBuilder.SelectTopK(Pool, z, v, pr, pick.Length, k, temperature, id, lp, lr));
    }

    static void AssertNear(double want, float got) =>
        Assert.True(Math.Abs(got - want) <= 1e-6 * Math.Max(1, Math.Abs(want)), $"{got:G9}, expected {want:G12}");

    // ---- the file ---------------------------------------------------------------------------------------------

    /// <summary>A cache of <paramref name="count"/> random records (K = 3 of 50 ids, rows of 16), and what it holds.</summary>
    static List<(int[] Tokens, int[] Targets, int[] Ids, float[] LogProbs, float[] RestMass)> WriteRandom(string path, int count, int seed = 1)
    {
        const int k = 3, vocab = 50, sequence = 16;
        var rng = new Random(seed);
        var records = new List<(int[], int[], int[], float[], float[])>();
        using var writer = new DistillationCacheWriter(path, k, 1.5f, vocab, new byte[32], sequence, new JsonObject { ["teacher"] = "/models/teacher", ["data"] = new JsonObject() });
        for (int i = 0; i < count; i++)
        {
            var tokens = Enumerable.Range(0, sequence).Select(_ => rng.Next(vocab)).ToArray();
            var targets = tokens.Skip(1).Append(-1).Select((t, j) => j % 3 == 0 ? -1 : t).ToArray();
            int p = targets.Count(t => t >= 0);
            var ids = Enumerable.Range(0, p).SelectMany(_ => Enumerable.Range(0, vocab).OrderBy(_ => rng.Next()).Take(k)).ToArray();
            var logProbs = Enumerable.Range(0, p * k).Select(_ => (float)-rng.NextDouble() * 5).ToArray();
            var rest = Enumerable.Range(0, p).Select(_ => (float)-rng.NextDouble()).ToArray();
            writer.Add(DistillationCache.Key(tokens, targets), p, ids, logProbs, rest);
            records.Add((tokens, targets, ids, logProbs, rest));
        }
        Assert.True(writer.Contains(DistillationCache.Key(records[0].Item1, records[0].Item2)));
        Assert.Throws<ArgumentException>(() => writer.Add(DistillationCache.Key(records[0].Item1, records[0].Item2), 1, new int[3], new float[3], new float[1]));
        Assert.False(File.Exists(path)); // under a temporary name until committed
        writer.Commit();
        return records;
    }

    [Fact]
    public void A_cache_round_trips()
    {
        using var dir = new TempDirectory();
        var path = dir.File("c.kdc");
        var records = WriteRandom(path, 40);
        Assert.Single(Directory.GetFiles(dir.Path)); // no temporary left
        using var cache = DistillationCacheFile.Open(path);
        var h = cache.Header;
        Assert.Equal((3, 1.5f, 50, 16, 40L), (h.TopK, h.Temperature, h.VocabSize, h.SeqLen, h.Sequences));
        Assert.Equal(records.Sum(r => (long)r.RestMass.Length), h.Positions);
        Assert.Equal("/models/teacher", (string)h.Options["teacher"]!);
        foreach (var (tokens, targets, ids, logProbs, rest) in records)
        {
            int entry = cache.Find(DistillationCache.Key(tokens, targets));
            Assert.True(entry >= 0);
            int p = cache.PositionsOf(entry);
            Assert.Equal(rest.Length, p);
            var gotIds = new int[p * 3];
            var gotLogProbs = new float[p * 3];
            var gotRest = new float[p];
            cache.Read(entry, gotIds, gotLogProbs, gotRest);
            Assert.Equal(ids, gotIds);
            Assert.Equal(logProbs, gotLogProbs);
            Assert.Equal(rest, gotRest);
        }
        var other = records[0].Tokens.ToArray();
        other[0] ^= 1;
        Assert.Equal(-1, cache.Find(DistillationCache.Key(other, records[0].Targets)));
    }

    [Fact]
    public void An_uncommitted_cache_leaves_nothing()
    {
        using var dir = new TempDirectory();
        using (var writer = new DistillationCacheWriter(dir.File("c.kdc"), 2, 1, 10, new byte[32], 4, new JsonObject()))
            writer.Add(DistillationCache.Key([1, 2, 3, 4], [2, 3, 4, -1]), 3, new int[6], new float[6], new float[3]);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    /// <summary>Every kind of damage fails in one line that names the file and says to rebuild it.</summary>
    [Theory]
    [InlineData("truncated", "truncated teacher cache")]
    [InlineData("longer", "bytes past the end")]
    [InlineData("short", "shorter than the 128-byte header")]
    [InlineData("magic", "not a Hone teacher cache")]
    [InlineData("version", "teacher cache version 9; this Hone reads version 1")]
    [InlineData("header", "do not match their checksum")]
    [InlineData("index", "do not match their checksum")]
    [InlineData("count", "damaged teacher cache header")]
    [InlineData("record", "does not match its checksum")]
    public void A_damaged_cache_is_refused_in_one_line(string damage, string expected)
    {
        using var dir = new TempDirectory();
        var path = dir.File("c.kdc");
        var records = WriteRandom(path, 12);
        var bytes = File.ReadAllBytes(path);
        switch (damage)
        {
            case "truncated": bytes = bytes[..^1]; break;
            case "longer": bytes = [.. bytes, 0]; break;
            case "short": bytes = bytes[..100]; break;
            case "magic": bytes[0] = (byte)'X'; break;
            case "version": bytes[8] = 9; break;
            case "header": bytes[20] ^= 1; break;   // the temperature
            case "index": bytes[^1] ^= 1; break;    // the last entry's checksum
            case "count": bytes[37] = 1; break;     // 2⁴⁰ more sequences than the file can hold
            case "record": bytes[128 + (int)BitConverter.ToInt64(bytes, 48) + 7] ^= 0x40; break; // inside the first record written
        }
        File.WriteAllBytes(path, bytes);
        var e = Assert.ThrowsAny<Exception>(() =>
        {
            using var cache = DistillationCacheFile.Open(path);
            var buffer = new int[16 * 3];
            foreach (var r in records)
            {
                int entry = cache.Find(DistillationCache.Key(r.Tokens, r.Targets));
                cache.Read(entry, buffer, new float[16 * 3], new float[16]);
            }
        });
        output.WriteLine(e.Message);
        Assert.IsType<DataFormatException>(e);
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Contains("hone distill cache", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    // ---- through a tiny model --------------------------------------------------------------------------------

    /// <summary>A teacher with the tiny chat model's tokenizer and another (random, 3-layer) body.</summary>
    static readonly Lazy<string> TeacherModel = new(() => TinyChatModel.Build("distill-cache-teacher", vocab => new ModelConfig
    {
        Architecture = "llama", VocabSize = vocab, HiddenSize = 32, IntermediateSize = 64, Layers = 3, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = TinyChatModel.Context, TiedEmbeddings = false,
    }, seed: 23, std: 0.08f, embeddingStd: 0.3f));

    static (int[] Tokens, int[] Targets) Batch(int batch, int sequence, int vocab, int seed)
    {
        var rng = new Random(seed);
        var tokens = Enumerable.Range(0, batch * sequence).Select(_ => rng.Next(vocab)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < sequence / 3; t++) targets[b * sequence + t] = -1; // a masked prompt in every sequence
        return (tokens, targets);
    }

    /// <summary>Cache the teacher's top-K over the rows of one micro-batch (the way the cache pass does it).</summary>
    static void CacheBatch(string path, Checkpoint teacherCheckpoint, int[] tokens, int[] targets, int batch, int sequence, int k, float temperature)
    {
        int vocab = teacherCheckpoint.Config.VocabSize;
        using var teacher = ModelTeacher.Open(teacherCheckpoint, null, Pool, batch, sequence);
        teacher.Run(tokens, targets, batch, sequence);
        using var writer = new DistillationCacheWriter(path, k, temperature, vocab, DistillationCache.VocabularyHash(teacherCheckpoint.LoadTokenizer(), vocab), sequence, new JsonObject());
        var ids = new int[sequence * k];
        var logProbs = new float[sequence * k];
        var logRest = new float[sequence];
        for (int b = 0; b < batch; b++)
        {
            var rows = Enumerable.Range(b * sequence, sequence).Where(i => targets[i] >= 0).ToArray();
            if (rows.Length == 0) continue;
            fixed (int* r = rows, id = ids)
            fixed (float* lp = logProbs, lr = logRest)
                Assert.Null(DistillationCacheBuilder.SelectTopK(Pool, teacher.Logits, vocab, r, rows.Length, k, temperature, id, lp, lr));
            writer.Add(DistillationCache.Key(tokens.AsSpan(b * sequence, sequence), targets.AsSpan(b * sequence, sequence)), rows.Length, ids, logProbs, logRest);
        }
        writer.Commit();
    }

    [Theory]
    [InlineData(DistillationDivergence.Forward, 1f, 1f, 5)]
    [InlineData(DistillationDivergence.Forward, 2f, 0.5f, 1)]
    [InlineData(DistillationDivergence.Reverse, 1f, 1f, 5)]
    [InlineData(DistillationDivergence.Reverse, 2.5f, 0.5f, 40)]
    [InlineData(DistillationDivergence.Symmetric, 0.7f, 0.3f, 5)]
    [InlineData(DistillationDivergence.Symmetric, 2f, 1f, 12)]
    public void Finite_differences_agree_with_backward_through_the_cached_loss(DistillationDivergence divergence, float temperature, float ratio, int k)
    {
        using var dir = new TempDirectory();
        using var studentCheckpoint = Checkpoint.Open(TinyChatModel.Path);
        using var teacherCheckpoint = Checkpoint.Open(TeacherModel.Value);
        using var w = LlamaWeights.Load(studentCheckpoint, new WeightLoadOptions(TensorType.F32));
        const int batch = 2, sequence = 12;
        int vocab = studentCheckpoint.Config.VocabSize;
        var (tokens, targets) = Batch(batch, sequence, vocab, 7);
        CacheBatch(dir.File("c.kdc"), teacherCheckpoint, tokens, targets, batch, sequence, k, temperature);
        using var cache = DistillationCacheFile.Open(dir.File("c.kdc"));
        using var student = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full), batch, sequence);
        using var loss = new CachedDistillationLoss(cache, new DistillationSettings(ratio, temperature, divergence), batch, sequence);
        student.LogitsLoss = loss;
        student.ZeroGradients();
        student.ForwardBackward(tokens, targets, batch, sequence, 1f);
        Assert.True(loss.Sums.Divergence > 0);
        int probes = FiniteDifferences.CheckParameters(student.Parameters, () => student.Forward(tokens, targets, batch, sequence),
            $"{divergence} T={temperature} α={ratio} K={k}", seed: 11, probesPerParameter: 2);
        Assert.True(probes >= 2 * 15);
    }

    /// <summary>One micro-batch through the student with the live teacher and with a cache of every id: the same loss
    /// and the same gradient of every parameter (up to the float rounding of the stored log-probabilities).</summary>
    [Theory]
    [InlineData(DistillationDivergence.Forward)]
    [InlineData(DistillationDivergence.Reverse)]
    [InlineData(DistillationDivergence.Symmetric)]
    public void A_cache_of_every_id_gives_the_live_teachers_loss_and_gradients(DistillationDivergence divergence)
    {
        using var dir = new TempDirectory();
        using var studentCheckpoint = Checkpoint.Open(TinyChatModel.Path);
        using var teacherCheckpoint = Checkpoint.Open(TeacherModel.Value);
        using var w = LlamaWeights.Load(studentCheckpoint, new WeightLoadOptions(TensorType.F32));
        const int batch = 3, sequence = 70; // rows beyond one loss chunk
        int vocab = studentCheckpoint.Config.VocabSize;
        var (tokens, targets) = Batch(batch, sequence, vocab, 3);
        var settings = new DistillationSettings(0.7f, 2f, divergence);
        CacheBatch(dir.File("c.kdc"), teacherCheckpoint, tokens, targets, batch, sequence, vocab, settings.Temperature);
        using var student = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full), batch, sequence);
        int count = targets.Count(t => t >= 0);

        using var teacher = ModelTeacher.Open(teacherCheckpoint, null, Pool, batch, sequence);
        var liveLoss = new DistillationLoss(teacher, settings, vocab);
        student.LogitsLoss = liveLoss;
        student.ZeroGradients();
        double live = student.ForwardBackward(tokens, targets, batch, sequence, 1f / count);
        var liveGradients = student.Parameters.Select(p => p.Gradients.ToArray()).ToList();

        using var cache = DistillationCacheFile.Open(dir.File("c.kdc"));
        using var cachedLoss = new CachedDistillationLoss(cache, settings, batch, sequence);
        student.LogitsLoss = cachedLoss;
        student.ZeroGradients();
        double cached = student.ForwardBackward(tokens, targets, batch, sequence, 1f / count);

        output.WriteLine($"{divergence}: loss live {live:G10}, cached {cached:G10}; KL live {liveLoss.Sums.Divergence / count:G8}, cached {cachedLoss.Sums.Divergence / count:G8}");
        Assert.True(Math.Abs(live - cached) <= 1e-5 * Math.Abs(live), $"loss {cached:G10}, live {live:G10}");
        Assert.Equal(liveLoss.Sums.CrossEntropy, cachedLoss.Sums.CrossEntropy, 8);
        int index = 0;
        foreach (var p in student.Parameters)
        {
            var want = liveGradients[index++];
            var got = p.Gradients.ToArray();
            double top = want.Max(Math.Abs), worst = want.Zip(got, (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-4 * top + 1e-9, $"{p.Name}: gradient difference {worst:E2} against {top:E2}");
        }
    }

    // ---- the cache pass and the training stage ----------------------------------------------------------------

    sealed class Recorder : ITrainingReporter
    {
        public readonly List<string> Lines = new();
        public void Info(string message) => Lines.Add(message);
        public void Progress(TrainingProgress progress) { }
        public void Validation(long step, double loss, bool improved) { }
        public void Checkpoint(string path) { }
    }

    /// <summary>Synthetic conversations of 19 to 24 tokens (a masked prompt of 12, then the answer), packed or one per
    /// row as the options say; the examples depend on the seed, so that another seed is other data.</summary>
    static TrainingData Data(Checkpoint c, TrainOptions o)
    {
        var rng = new Random(5 + (int)o.Seed);
        var examples = Enumerable.Range(0, 8).Select(e =>
        {
            var ids = Enumerable.Range(0, 19 + e % 6).Select(_ => 3 + rng.Next(c.Config.VocabSize - 3)).ToArray();
            return new TrainingExample(ids, ids.Select((_, i) => i >= 12).ToArray());
        }).ToList();
        return new TrainingData(new TrainingRows(examples, o.SeqLen, o.Packing ?? false, 0, o.Seed), null, 0, "8 synthetic examples");
    }

    static TrainOptions Options(string outDir) => new()
    {
        Model = TinyChatModel.Path, Data = "synthetic", Out = outDir, Method = TrainingMethod.Full, Stage = TrainingStage.Distill, Teacher = TeacherModel.Value,
        KdRatio = 0.6, KdTemperature = 2, SeqLen = 24, BatchSize = 4, MaxSteps = 6, Lr = 1e-2f, Threads = 2, SaveEvery = 0, EvalEvery = 0, WarmupSteps = 2,
        Schedule = LearningRateSchedule.Constant, LogEvery = 1, Seed = 3, ValSplit = 0,
    };

    static DistillationCacheReport BuildCache(TrainOptions run, string path, int topK, float temperature, string? teacher = null) =>
        DistillationCacheBuilder.Build(new DistillationCacheOptions { Run = run, Teacher = teacher ?? TeacherModel.Value, TopK = topK, Temperature = temperature, Out = path, Threads = 2 },
            Data, _ => { });

    static List<JsonNode> Metrics(string dir) => File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Training_from_a_cache_of_every_id_follows_the_live_teacher(bool packing)
    {
        using var live = new TempDirectory();
        using var cached = new TempDirectory();
        using var caches = new TempDirectory();
        var o = Options(live.Path) with { Packing = packing, KdLoss = DistillationDivergence.Symmetric };
        int vocab;
        using (var c = Checkpoint.Open(TinyChatModel.Path)) vocab = c.Config.VocabSize;
        var report = BuildCache(o, caches.File("c.kdc"), vocab, 2);
        // 6 steps of 4 rows: packed, 24 rows of the stream; one per example, the 8 examples.
        Assert.Equal(packing ? 24 : 8, report.Rows);
        Assert.Equal(1.0, report.MeanTopMass, 12);
        Trainer.Run(o, Data, new Recorder());
        var reporter = new Recorder();
        Trainer.Run(o with { Out = cached.Path, Teacher = null, TeacherCache = caches.File("c.kdc") }, Data, reporter);
        Assert.Contains(reporter.Lines, l => l.StartsWith("distill: teacher cache") && l.Contains($"top {vocab} of {vocab} ids"));
        var a = Metrics(live.Path);
        var b = Metrics(cached.Path);
        Assert.Equal(6, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            double la = (double)a[i]["loss"]!, lb = (double)b[i]["loss"]!, ka = (double)a[i]["kd_loss"]!, kb = (double)b[i]["kd_loss"]!;
            output.WriteLine($"step {i + 1}: loss live {la:F6} cached {lb:F6}, kd_loss live {ka:F6} cached {kb:F6}");
            Assert.True(Math.Abs(la - lb) <= 1e-4 * la && Math.Abs(ka - kb) <= 1e-4 * ka, $"step {i + 1}: loss {lb} vs {la}, kd_loss {kb} vs {ka}");
        }
    }

    [Fact]
    public void A_top_k_cache_trains_the_student_toward_the_teacher()
    {
        using var run = new TempDirectory();
        using var caches = new TempDirectory();
        var o = Options(run.Path) with { MaxSteps = 40, KdRatio = 1, Teacher = null, TeacherCache = caches.File("c.kdc") };
        var report = BuildCache(o, caches.File("c.kdc"), 8, 2);
        output.WriteLine($"{report.Sequences} rows, {report.Positions} positions, {report.Bytes} bytes; top-8 mass {report.MeanTopMass:P2} (least {report.LeastTopMass:P2})");
        Assert.True(report.MeanTopMass is > 0 and < 1);
        Assert.Equal(8, report.Sequences); // one row per example without packing
        using (var c = Checkpoint.Open(TinyChatModel.Path))
            Assert.Equal(Data(c, o).Train.InOrder().Sum(r => r.Targets.Count(t => t >= 0)), report.Positions);
        Trainer.Run(o, Data, new Recorder());
        var lines = Metrics(run.Path);
        double first = (double)lines[0]["kd_loss"]!, last = (double)lines[^1]["kd_loss"]!;
        output.WriteLine($"kd_loss {first:F4} → {last:F4}");
        Assert.True(last < 0.3 * first, $"the bucketed divergence fell only from {first:F4} to {last:F4}");
    }

    [Fact]
    public void A_cache_for_fewer_steps_or_other_data_stops_the_run_before_the_weights_load_with_the_rebuild_command()
    {
        using var run = new TempDirectory();
        using var caches = new TempDirectory();
        var built = Options(run.Path) with { Packing = true, MaxSteps = 4 };
        BuildCache(built, caches.File("c.kdc"), 6, 2);
        var o = built with { Teacher = null, TeacherCache = caches.File("c.kdc") };
        // Same settings: it runs.
        Trainer.Run(o, Data, new Recorder());
        // Packed rows of more steps than the cache covers.
        var e = Assert.Throws<DataFormatException>(() => Trainer.Run(o with { MaxSteps = 8, Out = run.Path + "-2" }, Data, new Recorder()));
        output.WriteLine(e.Message);
        Assert.StartsWith(caches.File("c.kdc"), e.Message);
        var first = System.Text.RegularExpressions.Regex.Match(e.Message, @"rows this run draws are not in the teacher cache \(the first: row (\d+), in step (\d+)\)");
        Assert.True(first.Success, e.Message);
        int row = int.Parse(first.Groups[1].Value);
        Assert.True(row >= 16, "the cache holds the rows of 4 steps of 4");
        Assert.Equal(row / 4 + 1, int.Parse(first.Groups[2].Value));
        Assert.Contains("max_steps 4 in the cache, 8 here", e.Message);
        Assert.Contains($"rebuild with hone distill cache {TeacherModel.Value} --data", e.Message);
        Assert.Contains("--packing", e.Message);
        Assert.Contains("--max-steps 8", e.Message);
        Assert.Contains("--top-k 6 --temperature 2", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // Another seed is other data here.
        e = Assert.Throws<DataFormatException>(() => Trainer.Run(o with { Seed = 4, Out = run.Path + "-3" }, Data, new Recorder()));
        Assert.Contains("seed 3 in the cache, 4 here", e.Message);
        // Another sequence length is refused before the data loads.
        bool loaded = false;
        e = Assert.Throws<DataFormatException>(() => Trainer.Run(o with { SeqLen = 20, Out = run.Path + "-4" }, (c, x) => { loaded = true; return Data(c, x); }, new Recorder()));
        Assert.False(loaded);
        Assert.Contains("built with seq_len 24, this run's is 20", e.Message);
        Assert.Contains("--seq-len 20", e.Message);
        // Another temperature.
        e = Assert.Throws<DataFormatException>(() => Trainer.Run(o with { KdTemperature = 1, Out = run.Path + "-5" }, Data, new Recorder()));
        Assert.Contains("the cache holds the teacher at temperature 2, this run's kd_temperature is 1: pass --kd-temperature 2", e.Message);
        Assert.Contains("--temperature 1 ", e.Message);
    }

    [Fact]
    public void A_resumed_run_from_a_cache_ends_bit_identical()
    {
        using var straight = new TempDirectory();
        using var resumed = new TempDirectory();
        using var caches = new TempDirectory();
        var o = Options(straight.Path) with { Packing = true, MaxSteps = 8, SaveEvery = 3, Method = TrainingMethod.Lora, LoraR = 8, LoraAlpha = 16 };
        BuildCache(o, caches.File("c.kdc"), 6, 2);
        o = o with { Teacher = null, TeacherCache = caches.File("c.kdc") };
        Trainer.Run(o, Data, new Recorder());
        using var cts = new CancellationTokenSource();
        Assert.True(Trainer.Run(o with { Out = resumed.Path }, Data, new CancellingRecorder(5, cts), cts.Token).Interrupted);
        Trainer.Run(o with { Out = resumed.Path, Resume = "auto" }, Data, new Recorder());
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight.Path, "adapter_model.safetensors")), File.ReadAllBytes(Path.Combine(resumed.Path, "adapter_model.safetensors")));
        // Data that changed under the same settings: the rows are missing and the message says why that can be.
        var e = Assert.Throws<DataFormatException>(() => Trainer.Run(o with { Out = resumed.Path + "-2" },
            (c, x) => { var d = Data(c, x with { Seed = 9 }); return d; }, new Recorder()));
        output.WriteLine(e.Message);
        Assert.Contains("the data settings are the cache's, so the rows' tokens differ", e.Message);
    }

    sealed class CancellingRecorder(int step, CancellationTokenSource cts) : ITrainingReporter
    {
        public void Info(string message) { }
        public void Progress(TrainingProgress p) { if (p.Step == step) cts.Cancel(); }
        public void Validation(long s, double loss, bool improved) { }
        public void Checkpoint(string path) { }
    }

    [Fact]
    public void A_cache_of_a_teacher_with_another_tokenizer_is_refused()
    {
        using var run = new TempDirectory();
        using var teacherDir = new TempDirectory();
        using var caches = new TempDirectory();
        foreach (var f in Directory.GetFiles(TeacherModel.Value)) File.Copy(f, teacherDir.File(Path.GetFileName(f)));
        var json = JsonNode.Parse(File.ReadAllText(teacherDir.File("tokenizer.json")))!;
        var vocab = (JsonObject)json["model"]!["vocab"]!;
        var last = vocab.Select(kv => (Piece: kv.Key, Id: (int)kv.Value!)).OrderBy(kv => kv.Id).TakeLast(2).ToArray();
        vocab[last[0].Piece] = last[1].Id;
        vocab[last[1].Piece] = last[0].Id;
        File.WriteAllText(teacherDir.File("tokenizer.json"), json.ToJsonString());
        var o = Options(run.Path);
        BuildCache(o, caches.File("c.kdc"), 4, 2, teacherDir.Path);
        var e = Assert.Throws<DataFormatException>(() => Trainer.Run(o with { Teacher = null, TeacherCache = caches.File("c.kdc") }, Data, new Recorder()));
        output.WriteLine(e.Message);
        Assert.Contains("another tokenizer than the student", e.Message);
    }

    [Fact]
    public void A_cache_over_more_ids_than_the_student_has_is_refused()
    {
        using var run = new TempDirectory();
        using var caches = new TempDirectory();
        var wide = TinyChatModel.Build("distill-cache-wide", vocab => new ModelConfig
        {
            Architecture = "llama", VocabSize = vocab + 9, HiddenSize = 32, IntermediateSize = 64, Layers = 1, Heads = 2, KvHeads = 1,
            HeadDim = 16, RotaryDims = 16, MaxPositions = TinyChatModel.Context, TiedEmbeddings = false,
        }, seed: 29, std: 0.08f, embeddingStd: 0.3f);
        var o = Options(run.Path);
        BuildCache(o, caches.File("c.kdc"), 4, 2, wide);
        var e = Assert.Throws<DataFormatException>(() => Trainer.Run(o with { Teacher = null, TeacherCache = caches.File("c.kdc") }, Data, new Recorder()));
        Assert.Contains("more than the student's", e.Message);
        Assert.Contains("use the live --teacher", e.Message);
    }

    [Fact]
    public void Cache_options_are_checked()
    {
        var o = new TrainOptions { Model = "m", Data = "d", Out = "o", Stage = TrainingStage.Distill };
        Assert.Contains("--teacher-cache FILE", Assert.Throws<ArgumentException>(() => o.Validate()).Message);
        Assert.Contains("not both", Assert.Throws<ArgumentException>(() => (o with { Teacher = "t", TeacherCache = "c" }).Validate()).Message);
        Assert.Contains("applies to --teacher", Assert.Throws<ArgumentException>(() => (o with { TeacherCache = "c", TeacherAdapter = "a" }).Validate()).Message);
        Assert.Contains("apply to --stage distill", Assert.Throws<ArgumentException>(() => (o with { Stage = TrainingStage.Sft, TeacherCache = "c" }).Validate()).Message);
        (o with { TeacherCache = "c", KdTemperature = 1 }).Validate();
        var r = TrainRecipe.Apply(YamlRecipe.Parse("recipe.yaml", "stage: distill\nteacher_cache: teacher.kdc\nkd_temperature: 1\n"), new TrainOptions());
        Assert.Equal("teacher.kdc", r.Options.TeacherCache);
        using var dir = new TempDirectory();
        var e = Assert.Throws<ArgumentException>(() => BuildCache(Options(dir.Path), dir.File("c.kdc"), 100000, 2));
        Assert.Contains("more than the teacher's vocabulary", e.Message);
    }

    [Fact]
    public void The_cache_command_and_training_from_it_run_from_the_command_line()
    {
        using var dir = new TempDirectory();
        var data = dir.File("train.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 12).Select(i =>
            new JsonObject { ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = $"Where is order {i}?" },
                new JsonObject { ["role"] = "assistant", ["content"] = $"Order {i} ships in {i % 5 + 1} days." }) }.ToJsonString()));
        var cache = dir.File("teacher.kdc");
        string[] dataOptions = ["--data", data, "--seq-len", "48", "--val-split", "0", "--batch-size", "2", "--seed", "7"];
        var made = HoneCli.Run(["distill", "cache", TeacherModel.Value, .. dataOptions, "--max-steps", "3", "--top-k", "8", "--temperature", "1.5", "--out", cache, "--threads", "2"]);
        output.WriteLine(made.ToString());
        Assert.Equal(0, made.ExitCode);
        Assert.Contains("wrote " + cache, made.Stdout);
        Assert.Contains("--kd-temperature 1.5", made.Stdout);
        var trained = HoneCli.Run(["train", TinyChatModel.Path, "--stage", "distill", "--teacher-cache", cache, "--kd-temperature", "1.5", .. dataOptions,
            "--max-steps", "3", "--out", dir.File("run"), "--threads", "2", "--save-every", "0", "--eval-every", "0"]);
        output.WriteLine(trained.ToString());
        Assert.Equal(0, trained.ExitCode);
        Assert.Contains("distill: teacher cache", trained.Stderr);
        // 10 steps of 2 draw all 12 rows; the cache holds the 6 of 3 steps.
        var refused = HoneCli.Run(["train", TinyChatModel.Path, "--stage", "distill", "--teacher-cache", cache, "--kd-temperature", "1.5", .. dataOptions,
            "--max-steps", "10", "--out", dir.File("run2"), "--threads", "2"]);
        output.WriteLine(refused.ToString());
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("rebuild with hone distill cache", refused.Stderr);
        Assert.Contains("--max-steps 10", refused.Stderr);
        Assert.Single(refused.Stderr.Trim().Split('\n'), l => l.StartsWith("error:"));
        Assert.Contains("--teacher-cache", HoneCli.Run("train", "--help").Stdout);
        Assert.Contains("--top-k", HoneCli.Run("distill", "cache", "--help").Stdout);
    }
}
