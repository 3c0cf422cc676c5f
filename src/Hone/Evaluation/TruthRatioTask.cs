using System.Diagnostics;
using System.Text.Json.Nodes;
using Hone.Tokenization;

namespace Hone.Evaluation;

/// <param name="Data">JSONL items: the question's messages (<paramref name="MessagesField"/>), "paraphrased" (the
/// correct answer in some wording) and "perturbed" (an array of wrong answers, ideally of the same form)</param>
/// <param name="Reference">a results file (hone eval --out) holding this task's result for a model never trained on
/// these facts: forget quality is then the KS test between its truth ratios and this model's</param>
public sealed record TruthRatioTaskDefinition(string Data, string MessagesField = "prompt_messages", string? ChatTemplate = null, string? Reference = null);

/// <summary>
/// TOFU's truth ratio (Maini et al. 2024) per item: R = mean over perturbed answers ã of P(ã|q)^(1/|ã|), divided by
/// P(â|q)^(1/|â|) for the paraphrased answer â, each answer scored as an assistant turn after the question through the
/// chat template (|a| its tokens, the end-of-turn included). R near 0: the model prefers the true answer; near 1 or
/// above: it cannot tell it from the wrong ones. Reports the mean R and the share of items with R &lt; 1, with
/// standard errors; with a reference, forget quality = the two-sample KS p-value between the reference model's
/// per-item ratios and this model's (high: indistinguishable from a model that never learned them).
/// </summary>
public static class TruthRatioTask
{
    public static readonly string[] Keys = ["messages_field", "chat_template", "reference"];

    public static EvalTask Parse(TaskSpecReader r, TaskOrigin origin)
    {
        var d = new TruthRatioTaskDefinition(origin.Resolve(r.RequiredString("data")), r.String("messages_field") ?? "prompt_messages",
            r.String("chat_template") is string t ? origin.Resolve(t) : null, r.String("reference") is string reference ? origin.Resolve(reference) : null);
        return new EvalTask(origin.Name, "truth_ratio", origin.Source, d, c => Run(origin.Name, origin.Source, d, c));
    }

    public static TaskResult Run(string name, string source, TruthRatioTaskDefinition d, EvalContext ctx)
    {
        var clock = Stopwatch.StartNew();
        var reference = d.Reference != null ? ReadReference(d.Reference, name) : null; // read first: a bad file fails before any scoring
        var records = EvalData.ReadRecords(d.Data);
        int available = records.Count;
        if (ctx.Options.Limit is int limit) records = records.Take(limit).ToList();
        var (template, templateName) = ChatConversation.ResolveTemplate(ctx.Tokenizer, d.ChatTemplate);
        var ratios = new List<double>();
        var paraphrasedNll = new List<double>();
        var perturbedNll = new List<double>();
        int truncated = 0;
        JsonObject? first = null;
        for (int i = 0; i < records.Count; i++)
        {
            ctx.Cancel.ThrowIfCancellationRequested();
            var record = records[i];
            string where = $"{d.Data}: record {i + 1}";
            if (record[d.MessagesField] is not JsonArray messages) throw new FormatException($"{where} has no \"{d.MessagesField}\" array");
            string paraphrased = record["paraphrased"] is JsonValue pv && pv.TryGetValue(out string? ps) ? ps : throw new FormatException($"{where} has no \"paraphrased\" string");
            var perturbed = record["perturbed"] is JsonArray pa && pa.Count > 0
                ? pa.Select(n => n is JsonValue v && v.TryGetValue(out string? s) ? s : throw new FormatException($"{where}: \"perturbed\" must be an array of strings")).ToArray()
                : throw new FormatException($"{where} has no \"perturbed\" array of answers");
            var (trueNll, t1) = AnswerNllPerToken(ctx, template, messages, paraphrased, where);
            double perturbedMean = 0, perturbedLogMean = 0;
            bool cut = t1;
            foreach (var answer in perturbed)
            {
                var (nll, t2) = AnswerNllPerToken(ctx, template, messages, answer, where);
                cut |= t2;
                perturbedMean += Math.Exp(-nll) / perturbed.Length;
                perturbedLogMean += nll / perturbed.Length;
            }
            if (cut) truncated++;
            double ratio = perturbedMean / Math.Exp(-trueNll);
            ratios.Add(ratio);
            paraphrasedNll.Add(trueNll);
            perturbedNll.Add(perturbedLogMean);
            first ??= new JsonObject
            {
                ["question"] = messages.DeepClone(), ["paraphrased"] = paraphrased, ["perturbed"] = new JsonArray(perturbed.Select(p => (JsonNode)p).ToArray()),
                ["paraphrased_nll_per_token"] = trueNll, ["perturbed_nll_per_token_mean"] = perturbedLogMean, ["truth_ratio"] = ratio,
            };
            ctx.Progress?.Invoke(i + 1, records.Count);
        }
        if (ratios.Count == 0) throw new ArgumentException($"{name}: no items");
        var prefersTrue = ratios.Select(r => r < 1 ? 1.0 : 0.0).ToList();
        var metrics = new List<MetricResult>
        {
            new("truth_ratio", EvalStatistics.Mean(ratios), EvalStatistics.StandardErrorOfMean(ratios), EvalStatistics.MeanStandardErrorMethod, HigherIsBetter: false),
            new("prefers_true", EvalStatistics.Mean(prefersTrue), EvalStatistics.StandardErrorOfMean(prefersTrue), EvalStatistics.MeanStandardErrorMethod, HigherIsBetter: true),
            new("paraphrased_nll_per_token", EvalStatistics.Mean(paraphrasedNll), EvalStatistics.StandardErrorOfMean(paraphrasedNll), EvalStatistics.MeanStandardErrorMethod, HigherIsBetter: false),
        };
        var details = new JsonObject
        {
            ["items_available"] = available, ["items_truncated"] = truncated, ["first_item"] = first,
            ["truth_ratios"] = new JsonArray(ratios.Select(r => (JsonNode)r).ToArray()),
        };
        if (reference != null)
        {
            var (statistic, p) = KolmogorovSmirnov.TwoSample(ratios, reference);
            // A p-value has no standard error of its own; the KS statistic D is reported beside it.
            metrics.Add(new MetricResult("forget_quality", p, null, "a p-value (" + KolmogorovSmirnov.Method + "); no standard error", HigherIsBetter: true));
            metrics.Add(new MetricResult("ks_statistic", statistic, null, "the KS distance between the two empirical distributions; no standard error", HigherIsBetter: false));
            details["reference_items"] = reference.Count;
        }
        var protocol = new JsonObject
        {
            ["data"] = d.Data,
            ["scoring"] = $"each answer as the assistant turn after the item's \"{d.MessagesField}\", rendered with the chat template ({templateName}); " +
                          "P(a)^(1/|a|) = exp(−mean NLL of the answer's tokens, end-of-turn included)",
            ["truth_ratio"] = "R = mean over perturbed answers of P(ã)^(1/|ã|) / P(â)^(1/|â|) for the paraphrased answer â (TOFU, Maini et al. 2024)",
            ["prefers_true"] = "share of items with R < 1",
            ["forget_quality"] = reference != null ? $"KS p-value between these ratios and the reference's ({d.Reference}): {KolmogorovSmirnov.Method}" : null,
            ["truncation"] = "conversations longer than the context lose their oldest tokens",
        };
        return new TaskResult(name, "truth_ratio", source, ratios.Count, metrics, protocol, details, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Mean NLL per token of the assistant answer after the question, and whether the context cut it.</summary>
    static unsafe (double Nll, bool Truncated) AnswerNllPerToken(EvalContext ctx, Tokenization.Templates.ChatTemplate template, JsonArray question, string answer, string where)
    {
        var messages = (JsonArray)question.DeepClone();
        messages.Add((JsonNode)new JsonObject { ["role"] = "assistant", ["content"] = answer });
        var (ids, isTarget) = ChatConversation.Tokenize(ctx.Tokenizer, template, messages, trainOnPrompt: false);
        int window = ctx.Model.MaxContext, v = ctx.Model.Config.VocabSize;
        int start = Math.Max(0, ids.Length - window);
        var span = ids.AsSpan(start);
        var logits = new float[(long)span.Length * v];
        ctx.Model.Reset();
        ctx.Model.Forward(span, logits, allLogits: true);
        double sum = 0;
        int count = 0;
        fixed (float* l = logits)
            for (int j = 0; j + 1 < span.Length; j++)
            {
                if (!isTarget[start + j + 1]) continue;
                float* row = l + (long)j * v;
                double term = Tensors.Softmax.LogSumExp(row, v) - row[span[j + 1]];
                if (!double.IsFinite(term)) throw ctx.Model.DiagnoseNonFinite(span, $"{where}: the logits at token {j}");
                sum += term;
                count++;
            }
        if (count == 0) throw new FormatException($"{where}: the answer \"{answer}\" has no token to score");
        return (sum / count, start > 0);
    }

    /// <summary>The reference model's per-item truth ratios: the result named <paramref name="task"/> in a results file.</summary>
    public static List<double> ReadReference(string path, string task)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: the reference results file does not exist");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new FormatException($"{path}: not valid JSON: {e.Message}"); }
        var record = (root?["results"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(r => (string?)r["task"] == task)
            ?? throw new FormatException($"{path}: no result for task \"{task}\" (evaluate the reference model with the same task file first)");
        if (record["details"]?["truth_ratios"] is not JsonArray values || values.Count == 0)
            throw new FormatException($"{path}: the result for \"{task}\" has no details.truth_ratios");
        return values.Select((n, i) => n is JsonValue v && v.TryGetValue(out double x) && double.IsFinite(x) ? x
            : throw new FormatException($"{path}: \"{task}\" details.truth_ratios[{i}] is not a finite number")).ToList();
    }
}
