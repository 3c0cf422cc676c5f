using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Inference;
using Hone.Tensors;

namespace Hone.Evaluation;

/// <param name="Data">questions: MMLU-layout CSV, or JSONL {question, choices, answer (index or letter)}</param>
/// <param name="Format">prompt format: mmlu | cloze (see <see cref="MultipleChoiceTask.Formats"/>)</param>
/// <param name="Subject">mmlu: the subject named in the description (default: from the data file's name)</param>
/// <param name="Description">text before everything else (default: the format's)</param>
/// <param name="Prompt">cloze: the question template ({question})</param>
/// <param name="FewshotSampler">first_n (lm-eval's MMLU) or random (K drawn once per task with the seed)</param>
/// <param name="AddBos">prepend BOS to every context (null: when the tokenizer adds one)</param>
public sealed record MultipleChoiceTaskDefinition(string Data, string Format = "mmlu", string? Subject = null, string? Description = null,
    string Prompt = "Question: {question}\nAnswer:", int NumFewshot = 0, string? FewshotData = null, string FewshotSampler = "random",
    bool? AddBos = null, string TargetDelimiter = " ", string FewshotDelimiter = "\n\n");

/// <summary>A multiple-choice prompt format: the question text, the choice strings (continuations without the target
/// delimiter), the default description, and a readable template for the protocol.</summary>
public sealed record ChoiceFormat(Func<ChoiceQuestion, MultipleChoiceTaskDefinition, string> Text, Func<ChoiceQuestion, IReadOnlyList<string>> Choices,
    Func<MultipleChoiceTaskDefinition, string> Description, Func<MultipleChoiceTaskDefinition, string> Template);

/// <summary>
/// Multiple choice by log-likelihood with lm-evaluation-harness semantics. Each choice is a continuation
/// (target delimiter + choice) of the context (description + few-shot examples + question) and gets
/// Σ log p(continuation tokens | context), tokenized as lm-eval does (<see cref="LmEvalEncoding"/>).
/// acc = [argmax of the sums is the answer]; acc_norm = [argmax of sum / UTF-8 bytes of the choice is the answer],
/// the choice's bytes counted without the delimiter (lm-eval divides by len(choice), which counts characters; bytes
/// make the measure independent of the script).
/// </summary>
public static class MultipleChoiceTask
{
    public static readonly string[] Keys = ["format", "subject", "description", "prompt", "num_fewshot", "fewshot_data", "fewshot_sampler",
        "add_bos", "target_delimiter", "fewshot_delimiter"];

    static string Letter(int i) => ((char)('A' + i)).ToString();

    public static readonly IReadOnlyDictionary<string, ChoiceFormat> Formats = new Dictionary<string, ChoiceFormat>
    {
        // lm-eval's mmlu default template: "{{question.strip()}}\nA. {{choices[0]}}\nB. ...\nAnswer:", choices "A".."D".
        ["mmlu"] = new(
            (q, _) => q.Question.Trim() + "\n" + string.Concat(q.Choices.Select((c, i) => $"{Letter(i)}. {c}\n")) + "Answer:",
            q => q.Choices.Select((_, i) => Letter(i)).ToArray(),
            d => $"The following are multiple choice questions (with answers) about {d.Subject}.\n\n",
            _ => "{question.strip()}\\nA. {choices[0]}\\nB. {choices[1]}\\n...\\nAnswer:"),
        // The choice text itself is the continuation (ARC / HellaSwag style), where length normalization matters.
        ["cloze"] = new(
            (q, d) => PromptTemplate.Render(d.Prompt, f => f == "question" ? q.Question : throw new FormatException($"the cloze prompt can only use {{question}}, not {{{f}}}")),
            q => q.Choices,
            _ => "",
            d => d.Prompt.Replace("\n", "\\n")),
    };

    public static readonly IReadOnlyDictionary<string, Func<IReadOnlyList<ChoiceQuestion>, int, ulong, int[]>> FewshotSamplers =
        new Dictionary<string, Func<IReadOnlyList<ChoiceQuestion>, int, ulong, int[]>>
        {
            ["first_n"] = (_, k, _) => Enumerable.Range(0, k).ToArray(),
            ["random"] = (pool, k, seed) =>
            {
                // Partial Fisher-Yates with our own generator: the same seed draws the same examples everywhere.
                var rng = new Xoshiro256(seed);
                var order = Enumerable.Range(0, pool.Count).ToArray();
                for (int i = 0; i < k; i++)
                {
                    int j = i + rng.NextInt(pool.Count - i);
                    (order[i], order[j]) = (order[j], order[i]);
                }
                return order[..k];
            },
        };

    public static EvalTask Parse(TaskSpecReader r, TaskOrigin origin)
    {
        string data = origin.Resolve(r.RequiredString("data"));
        string format = r.String("format") ?? "mmlu";
        if (!Formats.ContainsKey(format)) throw new FormatException($"{r.Where}: unknown format \"{format}\" (known: {string.Join(", ", Formats.Keys)})");
        string sampler = r.String("fewshot_sampler") ?? "random";
        if (!FewshotSamplers.ContainsKey(sampler)) throw new FormatException($"{r.Where}: unknown fewshot_sampler \"{sampler}\" (known: {string.Join(", ", FewshotSamplers.Keys)})");
        var d = new MultipleChoiceTaskDefinition(data, format, r.String("subject") ?? SubjectFromFile(data), r.String("description"),
            r.String("prompt") ?? "Question: {question}\nAnswer:", r.Int("num_fewshot") ?? 0,
            r.String("fewshot_data") is string f ? origin.Resolve(f) : null, sampler, r.Bool("add_bos"),
            r.String("target_delimiter") ?? " ", r.String("fewshot_delimiter") ?? "\n\n");
        if (d.NumFewshot < 0) throw new FormatException($"{r.Where}: \"num_fewshot\" must be ≥ 0");
        if (r.Has("prompt") && format != "cloze") throw new FormatException($"{r.Where}: \"prompt\" applies to the cloze format only");
        PromptTemplate.Fields(d.Prompt);
        return new EvalTask(origin.Name, "multiple_choice", origin.Source, d, c => Run(origin.Name, origin.Source, d, c));
    }

    /// <summary>"clinical_knowledge_test.csv" → "clinical knowledge".</summary>
    public static string SubjectFromFile(string path)
    {
        var name = Path.GetFileNameWithoutExtension(path);
        foreach (var split in new[] { "_test", "_dev", "_val" })
            if (name.EndsWith(split, StringComparison.Ordinal)) { name = name[..^split.Length]; break; }
        return name.Replace('_', ' ');
    }

    public static List<ChoiceQuestion> ReadQuestions(string path) =>
        path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) ? EvalData.ReadMmluCsv(path) : EvalData.ReadChoiceRecords(path);

    /// <summary>The few-shot block: description + examples (question text + delimiter + right choice) joined by the
    /// few-shot delimiter, which also ends the block — lm-eval's fewshot_context.</summary>
    public static string Prefix(MultipleChoiceTaskDefinition d, IReadOnlyList<ChoiceQuestion> examples)
    {
        var format = Formats[d.Format];
        var sb = new StringBuilder(d.Description ?? format.Description(d));
        foreach (var e in examples)
            sb.Append(format.Text(e, d)).Append(d.TargetDelimiter).Append(format.Choices(e)[e.Answer]).Append(d.FewshotDelimiter);
        return sb.ToString();
    }

    /// <summary>The full context for a question and its continuations (delimiter + choice).</summary>
    public static (string Context, string[] Continuations) Request(MultipleChoiceTaskDefinition d, string prefix, ChoiceQuestion q)
    {
        var format = Formats[d.Format];
        return (prefix + format.Text(q, d), format.Choices(q).Select(c => d.TargetDelimiter + c).ToArray());
    }

    /// <summary>lm-eval's decisions: the first index of the largest sum (acc), and of the largest sum per UTF-8 byte of
    /// the choice (acc_norm).</summary>
    public static (int Prediction, int NormalizedPrediction) Decide(IReadOnlyList<double> logLikelihoods, IReadOnlyList<string> choices)
    {
        int best = 0, bestNorm = 0;
        double bestNormValue = double.NegativeInfinity;
        for (int i = 0; i < logLikelihoods.Count; i++)
        {
            if (logLikelihoods[i] > logLikelihoods[best]) best = i;
            int bytes = Encoding.UTF8.GetByteCount(choices[i]);
            if (bytes == 0) throw new ArgumentException($"choice {i} is empty; acc_norm cannot divide by its length");
            double norm = logLikelihoods[i] / bytes;
            if (norm > bestNormValue) { bestNormValue = norm; bestNorm = i; }
        }
        return (best, bestNorm);
    }

    public static TaskResult Run(string name, string source, MultipleChoiceTaskDefinition d, EvalContext ctx)
    {
        var clock = Stopwatch.StartNew();
        var tokenizer = ctx.Tokenizer;
        var format = Formats[d.Format];
        var questions = ReadQuestions(d.Data);
        int available = questions.Count;
        if (ctx.Options.Limit is int limit) questions = questions.Take(limit).ToList();
        if (questions.Count == 0) throw new ArgumentException($"{name}: no questions in {d.Data}");
        int k = ctx.Options.NumFewshot ?? d.NumFewshot;
        var examples = new List<ChoiceQuestion>();
        int[] picked = [];
        if (k > 0)
        {
            if (d.FewshotData == null) throw new ArgumentException($"{name}: {k}-shot needs \"fewshot_data\" (examples kept apart from the scored questions)");
            var pool = ReadQuestions(d.FewshotData);
            if (k > pool.Count) throw new ArgumentException($"{name}: {k}-shot asks for more examples than {d.FewshotData} holds ({pool.Count})");
            picked = FewshotSamplers[d.FewshotSampler](pool, k, ctx.Options.Seed);
            examples = picked.Select(i => pool[i]).ToList();
        }
        bool addBos = d.AddBos ?? tokenizer.AddsBos;
        int? bos = addBos ? tokenizer.BosId ?? throw new ArgumentException($"{name}: add_bos is set but the tokenizer has no BOS token") : null;
        string prefix = Prefix(d, examples);

        var scorer = new LogLikelihoodScorer(ctx.Model);
        scorer.Reset();
        var acc = new List<double>();
        var accNorm = new List<double>();
        JsonObject? example = null;
        var samples = new JsonArray();
        for (int i = 0; i < questions.Count; i++)
        {
            ctx.Cancel.ThrowIfCancellationRequested();
            var q = questions[i];
            var (context, continuations) = Request(d, prefix, q);
            var lls = new double[continuations.Length];
            var pairs = continuations.Select(c => LmEvalEncoding.Encode(tokenizer, context, c, bos)).ToArray();
            for (int c = 0; c < pairs.Length; c++) lls[c] = scorer.Score(pairs[c].Context, [pairs[c].Continuation])[0];
            var (pred, predNorm) = Decide(lls, format.Choices(q));
            acc.Add(pred == q.Answer ? 1 : 0);
            accNorm.Add(predNorm == q.Answer ? 1 : 0);
            example ??= new JsonObject
            {
                ["context"] = context,
                ["continuations"] = new JsonArray(continuations.Select(c => (JsonNode)c).ToArray()),
                ["context_tokens"] = pairs[0].Context.Length,
                ["continuation_tokens"] = new JsonArray(pairs.Select(p => (JsonNode)new JsonArray(p.Continuation.Select(t => (JsonNode)t).ToArray())).ToArray()),
                ["log_likelihoods"] = new JsonArray(lls.Select(l => (JsonNode)l).ToArray()),
                ["answer"] = q.Answer,
            };
            if (EvalSamples.Wanted(i))
                samples.Add((JsonNode)new JsonObject
                {
                    ["item"] = i, ["question"] = EvalSamples.Cut(q.Question),
                    ["choices"] = new JsonArray(q.Choices.Select(c => (JsonNode)EvalSamples.Cut(c)).ToArray()),
                    ["reference"] = EvalSamples.Cut(q.Choices[q.Answer]), ["answer"] = EvalSamples.Cut(q.Choices[pred]), ["correct"] = pred == q.Answer,
                });
            ctx.Progress?.Invoke(i + 1, questions.Count);
        }
        double pAcc = EvalStatistics.Mean(acc), pNorm = EvalStatistics.Mean(accNorm);
        var metrics = new List<MetricResult>
        {
            new("acc", pAcc, EvalStatistics.BinomialStandardError(pAcc, acc.Count), EvalStatistics.BinomialStandardErrorMethod, true),
            new("acc_norm", pNorm, EvalStatistics.BinomialStandardError(pNorm, accNorm.Count), EvalStatistics.BinomialStandardErrorMethod, true),
        };
        var protocol = new JsonObject
        {
            ["data"] = d.Data,
            ["format"] = d.Format,
            ["description"] = d.Description ?? format.Description(d),
            ["question_template"] = format.Template(d),
            ["target_delimiter"] = d.TargetDelimiter,
            ["fewshot_delimiter"] = d.FewshotDelimiter,
            ["num_fewshot"] = k,
            ["fewshot_data"] = k > 0 ? d.FewshotData : null,
            ["fewshot_sampler"] = k > 0 ? d.FewshotSampler : null,
            ["fewshot_seed"] = k > 0 && d.FewshotSampler == "random" ? ctx.Options.Seed : null,
            ["fewshot_indices"] = k > 0 ? new JsonArray(picked.Select(p => (JsonNode)p).ToArray()) : null,
            ["fewshot_examples"] = k > 0 ? "drawn once per task: every question sees the same examples" : null,
            ["bos"] = addBos,
            ["tokenization"] = LmEvalEncoding.Description,
            ["acc"] = "argmax over choices of Σ log p(continuation tokens | context) is the answer",
            ["acc_norm"] = "argmax of that sum / UTF-8 bytes of the choice text (target delimiter not counted) is the answer",
            ["ties"] = "the first choice wins (numpy argmax)",
            ["truncation"] = $"context cut from the left to fit {ctx.Model.MaxContext} tokens (lm-eval's rule)",
        };
        var details = new JsonObject
        {
            ["items_available"] = available, ["continuations_truncated"] = scorer.Truncated, ["first_question"] = example, ["samples"] = samples,
        };
        return new TaskResult(name, "multiple_choice", source, questions.Count, metrics, protocol, details, clock.Elapsed.TotalSeconds);
    }
}
