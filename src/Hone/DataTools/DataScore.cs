using System.Buffers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.DataTools;

/// <param name="Context">tokens per window (BOS included; default 512, or the model's context when smaller); texts longer than
/// that are scored in windows advancing by Stride</param>
/// <param name="Stride">window advance for long texts (default: Context, windows do not overlap)</param>
/// <param name="Column">the perplexity field written to each record</param>
/// <param name="Threads">total threads; documents are scored in parallel, ModelThreads threads each</param>
/// <param name="ModelThreads">threads inside one forward pass (raise it for large models and few long documents)</param>
public sealed record DataScoreOptions(string Input, string Model, string Output, int? Context = null, int? Stride = null, string Column = "ppl",
    string BitsPerByteColumn = "bits_per_byte", string TokensColumn = "tokens", string Field = "text", bool SkipBadLines = false,
    int Threads = 0, int ModelThreads = 1);

/// <param name="Unscorable">records with no token to score (empty texts): written with null scores</param>
/// <param name="Perplexity">of the whole file: exp(Σ NLL / Σ scored tokens)</param>
/// <param name="BitsPerByte">of the whole file: Σ NLL / ln 2 / Σ UTF-8 bytes of the scored texts</param>
public sealed record DataScoreResult(string File, string Output, string Model, string Protocol, int Context, int Stride, bool Bos,
    long Records, long Scored, long Unscorable, long Tokens, long TokensScored, double Perplexity, double BitsPerByte,
    long BadLines, IReadOnlyList<string> BadLineExamples, int Workers, int ModelThreads, double Seconds)
{
    public JsonObject ToJson() => new()
    {
        ["file"] = File, ["output"] = Output, ["model"] = Model, ["protocol"] = Protocol, ["context"] = Context, ["stride"] = Stride,
        ["bos"] = Bos, ["records"] = Records, ["scored"] = Scored, ["unscorable"] = Unscorable, ["tokens"] = Tokens,
        ["tokens_scored"] = TokensScored, ["perplexity"] = double.IsFinite(Perplexity) ? Perplexity : null,
        ["bits_per_byte"] = double.IsFinite(BitsPerByte) ? BitsPerByte : null,
        ["bad_lines"] = BadLines, ["bad_line_examples"] = DataJson.Strings(BadLineExamples),
        ["workers"] = Workers, ["model_threads"] = ModelThreads, ["seconds"] = Seconds,
        ["tokens_per_second"] = Seconds > 0 ? TokensScored / Seconds : null,
    };
}

/// <summary>
/// <c>hone data score</c>: per-record perplexity under a reference model, written into each record as three fields
/// (perplexity, bits per byte, token count); all other bytes of the record are kept. The protocol is
/// <see cref="PerplexityProtocol.Full"/>: BOS (when the tokenizer adds one) then the text's tokens, every token after
/// BOS scored once; a text longer than the context is scored in windows of Context tokens advancing by Stride — the
/// same numbers <see cref="Evaluation.Perplexity.Compute"/> gives for the text alone. Bits per byte divide the total
/// negative log-likelihood (in bits) by the text's UTF-8 length. A record with nothing to score gets nulls.
/// The protocol, model and fields are also written beside the output as OUTPUT.score.json.
/// Documents are scored in parallel, each worker holding its own model state over the shared weights.
/// Memory: the weights, and per worker a KV cache and logits for one window (Context × vocabulary floats).
/// </summary>
public static class DataScore
{
    const int BatchLines = 256;
    public const int DefaultContext = 512;

    struct Item
    {
        public string? Error;
        public bool Present;
        public PerplexityResult? Result;
        public int Tokens, Bytes;
    }

    public static DataScoreResult Run(DataScoreOptions o, Action<string>? progress = null, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        DataChecks.DistinctOutput(o.Input, o.Output, o.Output + ".score.json");
        var names = new[] { o.Column, o.BitsPerByteColumn, o.TokensColumn };
        if (names.Distinct().Count() != 3) throw new ArgumentException("the perplexity, bits-per-byte and tokens fields need three different names");
        if (o.ModelThreads < 1) throw new ArgumentException($"--model-threads must be positive, got {o.ModelThreads}");
        if (!File.Exists(o.Input)) throw new FileNotFoundException($"{o.Input}: no such file", o.Input);
        using var checkpoint = Checkpoint.Open(o.Model);
        var tokenizer = checkpoint.LoadTokenizer();
        using var weights = LlamaWeights.Load(checkpoint);
        int maxContext = weights.Config.MaxPositions;
        int context = o.Context ?? Math.Min(DefaultContext, maxContext);
        if (context < 2 || context > maxContext) throw new ArgumentException($"--ctx must be between 2 and the model's context {maxContext}, got {context}");
        int stride = o.Stride ?? context;
        if (stride < 1 || stride > context) throw new ArgumentException($"--stride must be between 1 and --ctx ({context}), got {stride}");
        int? bos = tokenizer.AddsBos ? tokenizer.BosId : null;

        int workers = Math.Max(1, WorkerPool.ResolveThreadCount(o.Threads) / o.ModelThreads);
        using var pool = new WorkerPool(workers);
        var modelPools = Enumerable.Range(0, workers).Select(_ => new WorkerPool(o.ModelThreads)).ToArray();
        var models = modelPools.Select(p => new LlamaModel(weights, p, maxContext: context, maxBatch: Math.Min(512, context))).ToArray();
        try
        {
            using var reader = new JsonlReader(o.Input);
            using var pipeline = new DataPipeline(reader, workers, "score", progress, cancel, maxLines: BatchLines, pool: pool);
            using var output = AtomicFile.Begin(o.Output);
            using var meta = AtomicFile.Begin(o.Output + ".score.json");
            var bad = new BadLineLog(o.Input, o.SkipBadLines);
            var scanners = Enumerable.Range(0, workers).Select(_ => new RecordScanner(o.Field, watched: names)).ToArray();
            var encoded = names.Select(n => JsonEncodedText.Encode(n)).ToArray();
            var items = new Item[BatchLines];
            var buffer = new ArrayBufferWriter<byte>(1 << 16);
            long records = 0, scored = 0, unscorable = 0, tokens = 0, tokensScored = 0, bytes = 0;
            double nll = 0;
            while (pipeline.Next())
            {
                var batch = pipeline.Batch;
                pipeline.ForEach((i, worker) =>
                {
                    ref var item = ref items[i];
                    item = default;
                    if (!scanners[worker].Scan(batch[i], out var record, out item.Error)) return;
                    item.Present = record.Watched != 0;
                    var text = record.Text!;
                    var ids = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
                    item.Tokens = ids.Length;
                    item.Bytes = TextProfile.Utf8Length(text);
                    if (ids.Length + (bos != null ? 1 : 0) < 2) return;
                    item.Result = Score(models[worker], ids, bos, context, stride);
                });
                for (int i = 0; i < batch.Count; i++)
                {
                    ref var item = ref items[i];
                    if (item.Error != null) { bad.Report(batch.LineNumber(i), item.Error); continue; }
                    records++;
                    tokens += item.Tokens;
                    double? ppl = null, bpb = null;
                    if (item.Result is { } r)
                    {
                        scored++;
                        ppl = r.Perplexity;
                        bpb = BitsPerByte(r.NegativeLogLikelihood, item.Bytes);
                        nll += r.NegativeLogLikelihood;
                        tokensScored += r.TokensScored;
                        bytes += item.Bytes;
                    }
                    else unscorable++;
                    buffer.ResetWrittenCount();
                    DataJson.WriteWithFields(buffer, batch[i], item.Present, [(encoded[0], ppl), (encoded[1], bpb), (encoded[2], item.Tokens)]);
                    buffer.Write("\n"u8);
                    output.Stream.Write(buffer.WrittenSpan);
                }
            }
            string protocol = $"full: {(bos != null ? "BOS + " : "")}text tokens, every token after the first scored once; texts over {context} tokens " +
                              $"in windows of {context} advancing by {stride}; bits per byte over the text's UTF-8 bytes";
            var result = new DataScoreResult(o.Input, o.Output, o.Model, protocol, context, stride, bos != null, records, scored, unscorable,
                tokens, tokensScored, Math.Exp(nll / tokensScored), BitsPerByte(nll, bytes), bad.Count, bad.Examples, workers, o.ModelThreads,
                clock.Elapsed.TotalSeconds);
            var metaJson = new JsonObject
            {
                ["model"] = o.Model, ["protocol"] = protocol, ["context"] = context, ["stride"] = stride, ["bos"] = bos != null,
                ["fields"] = new JsonObject { ["perplexity"] = o.Column, ["bits_per_byte"] = o.BitsPerByteColumn, ["tokens"] = o.TokensColumn },
                ["text_field"] = o.Field, ["input"] = o.Input,
            };
            using (var writer = new Utf8JsonWriter(meta.Stream, DataJson.Readable with { Indented = true })) metaJson.WriteTo(writer);
            meta.Stream.WriteByte((byte)'\n');
            output.Commit();
            meta.Commit();
            return result;
        }
        finally
        {
            foreach (var m in models) m.Dispose();
            foreach (var p in modelPools) p.Dispose();
        }
    }

    /// <summary>Perplexity of one text's tokens exactly as <see cref="Evaluation.Perplexity.Compute"/> gives it with
    /// (context, stride): a text that fits one window is scored with a window just its size, which changes nothing
    /// but the size of the logits buffer.</summary>
    public static PerplexityResult Score(LlamaModel model, int[] tokens, int? bos, int context, int stride)
    {
        int length = tokens.Length + (bos != null ? 1 : 0);
        var options = length <= context ? new PerplexityOptions(Math.Max(2, length), PerplexityProtocol.Full) : new PerplexityOptions(context, PerplexityProtocol.Full, stride);
        return Evaluation.Perplexity.Compute(model, tokens, bos, (_, count) => count, options);
    }

    static double BitsPerByte(double nll, long bytes) => bytes == 0 ? double.NaN : nll / Math.Log(2) / bytes;
}
