using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;

namespace Hone.Training;

/// <summary>
/// A training loss on the head's logits that takes the place of plain cross-entropy in
/// <see cref="TrainableLlama"/>'s loss chunks (<see cref="TrainableLlama.LogitsLoss"/>). It sits below the training
/// method: whatever trains (all weights, some layers, adapters) gets its gradient through the same dlogits.
/// </summary>
public unsafe interface ILogitsLoss
{
    /// <summary>Called once per forward, before the loss chunks, with the micro-batch's tokens [B·T] and targets [B·T].</summary>
    void Begin(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence);

    /// <summary>Rows [firstRow, firstRow + rows) of the micro-batch: returns their summed loss and overwrites
    /// <paramref name="logits"/> [rows, V] with ∂(scale·loss)/∂logits; rows whose target is &lt; 0 get zero gradient.</summary>
    double ForwardBackward(WorkerPool pool, int firstRow, int rows, float* logits, int v, ReadOnlySpan<int> targets, float scale);
}

/// <summary>Where the teacher's logits of a micro-batch come from.</summary>
public unsafe interface IDistillationTeacher : IDisposable
{
    /// <summary>Width of a teacher logit row (the teacher's vocabulary).</summary>
    int VocabSize { get; }

    /// <summary>Compute the teacher's logits of every position of the <paramref name="batch"/> sequences of
    /// <paramref name="sequence"/> tokens into <see cref="Logits"/>; sequences without a target may be skipped.</summary>
    void Run(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence);

    /// <summary>The last <see cref="Run"/>'s logits [B·T, VocabSize].</summary>
    float* Logits { get; }
}

/// <summary>A distillation loss (live teacher or cached one) and the sums of its two terms for the log.</summary>
public interface IDistillationLoss : ILogitsLoss
{
    /// <summary>Cross-entropy and T²·divergence summed over the target positions since the last <see cref="ResetSums"/>.</summary>
    DistillationSums Sums { get; }
    void ResetSums();
}

/// <summary>How a distillation run mixes the teacher in: loss = (1 − Ratio)·CE + Ratio·T²·divergence(T).</summary>
public sealed record DistillationSettings(float Ratio = 0.5f, float Temperature = 2f, DistillationDivergence Divergence = DistillationDivergence.Forward);

/// <summary>
/// Knowledge distillation as a loss (<see cref="Hone.Tensors.Distillation"/>): the teacher runs over each micro-batch's
/// tokens (no gradients) and every target position's loss becomes (1 − α)·CE + α·T²·KL between the tempered
/// distributions over the first <see cref="SharedVocabulary"/> ids. Keeps the sums of both terms for the log.
/// </summary>
public sealed unsafe class DistillationLoss(IDistillationTeacher teacher, DistillationSettings settings, int sharedVocabulary) : IDistillationLoss
{
    public IDistillationTeacher Teacher { get; } = teacher;
    public DistillationSettings Settings { get; } = settings;
    public int SharedVocabulary { get; } = sharedVocabulary;
    /// <summary>Cross-entropy and T²·KL summed over the target positions since the last <see cref="ResetSums"/>.</summary>
    public DistillationSums Sums { get; private set; }

    public void ResetSums() => Sums = default;

    public void Begin(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence) => Teacher.Run(tokens, targets, batch, sequence);

    public double ForwardBackward(WorkerPool pool, int firstRow, int rows, float* logits, int v, ReadOnlySpan<int> targets, float scale)
    {
        int shared = Math.Min(SharedVocabulary, v);
        var sums = Hone.Tensors.Distillation.ForwardBackward(pool, logits, Teacher.Logits + (long)firstRow * Teacher.VocabSize, Teacher.VocabSize,
            rows, v, shared, targets, scale, Settings.Ratio, Settings.Temperature, Settings.Divergence);
        Sums += sums;
        return (1 - (double)Settings.Ratio) * sums.CrossEntropy + Settings.Ratio * sums.Divergence;
    }
}

/// <summary>
/// A teacher model (and optional PEFT adapter) run for inference over the micro-batch's sequences: the inference
/// <see cref="LlamaModel"/> at exact precision on the trainer's worker pool, one sequence at a time from an empty KV
/// cache, every position's logits into a preallocated [B·T, V] buffer.
/// </summary>
public sealed unsafe class ModelTeacher : IDistillationTeacher
{
    readonly Checkpoint _checkpoint;
    readonly LlamaWeights _weights;
    readonly Dictionary<string, LoraAdapter> _adapters;
    readonly LlamaModel _model;
    readonly NativeBuffer _logits;   // [B·T, V]
    readonly int _maxRows, _maxSequence;
    WorkerPool? _ownPool;

    public int VocabSize { get; }
    public float* Logits => _logits.AsFloats;
    public ModelConfig Config => _checkpoint.Config;

    ModelTeacher(Checkpoint checkpoint, LlamaWeights weights, Dictionary<string, LoraAdapter> adapters, LlamaModel model, NativeBuffer logits, int maxRows, int maxSequence)
    {
        _checkpoint = checkpoint; _weights = weights; _adapters = adapters; _model = model; _logits = logits;
        _maxRows = maxRows; _maxSequence = maxSequence; VocabSize = checkpoint.Config.VocabSize;
    }

    /// <summary>Load the teacher (the caller keeps <paramref name="checkpoint"/> open while it runs, and disposes it) for micro-batches of up to <paramref name="maxBatch"/> × <paramref name="maxSequence"/> tokens.</summary>
    public static ModelTeacher Open(Checkpoint checkpoint, string? adapter, WorkerPool pool, int maxBatch, int maxSequence)
    {
        var c = checkpoint.Config;
        if (maxSequence > c.MaxPositions)
            throw new ArgumentException($"{checkpoint.Path}: seq_len {maxSequence} is more than the teacher's context of {c.MaxPositions} tokens");
        long logitBytes;
        try { logitBytes = checked((long)maxBatch * maxSequence * c.VocabSize * 4); }
        catch (OverflowException) { throw new ArgumentException($"{checkpoint.Path}: the teacher's logits of {maxBatch}×{maxSequence} tokens over {c.VocabSize} ids do not fit in memory"); }
        if ((long)maxSequence * c.VocabSize > int.MaxValue)
            throw new ArgumentException($"{checkpoint.Path}: one sequence's teacher logits ({maxSequence} × {c.VocabSize}) exceed 2³¹ values; lower seq_len");
        long weightBytes = checkpoint.Tensors.Sum(t => t.ByteLength);
        MemoryBudget.Require(LlamaModel.RequiredBytes(c, maxSequence, maxSequence) + weightBytes + logitBytes,
            $"the teacher {checkpoint.Path} (weights, KV cache of {maxSequence} tokens and logits of {maxBatch}×{maxSequence} tokens)");
        LlamaWeights? weights = null;
        var adapters = new Dictionary<string, LoraAdapter>();
        LlamaModel? model = null;
        NativeBuffer? logits = null;
        try
        {
            weights = LlamaWeights.Load(checkpoint);
            if (adapter != null) adapters = PeftAdapter.Load(adapter, weights);
            model = new LlamaModel(weights, pool, maxSequence, maxSequence) { Precision = ComputePrecision.Exact };
            foreach (var (target, a) in adapters) model.Adapters[target] = a;
            logits = new NativeBuffer(logitBytes);
            return new ModelTeacher(checkpoint, weights, adapters, model, logits, maxBatch * maxSequence, maxSequence);
        }
        catch
        {
            logits?.Dispose(); model?.Dispose();
            foreach (var a in adapters.Values) a.Dispose();
            weights?.Dispose();
            throw;
        }
    }

    public void Run(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence)
    {
        if ((long)batch * sequence > _maxRows || sequence > _maxSequence)
            throw new ArgumentException($"batch {batch}×{sequence} exceeds the teacher's allocated {_maxRows / _maxSequence}×{_maxSequence}");
        int v = VocabSize;
        for (int b = 0; b < batch; b++)
        {
            var rowTargets = targets.Slice(b * sequence, sequence);
            bool any = false;
            foreach (var t in rowTargets) if (t >= 0) { any = true; break; }
            if (!any) continue; // no position of it is scored
            _model.Reset();
            _model.Forward(tokens.Slice(b * sequence, sequence), new Span<float>(Logits + (long)b * sequence * v, sequence * v), allLogits: true, promptRows: true);
        }
    }

    /// <summary>Hand the teacher a pool of its own, disposed with it.</summary>
    internal void Own(WorkerPool pool) => _ownPool = pool;

    /// <summary>Worker threads of the pool the teacher runs on.</summary>
    public int Threads => _model.Pool.Threads;

    public void Dispose()
    {
        _logits.Dispose();
        _model.Dispose();
        foreach (var a in _adapters.Values) a.Dispose();
        _weights.Dispose();
        _ownPool?.Dispose();
    }
}

/// <summary>Whether a teacher's vocabulary fits a student's.</summary>
public static class DistillationVocabulary
{
    /// <summary>
    /// The number of leading ids the student and teacher share: both models' vocabulary when they have the same size
    /// and every token string agrees (tokenizer pieces compared id by id); the smaller one when only the sizes differ and
    /// the strings of the ids both have agree (the logits are then sliced to that range, and <paramref name="note"/> says
    /// so). Refused, naming the first differing token, otherwise.
    /// </summary>
    public static int Shared(Tokenizer student, int studentVocab, Tokenizer teacher, int teacherVocab, out string? note)
    {
        int shared = Math.Min(studentVocab, teacherVocab);
        for (int id = 0; id < shared; id++)
        {
            string? s = id < student.VocabSize ? student.TokenText(id) : null;
            string? t = id < teacher.VocabSize ? teacher.TokenText(id) : null;
            if (s != t)
                throw new ArgumentException($"the teacher's tokenizer differs from the student's at token {id}: {Show(t)} in the teacher, {Show(s)} in the student; distillation needs the same tokenizer");
        }
        note = studentVocab == teacherVocab ? null
            : $"vocabularies differ in size (student {studentVocab}, teacher {teacherVocab}) but agree on their first {shared} ids: distilling over those (both distributions renormalized over ids 0..{shared - 1})";
        return shared;
    }

    // Pieces quoted as JSON strings, with only what JSON must escape escaped (control characters, quotes, backslashes).
    static readonly System.Text.Json.JsonSerializerOptions QuotedPiece = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    static string Show(string? piece) => piece == null ? "no token" : System.Text.Json.Nodes.JsonValue.Create(piece).ToJsonString(QuotedPiece);
}

/// <summary>The trainer's distillation stage: the teacher's checks before any work, then the teacher beside the student.</summary>
public static class DistillationRun
{
    /// <summary>Open the teacher's checkpoint and check it against the student (tokenizer, context) before data or
    /// weights load; returns it (the caller disposes it) with the number of shared vocabulary ids.</summary>
    public static Checkpoint Check(TrainOptions o, Checkpoint student, ITrainingReporter reporter, out int sharedVocabulary)
    {
        var teacher = Checkpoint.Open(o.Teacher!);
        try
        {
            if (o.SeqLen > teacher.Config.MaxPositions)
                throw new ArgumentException($"{teacher.Path}: seq_len (--seq-len) {o.SeqLen} is more than the teacher's context of {teacher.Config.MaxPositions} tokens");
            if (o.TeacherAdapter != null && !File.Exists(Path.Combine(o.TeacherAdapter, "adapter_config.json")))
                throw new ArgumentException($"{o.TeacherAdapter}: not a PEFT adapter directory (adapter_config.json is missing) for --teacher-adapter");
            try
            {
                sharedVocabulary = DistillationVocabulary.Shared(student.LoadTokenizer(), student.Config.VocabSize, teacher.LoadTokenizer(), teacher.Config.VocabSize, out var note);
                if (note != null) reporter.Info("distill: " + note);
            }
            catch (ArgumentException e) { throw new ArgumentException($"{teacher.Path}: {e.Message}"); }
            return teacher;
        }
        catch { teacher.Dispose(); throw; }
    }

    /// <summary>Load the teacher on the trainer's pool and hook the distillation loss into the student.</summary>
    public static IDistillationTeacher Start(TrainOptions o, Checkpoint teacherCheckpoint, TrainableLlama student, WorkerPool pool, int sharedVocabulary, ITrainingReporter reporter)
    {
        ModelTeacher teacher;
        if (o.TeacherThreads > 0)
        {
            var own = new WorkerPool(o.TeacherThreads);
            try { teacher = ModelTeacher.Open(teacherCheckpoint, o.TeacherAdapter, own, o.BatchSize, o.SeqLen); }
            catch { own.Dispose(); throw; }
            teacher.Own(own);
        }
        else teacher = ModelTeacher.Open(teacherCheckpoint, o.TeacherAdapter, pool, o.BatchSize, o.SeqLen);
        var s = o.DistillationSettings;
        student.LogitsLoss = new DistillationLoss(teacher, s, sharedVocabulary);
        string divergence = DivergenceText(s.Divergence);
        reporter.Info($"distill: teacher {teacherCheckpoint.Path}{(o.TeacherAdapter != null ? " + adapter " + o.TeacherAdapter : "")} " +
                      $"({teacherCheckpoint.Config.ParameterCount:N0} parameters, {teacherCheckpoint.Config.Layers} layers); loss = {1 - s.Ratio:G3}·CE + {s.Ratio:G3}·T²·{divergence} at T = {s.Temperature:G3}, " +
                      $"over the {sharedVocabulary} shared ids, on {(o.TeacherThreads > 0 ? $"a pool of its own ({o.TeacherThreads} threads)" : "the trainer's threads")}; validation loss is the plain cross-entropy");
        return teacher;
    }

    public static string DivergenceText(DistillationDivergence divergence) => divergence switch
    {
        DistillationDivergence.Forward => "KL(teacher ‖ student)",
        DistillationDivergence.Reverse => "KL(student ‖ teacher)",
        _ => "½(KL(teacher ‖ student) + KL(student ‖ teacher))",
    };
}
