using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Training;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>
/// A LoRA whose low-rank term is scaled per output row by a trainable gate g[out]: y = W·x + g ⊙ (s·B·A·x). It exists
/// only here, to show that an adapter kind is one class plus one registration: nothing in Hone knows it, yet loading,
/// training, saving and merging pick it up from the table.
/// </summary>
sealed unsafe class GatedLoraAdapter : LoraAdapter
{
    public static readonly AdapterKind Registration = AdapterKinds.Register(new AdapterKind("test-gated", "use_test_gate",
        s => new GatedLoraAdapter(s), whyNoLlamaCpp: "test-gated adapters exist only in Hone's tests"));

    NativeBuffer? _scratch;

    GatedLoraAdapter(AdapterShape shape) : base(shape, shape.Out) { }

    public override AdapterKind Kind => Registration;
    public float* Gate => Extra;
    public override bool IsAdditive => true;

    protected override IEnumerable<AdapterTensor> DeclareTensors() =>
        base.DeclareTensors().Append(new AdapterTensor("gate", "lora_gate", (nint)Gate, 1, Out, WeightDecay: false));

    public override void Initialize(ulong seed, WeightMatrix? weight)
    {
        base.Initialize(seed, weight);
        new Span<float>(Gate, Out).Fill(1);
    }

    float* Scratch(long floats)
    {
        if (_scratch == null || _scratch.Length < floats * 4) { _scratch?.Dispose(); _scratch = new NativeBuffer(floats * 4); }
        return _scratch.AsFloats;
    }

    public override void Apply(WorkerPool pool, WeightMatrix weight, float* x, int tokens, int ldx, float* y, int ldy)
    {
        float* u = Scratch((long)tokens * Out);
        new Span<float>(u, tokens * Out).Clear();
        AddLowRank(pool, x, tokens, ldx, u, Out);
        for (int t = 0; t < tokens; t++)
            for (int o = 0; o < Out; o++) y[(long)t * ldy + o] += Gate[o] * u[(long)t * Out + o];
    }

    public override float[] MergedDelta(WeightMatrix weight)
    {
        var delta = base.MergedDelta(weight);
        for (int o = 0; o < Out; o++)
            for (int i = 0; i < In; i++) delta[(long)o * In + i] *= Gate[o];
        return delta;
    }

    /// <summary>Keeps X·Aᵀ [N, r] and the ungated low-rank output u = s·X·Aᵀ·Bᵀ [N, out].</summary>
    public override IReadOnlyList<int> SavedWidths => [Rank, Out];
    public override int WorkWidth => Rank + Out;

    public override void TrainingForward(in AdapterPass pass, WeightMatrix w, float* bias, float* x, float* y, bool accumulate, nint[] saved)
    {
        if (pass.Dropout.Active) throw new NotSupportedException("the test kind has no dropout");
        int n = pass.Rows;
        float* xa = (float*)saved[0], u = (float*)saved[1], work = pass.Work;
        Linear.Forward(pass.Pool, w, bias, x, n, w.Cols, y, w.Rows, accumulate);
        Gemm.Multiply(pass.Pool, n, Rank, In, x, In, false, A, In, GemmBLayout.NByK, xa, Rank, false);
        for (long i = 0; i < (long)n * Rank; i++) work[i] = xa[i] * Scale;
        Gemm.Multiply(pass.Pool, n, Out, Rank, work, Rank, false, B, Rank, GemmBLayout.NByK, u, Out, false);
        for (int t = 0; t < n; t++)
            for (int o = 0; o < Out; o++) y[(long)t * Out + o] += Gate[o] * u[(long)t * Out + o];
    }

    public override void TrainingBackward(in AdapterPass pass, WeightMatrix w, float* x, float* dy, float* dx, bool accumulateDx,
        nint[] saved, nint[] gradients)
    {
        int n = pass.Rows, r = Rank;
        float* xa = (float*)saved[0], u = (float*)saved[1];
        float* gradA = (float*)gradients[0], gradB = (float*)gradients[1], gradGate = (float*)gradients[2];
        float* work = pass.Work, gated = pass.Work + (long)n * r;
        // dg += Σ_t dy ⊙ u; the low-rank term's output gradient is dy ⊙ g.
        for (int t = 0; t < n; t++)
            for (int o = 0; o < Out; o++)
            {
                gradGate[o] += dy[(long)t * Out + o] * u[(long)t * Out + o];
                gated[(long)t * Out + o] = dy[(long)t * Out + o] * Gate[o];
            }
        Gemm.MultiplyByWeights(pass.Pool, n, w.Cols, w.Rows, dy, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx);
        for (long i = 0; i < (long)n * r; i++) work[i] = xa[i] * Scale;
        Gemm.Multiply(pass.Pool, w.Rows, r, n, gated, w.Rows, true, work, r, GemmBLayout.KByN, gradB, r, true);      // dB += (g⊙dy)ᵀ·s·X·Aᵀ
        Gemm.Multiply(pass.Pool, n, r, w.Rows, gated, w.Rows, false, B, r, GemmBLayout.KByN, work, r, false);       // v = (g⊙dy)·B
        for (long i = 0; i < (long)n * r; i++) work[i] *= Scale;
        Gemm.Multiply(pass.Pool, r, w.Cols, n, work, r, true, x, w.Cols, GemmBLayout.KByN, gradA, w.Cols, true);    // dA += vᵀ·X
        Gemm.Multiply(pass.Pool, n, w.Cols, r, work, r, false, A, w.Cols, GemmBLayout.KByN, dx, w.Cols, true);      // dx += v·A
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _scratch?.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>The registration table: every registered kind round-trips save → load → merge, and a kind registered
/// from outside Hone (<see cref="GatedLoraAdapter"/>) trains, saves, loads and merges with nothing else changed.</summary>
public unsafe class AdapterKindTests
{
    static readonly WorkerPool Pool = new(2);
    static string Model => ReferenceLogitsTests.FixturePath("llama-hf-f32");
    static readonly AdapterKind Gated = GatedLoraAdapter.Registration;

    static float[] Logits(LlamaWeights w, IReadOnlyDictionary<string, LoraAdapter>? adapters, int[] tokens)
    {
        using var m = new LlamaModel(w, Pool, maxContext: 64);
        if (adapters != null) foreach (var (t, a) in adapters) m.Adapters[t] = a;
        var logits = new float[tokens.Length * w.Config.VocabSize];
        m.Forward(tokens, logits, allLogits: true);
        return logits;
    }

    /// <summary>Adapters of the kind on every projection, with every tensor random (so each one matters).</summary>
    static Dictionary<string, LoraAdapter> RandomAdapters(AdapterKind kind, LlamaWeights w)
    {
        var adapters = new Dictionary<string, LoraAdapter>();
        var rng = new Random(5);
        foreach (var m in PeftAdapter.Adaptable(w).Where(m => m.Name.StartsWith("blk.", StringComparison.Ordinal)))
        {
            var a = kind.Create(new AdapterShape(m.Name, 4, m.Cols, m.Rows, 8));
            a.Initialize(7, m);
            foreach (var t in a.Tensors)
                for (long i = 0; i < t.Count; i++) t.Values[i] += (float)(rng.NextDouble() - 0.5) * (t.Parameter == "lora_A" ? 0.2f : 0.5f);
            a.Refresh(m);
            adapters[m.Name] = a;
        }
        return adapters;
    }

    public static IEnumerable<object[]> Kinds()
    {
        _ = Gated; // registered before the table is read
        return AdapterKinds.All.Where(k => !k.Composite).Select(k => new object[] { k.Name }); // a LoRA mixture: LoraMixtureTests
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_registered_kind_round_trips_save_load_merge(string name)
    {
        var kind = AdapterKinds.Get(name);
        using var dir = new TempDirectory();
        using var c = Checkpoint.Open(Model);
        using var w = LlamaWeights.Load(c);
        var tokens = Enumerable.Range(0, 20).Select(i => (i * 37 + 5) % c.Config.VocabSize).ToArray();
        var adapters = RandomAdapters(kind, w);
        try
        {
            var inMemory = Logits(w, adapters, tokens);
            Assert.NotEqual(Logits(w, null, tokens), inMemory);
            var saved = Path.Combine(dir.Path, "adapter");
            PeftAdapter.Save(saved, adapters.Values, new PeftAdapterConfig(4, 8, 0, PeftTargets.Of(AdapterSettings.AllLinear), false, kind, null));
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(saved, "adapter_config.json")))!;
            foreach (var k in AdapterKinds.All.Where(k => k.ConfigFlag != null))
                Assert.Equal(k == kind, (bool?)config[k.ConfigFlag!] ?? false);
            Assert.Equal(kind, PeftAdapter.ReadConfig(saved).Kind);

            var loaded = PeftAdapter.Load(saved, w);
            try
            {
                Assert.Equal(adapters.Keys.Order(), loaded.Keys.Order());
                foreach (var (target, a) in adapters)
                {
                    Assert.Equal(kind, loaded[target].Kind);
                    for (int i = 0; i < a.Tensors.Count; i++)
                        Assert.Equal(new Span<float>(a.Tensors[i].Values, (int)a.Tensors[i].Count).ToArray(),
                            new Span<float>(loaded[target].Tensors[i].Values, (int)a.Tensors[i].Count).ToArray());
                }
                Assert.Equal(inMemory, Logits(w, loaded, tokens)); // bit-identical after a round trip
            }
            finally { foreach (var a in loaded.Values) a.Dispose(); }

            var merged = Path.Combine(dir.Path, "merged");
            var report = AdapterMerger.Merge(new MergeOptions(Model, saved, merged));
            Assert.Equal(adapters.Count, report.MergedProjections);
            using var mc = Checkpoint.Open(merged);
            using var mw = LlamaWeights.Load(mc);
            TestData.AssertClose(inMemory, Logits(mw, null, tokens), 1e-4, $"{kind} merged");

            if (kind.LlamaCppType != null)
            {
                var gguf = Path.Combine(dir.Path, "adapter.gguf");
                AdapterGguf.Write(saved, Model, gguf, new List<string>());
                var fromGguf = PeftAdapter.Load(gguf, w);
                try { TestData.AssertClose(inMemory, Logits(w, fromGguf, tokens), 1e-5, $"{kind} via llama.cpp GGUF"); }
                finally { foreach (var a in fromGguf.Values) a.Dispose(); }
            }
            else
            {
                var e = Assert.Throws<ArgumentException>(() => AdapterGguf.Write(saved, Model, Path.Combine(dir.Path, "x.gguf"), new List<string>()));
                Assert.Equal($"{Path.Combine(saved, "adapter_config.json")}: {kind.ConfigFlag}: true: {kind.WhyNoLlamaCpp}", e.Message);
                Assert.False(File.Exists(Path.Combine(dir.Path, "x.gguf")));
            }
        }
        finally { foreach (var a in adapters.Values) a.Dispose(); }
    }

    [Fact]
    public void A_kind_registered_outside_hone_trains_with_the_right_gradients()
    {
        using var c = Checkpoint.Open(Model);
        var rng = new Random(3);
        var tokens = Enumerable.Range(0, 24).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        float[][] Gradients(string kind, Action<TrainableLlama>? perturb = null, double[]? loss = null)
        {
            using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
            using var m = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Lora, new AdapterSettings(4, 8, Targets: ["all-linear"], Kind: kind)), 2, 12);
            foreach (var a in m.Adapters.Values)
                for (int i = 0; i < a.Out * a.Rank; i++) a.B[i] = 0.05f * (i % 7 - 3);
            perturb?.Invoke(m);
            m.ZeroGradients();
            double l = m.ForwardBackward(tokens, targets, 2, 12, 1f / 23);
            if (loss != null) loss[0] = l / 23;
            return m.Parameters.Select(p => p.Gradients.ToArray()).ToArray();
        }
        // With every gate 1 the gated kind is LoRA: A and B gradients agree with LoRA's (through different code).
        var lora = Gradients("lora");
        var gated = Gradients(Gated.Name);
        Assert.Equal(lora.Length * 3 / 2, gated.Length);
        for (int p = 0, q = 0; p < lora.Length; p += 2, q += 3)
        {
            TestData.AssertClose(lora[p], gated[q], 1e-5, $"lora_A #{p / 2}");
            TestData.AssertClose(lora[p + 1], gated[q + 1], 1e-5, $"lora_B #{p / 2}");
        }
        // The gate's gradient against central differences of the loss (the first gates of the first projection).
        for (int o = 0; o < 4; o++)
        {
            const float h = 1e-2f;
            var up = new double[1];
            var down = new double[1];
            Gradients(Gated.Name, m => ((GatedLoraAdapter)m.Adapters["blk.0.attn_q.weight"]).Gate[o] += h, up);
            Gradients(Gated.Name, m => ((GatedLoraAdapter)m.Adapters["blk.0.attn_q.weight"]).Gate[o] -= h, down);
            double numeric = (up[0] - down[0]) / (2 * h);
            Assert.True(Math.Abs(numeric - gated[2][o]) <= 2e-3 + 2e-2 * Math.Abs(numeric), $"gate[{o}]: analytic {gated[2][o]}, numeric {numeric}");
        }
    }

    [Fact]
    public void A_kind_registered_outside_hone_goes_through_train_save_load_and_merge()
    {
        using var dir = new TempDirectory();
        var o = new TrainOptions
        {
            Model = Model, Data = "synthetic", Out = dir.File("run"), Method = TrainingMethod.Lora, AdapterKind = Gated.Name,
            SeqLen = 16, BatchSize = 2, MaxSteps = 12, Lr = 1e-2f, LoraR = 4, LoraAlpha = 8, Threads = 2, SaveEvery = 0, EvalEvery = 0,
            WarmupSteps = 0, Schedule = LearningRateSchedule.Constant, Seed = 3,
        };
        static TrainingData Data(Checkpoint c, TrainOptions o)
        {
            var rng = new Random(11);
            var examples = Enumerable.Range(0, 2).Select(_ =>
            {
                var ids = Enumerable.Range(0, 16).Select(_ => 3 + rng.Next(c.Config.VocabSize - 3)).ToArray();
                return new TrainingExample(ids, ids.Select((_, i) => i >= 4).ToArray());
            }).ToList();
            return new TrainingData(new TrainingRows(examples, o.SeqLen, false, 0, o.Seed), null, 0, "2 synthetic examples");
        }
        var summary = Trainer.Run(o, Data, new NullReporter());
        var config = PeftAdapter.ReadConfig(o.Out);
        Assert.Equal(Gated, config.Kind);
        Assert.True((bool)JsonNode.Parse(File.ReadAllText(Path.Combine(o.Out, "adapter_config.json")))!["use_test_gate"]!);

        using var c = Checkpoint.Open(Model);
        using var w = LlamaWeights.Load(c);
        var adapters = PeftAdapter.Load(o.Out, w);
        try
        {
            Assert.All(adapters.Values, a => Assert.IsType<GatedLoraAdapter>(a));
            Assert.Contains(adapters.Values, a => new Span<float>(((GatedLoraAdapter)a).Gate, a.Out).ToArray().Any(g => g != 1)); // the gates trained
            var tokens = Enumerable.Range(0, 16).ToArray();
            var withAdapter = Logits(w, adapters, tokens);
            var report = AdapterMerger.Merge(new MergeOptions(Model, o.Out, dir.File("merged")));
            using var mc = Checkpoint.Open(dir.File("merged"));
            using var mw = LlamaWeights.Load(mc);
            TestData.AssertClose(withAdapter, Logits(mw, null, tokens), 1e-4, "merged test-gated");
            Assert.True(report.MaxLogitDifference < 1e-4);
        }
        finally { foreach (var a in adapters.Values) a.Dispose(); }
        var losses = File.ReadAllLines(Path.Combine(o.Out, "metrics.jsonl")).Select(l => (double)JsonNode.Parse(l)!["loss"]!).ToArray();
        Assert.Equal(12, losses.Length);
        Assert.True(losses[^1] < losses[0] - 0.1, $"loss {losses[0]} → {losses[^1]} ({summary.Steps} steps)");
    }

    sealed class NullReporter : ITrainingReporter
    {
        public void Info(string message) { }
        public void Progress(TrainingProgress progress) { }
        public void Validation(long step, double loss, bool improved) { }
        public void Checkpoint(string path) { }
    }
}
