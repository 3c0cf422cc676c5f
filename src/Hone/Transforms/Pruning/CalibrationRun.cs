using Hone.Formats;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Pruning;

/// <summary>
/// A calibration text run through a model for statistics of its residual stream: the model opened at exact precision
/// with windows of at most <c>context</c> tokens (capped at the model's context), the text tokenized whole and cut to
/// <c>maxTokens</c>, each window run as prompt rows from an empty cache while an observer sees the stream at every
/// layer boundary (<see cref="LlamaModel.ResidualObserver"/>).
/// </summary>
internal sealed class CalibrationRun : IDisposable
{
    readonly LoadedModel _loaded;
    readonly int[] _tokens;
    readonly int _window;

    /// <summary>Tokens of the text that are run.</summary>
    public int Tokens { get; }
    public ModelConfig Config => _loaded.Weights.Config;
    /// <summary>Most rows an observer sees at once.</summary>
    public int MaxRows => _loaded.Model.MaxBatch;
    public WorkerPool Pool => _loaded.Pool;

    public CalibrationRun(string model, string calibration, int context, int maxTokens, int threads)
    {
        int positions;
        using (var checkpoint = Checkpoint.Open(model)) positions = checkpoint.Config.MaxPositions;
        _loaded = LoadedModel.Open(model, null, threads, Math.Min(context, positions), precision: ComputePrecision.Exact);
        try
        {
            if (!File.Exists(calibration)) throw new FileNotFoundException($"{calibration}: no such file", calibration);
            _tokens = _loaded.Tokenizer.Encode(File.ReadAllText(calibration));
            if (_tokens.Length == 0) throw new DataFormatException(calibration, 0, "the text has no tokens");
            Tokens = Math.Min(_tokens.Length, maxTokens);
            _window = Math.Min(context, _loaded.Model.MaxContext);
        }
        catch { _loaded.Dispose(); throw; }
    }

    /// <summary>Runs every window with <paramref name="observer"/> attached.</summary>
    public void Run(ResidualObserver observer)
    {
        _loaded.Model.ResidualObserver = observer;
        try { RunWindows(); }
        finally { _loaded.Model.ResidualObserver = null; }
    }

    /// <summary>Runs every window with <paramref name="observer"/> seeing every projection's input rows.</summary>
    public void Run(IActivationObserver observer)
    {
        _loaded.Model.ActivationObserver = observer;
        try { RunWindows(); }
        finally { _loaded.Model.ActivationObserver = null; }
    }

    /// <summary>Runs every window with <paramref name="observer"/> attached at every block boundary (it may change the
    /// stream, and end each step early).</summary>
    public void Run(BlockBoundaryObserver observer)
    {
        _loaded.Model.BlockBoundaryObserver = observer;
        try { RunWindows(); }
        finally { _loaded.Model.BlockBoundaryObserver = null; }
    }

    void RunWindows()
    {
        var logits = new float[Config.VocabSize];
        for (int start = 0; start < Tokens; start += _window)
        {
            _loaded.Model.Reset();
            _loaded.Model.Forward(_tokens.AsSpan(start, Math.Min(_window, Tokens - start)), logits, promptRows: true);
        }
    }

    public void Dispose() => _loaded.Dispose();
}
