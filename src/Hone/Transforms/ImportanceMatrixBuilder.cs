using Hone.Inference;
using Hone.Tensors;

namespace Hone.Transforms;

/// <param name="Model">a GGUF file or Hugging Face directory</param>
/// <param name="Data">calibration text (UTF-8); null only when <paramref name="InFiles"/> are merged without new text</param>
/// <param name="Output">the imatrix GGUF to write</param>
/// <param name="Context">tokens per chunk (llama-imatrix -c)</param>
/// <param name="Chunks">at most this many chunks (null: every whole chunk of the text)</param>
/// <param name="InFiles">imatrix files (GGUF or legacy .dat) whose sums and counts are added first (llama-imatrix --in-file)</param>
/// <param name="IncludeOutput">also collect the output head (llama-imatrix --process-output)</param>
public sealed record ImatrixOptions(string? Model, string? Data, string Output, int Context = 512, int? Chunks = null, int Threads = 0,
    IReadOnlyList<string>? InFiles = null, bool IncludeOutput = false);

public sealed record ImatrixReport(string Output, int Entries, int ChunksComputed, int ChunkCount, long TokensEvaluated, IReadOnlyList<string> Notes);

/// <summary>
/// Computes an importance matrix as llama-imatrix does: the text is tokenized once (BOS first when the tokenizer adds
/// one), cut into consecutive chunks of <see cref="ImatrixOptions.Context"/> tokens (a last partial chunk is dropped),
/// each chunk's first token replaced by BOS, and each chunk evaluated from an empty cache in one pass; every projection
/// in the layers sees all of the chunk's rows. Activations are fp32 throughout (exact precision), as llama-imatrix
/// reads them before any quantized product.
/// </summary>
public static class ImportanceMatrixBuilder
{
    public static ImatrixReport Build(ImatrixOptions o, Action<string>? log = null, Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        log ??= _ => { };
        var notes = new List<string>();
        var matrix = new ImportanceMatrix();
        foreach (var file in o.InFiles ?? [])
        {
            matrix.Add(ImportanceMatrix.Read(file), file);
            notes.Add($"added {file}");
        }
        int computed = 0;
        long evaluated = 0;
        if (o.Data != null)
        {
            if (o.Model == null) throw new ArgumentException("computing an importance matrix needs a model");
            if (!File.Exists(o.Data)) throw new FileNotFoundException($"{o.Data}: file not found", o.Data);
            if (o.Context < 2) throw new ArgumentException($"--ctx must be at least 2, found {o.Context}");
            if (o.Chunks is < 1) throw new ArgumentException($"--chunks must be at least 1, found {o.Chunks}");
            if (matrix.ChunkSize != 0 && matrix.ChunkSize != o.Context)
                notes.Add($"the merged files were computed with chunks of {matrix.ChunkSize} tokens, this run uses {o.Context}; the file records {o.Context}");
            using var loaded = LoadedModel.Open(o.Model, threads: o.Threads, context: o.Context, maxBatch: o.Context, precision: ComputePrecision.Exact);
            var tokenizer = loaded.Tokenizer;
            var all = new List<int>();
            int? bos = tokenizer.AddsBos ? tokenizer.BosId : null;
            if (bos is int b) all.Add(b);
            all.AddRange(tokenizer.Encode(File.ReadAllText(o.Data), addSpecialTokens: false, parseSpecialTokens: false));
            int available = all.Count / o.Context;
            if (available < 1) throw new ArgumentException($"{o.Data} has {all.Count} tokens, fewer than one chunk of --ctx {o.Context}");
            int chunks = Math.Min(available, o.Chunks ?? int.MaxValue);
            var collector = new ImportanceCollector(matrix, loaded.Weights.Config.Experts, o.IncludeOutput);
            var model = loaded.Model;
            model.ActivationObserver = collector;
            var logits = new float[loaded.Weights.Config.VocabSize];
            var window = new int[o.Context];
            log($"computing over {chunks} chunks of {o.Context} tokens ({all.Count} tokens in {o.Data})");
            try
            {
                for (int c = 0; c < chunks; c++)
                {
                    cancel.ThrowIfCancellationRequested();
                    all.CopyTo(c * o.Context, window, 0, o.Context);
                    if (bos is int bb) window[0] = bb;
                    model.Reset();
                    model.Forward(window, logits);
                    evaluated += o.Context;
                    progress?.Invoke(c + 1, chunks);
                }
            }
            finally { model.ActivationObserver = null; }
            computed = chunks;
            matrix.ChunkCount += chunks;
            matrix.ChunkSize = o.Context;
            matrix.Datasets.Add(o.Data);
        }
        else if ((o.InFiles?.Count ?? 0) < 2)
            throw new ArgumentException("give --data (calibration text) to compute an importance matrix, or two or more --in-file to merge");
        if (matrix.Entries.Count == 0) throw new InvalidOperationException("no projection was observed: nothing to write");
        matrix.Write(o.Output);
        return new ImatrixReport(o.Output, matrix.Entries.Count, computed, matrix.ChunkCount, evaluated, notes);
    }
}
