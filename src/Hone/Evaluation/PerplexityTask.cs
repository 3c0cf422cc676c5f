using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Tokenization;

namespace Hone.Evaluation;

/// <param name="Data">a text file (one document) or JSONL/JSON records (one document per record's text field)</param>
/// <param name="Context">window length in tokens (null: the model's context)</param>
/// <param name="Stride">how far windows advance (null: the window length, no overlap)</param>
/// <param name="AddBos">prepend BOS to each document (null: when the tokenizer adds one)</param>
/// <param name="MessagesField">score conversations instead: each record's messages (OpenAI shape) rendered with the chat
/// template, only the assistant tokens scored (the loss of supervised fine-tuning)</param>
public sealed record PerplexityTaskDefinition(string Data, string TextField = "text", int? Context = null, int? Stride = null, bool? AddBos = null,
    string? MessagesField = null, string? ChatTemplate = null);

/// <summary>
/// Perplexity and bits per byte over documents, each scored on its own with <see cref="Perplexity"/>'s full protocol
/// (BOS + document; windows advancing by the stride, every token scored once with as much left context as the window
/// holds). Bits per byte divide by the documents' UTF-8 bytes (lm-eval's count_bytes), so models with different
/// tokenizers compare; perplexity is per token and does not.
/// </summary>
public static class PerplexityTask
{
    public static readonly string[] Keys = ["text_field", "context", "stride", "add_bos", "messages_field", "chat_template"];

    public static EvalTask Parse(TaskSpecReader r, TaskOrigin origin)
    {
        var d = new PerplexityTaskDefinition(origin.Resolve(r.RequiredString("data")), r.String("text_field") ?? "text",
            r.Int("context"), r.Int("stride"), r.Bool("add_bos"), r.String("messages_field"),
            r.String("chat_template") is string t ? origin.Resolve(t) : null);
        if (d.ChatTemplate != null && d.MessagesField == null) throw new FormatException($"{r.Where}: \"chat_template\" needs \"messages_field\"");
        if (d.Context is < 2) throw new FormatException($"{r.Where}: \"context\" must be at least 2 tokens");
        if (d.Stride is < 1) throw new FormatException($"{r.Where}: \"stride\" must be at least 1");
        return new EvalTask(origin.Name, "perplexity", origin.Source, d, c => Run(origin.Name, origin.Source, d, c));
    }

    public static List<string> Documents(PerplexityTaskDefinition d)
    {
        if (!EvalData.IsRecordFile(d.Data))
        {
            using var reader = EvalData.OpenText(d.Data);
            return [reader.ReadToEnd()];
        }
        var records = EvalData.ReadRecords(d.Data);
        return records.Select((o, i) => o[d.TextField] is JsonValue v && v.TryGetValue(out string? s) ? s
            : throw new FormatException($"{d.Data}: record {i + 1} has no \"{d.TextField}\" string")).ToList();
    }

    public static TaskResult Run(string name, string source, PerplexityTaskDefinition d, EvalContext ctx)
    {
        if (d.MessagesField != null) return RunConversations(name, source, d, ctx);
        var clock = Stopwatch.StartNew();
        var docs = Documents(d);
        int available = docs.Count;
        if (ctx.Options.Limit is int limit) docs = docs.Take(limit).ToList();
        var tokenizer = ctx.Tokenizer;
        bool addBos = d.AddBos ?? tokenizer.AddsBos;
        int? bos = addBos ? tokenizer.BosId ?? throw new ArgumentException($"{name}: add_bos is set but the tokenizer has no BOS token") : null;
        int window = d.Context ?? ctx.Model.MaxContext;
        if (window > ctx.Model.MaxContext) throw new ArgumentException($"{name}: context {window} exceeds the model's loaded context {ctx.Model.MaxContext} (raise --ctx)");

        var nll = new List<double>();
        var tokens = new List<double>();
        var bytes = new List<double>();
        long words = 0;
        int skipped = 0;
        for (int i = 0; i < docs.Count; i++)
        {
            ctx.Cancel.ThrowIfCancellationRequested();
            var ids = tokenizer.Encode(docs[i], addSpecialTokens: false, parseSpecialTokens: false);
            int length = ids.Length + (bos != null ? 1 : 0);
            if (length < 2) { skipped++; ctx.Progress?.Invoke(i + 1, docs.Count); continue; }
            // A window no longer than the document scores the same tokens with the same context, and needs less memory.
            int w = Math.Min(window, length);
            var r = Perplexity.Compute(ctx.Model, ids, bos, (_, _) => 0, new PerplexityOptions(w, PerplexityProtocol.Full, d.Stride is int s ? Math.Min(s, w) : null));
            nll.Add(r.NegativeLogLikelihood);
            tokens.Add(r.TokensScored);
            bytes.Add(Encoding.UTF8.GetByteCount(docs[i]));
            words += Words(docs[i]);
            ctx.Progress?.Invoke(i + 1, docs.Count);
        }
        if (nll.Count == 0) throw new ArgumentException($"{name}: no document has a token to score");
        var (metrics, totalNll, totalTokens, totalBytes) = Metrics(nll, tokens, bytes, "document");
        var protocol = new JsonObject
        {
            ["data"] = d.Data,
            ["documents"] = EvalData.IsRecordFile(d.Data) ? $"one per record's \"{d.TextField}\"" : "the whole file is one document",
            ["windowing"] = $"per document: {(addBos ? "BOS + " : "")}tokens in windows of {window} advancing by {d.Stride?.ToString() ?? "the window length"}; every token {(addBos ? "after BOS " : "after the first ")}scored once with the window's left context",
            ["context"] = window,
            ["stride"] = d.Stride,
            ["bos"] = addBos,
            ["tokenization"] = "document text encoded without special tokens",
            ["perplexity"] = "exp(total negative log-likelihood / scored tokens)",
            ["bits_per_byte"] = "total negative log-likelihood / ln 2 / UTF-8 bytes of the documents",
        };
        var details = new JsonObject
        {
            ["items_available"] = available,
            ["tokens_scored"] = (long)totalTokens,
            ["bytes"] = (long)totalBytes,
            ["words"] = words,
            ["negative_log_likelihood"] = totalNll,
            ["documents_scored"] = nll.Count,
            ["documents_skipped_empty"] = skipped,
        };
        return new TaskResult(name, "perplexity", source, nll.Count, metrics, protocol, details, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Words as lm-eval's count_words counts them: the pieces of re.split(r"\s+", text), so every run of
    /// whitespace separates two pieces (an empty one at a leading or trailing run). Python's \s is str.isspace():
    /// .NET's whitespace plus the separators U+001C–U+001F.</summary>
    public static long Words(string text)
    {
        static bool Space(char c) => char.IsWhiteSpace(c) || c is >= '\u001c' and <= '\u001f';
        long pieces = 1;
        for (int i = 0; i < text.Length; i++)
            if (Space(text[i]) && (i == 0 || !Space(text[i - 1]))) pieces++;
        return pieces;
    }

    /// <summary>Perplexity and bits per byte of per-unit sums, with ratio standard errors across the units.</summary>
    static (List<MetricResult> Metrics, double Nll, double Tokens, double Bytes) Metrics(List<double> nll, List<double> tokens, List<double> bytes, string unit)
    {
        double totalNll = nll.Sum(), totalTokens = tokens.Sum(), totalBytes = bytes.Sum();
        double perTokenError = EvalStatistics.RatioStandardError(nll, tokens) ?? double.NaN;
        double perByteError = EvalStatistics.RatioStandardError(nll, bytes) ?? double.NaN;
        string method = nll.Count >= 2 ? EvalStatistics.RatioStandardErrorMethod : $"unavailable: a single {unit}";
        double ppl = Math.Exp(totalNll / totalTokens), bpb = totalNll / Math.Log(2) / totalBytes;
        var metrics = new List<MetricResult>
        {
            // SE of exp(r) ≈ exp(r)·SE(r); SE of bits = SE(nats)/ln 2.
            new("perplexity", ppl, double.IsNaN(perTokenError) ? null : ppl * perTokenError, method, HigherIsBetter: false),
            new("bits_per_byte", bpb, double.IsNaN(perByteError) ? null : perByteError / Math.Log(2), method, HigherIsBetter: false),
        };
        return (metrics, totalNll, totalTokens, totalBytes);
    }

    /// <summary>Answer perplexity: conversations rendered with the chat template, the model's NLL of the assistant
    /// tokens given everything before them (one forward pass per conversation, cut from the left to the context).</summary>
    static unsafe TaskResult RunConversations(string name, string source, PerplexityTaskDefinition d, EvalContext ctx)
    {
        var clock = Stopwatch.StartNew();
        var records = EvalData.ReadRecords(d.Data);
        int available = records.Count;
        if (ctx.Options.Limit is int limit) records = records.Take(limit).ToList();
        var tokenizer = ctx.Tokenizer;
        var (template, templateName) = ChatConversation.ResolveTemplate(tokenizer, d.ChatTemplate);
        int window = Math.Min(d.Context ?? ctx.Model.MaxContext, ctx.Model.MaxContext);
        int v = ctx.Model.Config.VocabSize;
        var logits = new float[(long)window * v];
        var nll = new List<double>();
        var tokens = new List<double>();
        var bytes = new List<double>();
        long words = 0;
        int truncated = 0;
        for (int i = 0; i < records.Count; i++)
        {
            ctx.Cancel.ThrowIfCancellationRequested();
            if (records[i][d.MessagesField!] is not JsonArray messages) throw new FormatException($"{d.Data}: record {i + 1} has no \"{d.MessagesField}\" array");
            var example = ChatConversation.Tokenize(tokenizer, template, messages, trainOnPrompt: false);
            var ids = example.Ids;
            int start = Math.Max(0, ids.Length - window);
            if (start > 0) truncated++;
            var span = ids.AsSpan(start);
            ctx.Model.Reset();
            ctx.Model.Forward(span, logits, allLogits: true);
            double sum = 0;
            int count = 0;
            fixed (float* l = logits)
                for (int j = 0; j + 1 < span.Length; j++)
                {
                    if (!example.IsTarget[start + j + 1]) continue;
                    float* row = l + (long)j * v;
                    double term = Tensors.Softmax.LogSumExp(row, v) - row[span[j + 1]];
                    if (!double.IsFinite(term)) throw ctx.Model.DiagnoseNonFinite(span, $"{d.Data}: record {i + 1}: the logits at token {j}");
                    sum += term;
                    count++;
                }
            if (count == 0) { ctx.Progress?.Invoke(i + 1, records.Count); continue; }
            var answerIds = Enumerable.Range(start + 1, span.Length - 1).Where(k => example.IsTarget[k]).Select(k => ids[k]).ToArray();
            nll.Add(sum);
            tokens.Add(count);
            string answers = tokenizer.Decode(answerIds);
            bytes.Add(Math.Max(1, Encoding.UTF8.GetByteCount(answers)));
            words += Words(answers);
            ctx.Progress?.Invoke(i + 1, records.Count);
        }
        if (nll.Count == 0) throw new ArgumentException($"{name}: no conversation has an assistant token to score");
        var (metrics, totalNll, totalTokens, totalBytes) = Metrics(nll, tokens, bytes, "conversation");
        var protocol = new JsonObject
        {
            ["data"] = d.Data,
            ["documents"] = $"one conversation per record's \"{d.MessagesField}\", rendered with the chat template ({templateName})",
            ["scored"] = "assistant tokens only (as supervised fine-tuning's loss), each given everything before it",
            ["context"] = window,
            ["truncation"] = "conversations longer than the context lose their oldest tokens",
            ["perplexity"] = "exp(total negative log-likelihood / scored tokens)",
            ["bits_per_byte"] = "total negative log-likelihood / ln 2 / UTF-8 bytes of the scored answers",
        };
        var details = new JsonObject
        {
            ["items_available"] = available,
            ["tokens_scored"] = (long)totalTokens, ["bytes"] = (long)totalBytes, ["words"] = words, ["negative_log_likelihood"] = totalNll,
            ["conversations_scored"] = nll.Count, ["conversations_truncated"] = truncated,
        };
        return new TaskResult(name, "perplexity", source, nll.Count, metrics, protocol, details, clock.Elapsed.TotalSeconds);
    }
}
