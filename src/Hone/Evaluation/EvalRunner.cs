using System.Text.Json.Nodes;
using Hone.Inference;

namespace Hone.Evaluation;

/// <summary>Evaluates one model (and adapter) on a list of tasks and writes the results file: what `hone eval` and the
/// quickstart both run. Tasks are parsed before the model loads, so a bad task file fails fast.</summary>
public static class EvalRunner
{
    /// <param name="onTask">called before each task with (index, count, task)</param>
    /// <param name="onResult">called after each task with its result</param>
    /// <param name="progress">per-task progress (done, total), given the task's name</param>
    /// <param name="format">the layout of the file written (and returned): Hone's own, or lm-evaluation-harness's</param>
    public static (JsonObject Document, List<TaskResult> Results) Run(string model, string? adapter, IReadOnlyList<string> tasks, EvalOptions options,
        string outPath, int threads = 0, int context = 0, Action<int, int, EvalTask>? onTask = null, Action<TaskResult>? onResult = null,
        Func<string, Action<int, int>>? progress = null, CancellationToken cancel = default, EvalResultsFormat format = EvalResultsFormat.Hone)
    {
        if (tasks.Count == 0) throw new ArgumentException("name at least one task (a task file or a built-in name)");
        if (options.Limit is < 1) throw new ArgumentException("the limit must be at least 1");
        if (options.NumFewshot is < 0) throw new ArgumentException("the few-shot count must be ≥ 0");
        var parsed = tasks.Select(TaskLoader.Load).ToList();
        if (options.NumFewshot is > 0 && parsed.FirstOrDefault(t => t.Kind != "multiple_choice") is { } other)
            throw new ArgumentException($"the few-shot count applies to multiple_choice tasks; {other.Name} is a {other.Kind} task");
        var started = DateTime.UtcNow;
        using var loaded = LoadedModel.Open(model, adapter, threads, context, precision: options.Precision);
        var run = new EvalRunInfo(Path.GetFullPath(model), loaded.AdapterPath is string a ? Path.GetFullPath(a) : null, options, loaded.Model.MaxContext, started);
        var records = new List<JsonObject>();
        var results = new List<TaskResult>();
        for (int i = 0; i < parsed.Count; i++)
        {
            var task = parsed[i];
            onTask?.Invoke(i, parsed.Count, task);
            var result = task.Run(new EvalContext(loaded.Model, loaded.Tokenizer, options, progress?.Invoke(task.Name), cancel));
            results.Add(result);
            records.Add(EvalResults.Record(result, run));
            onResult?.Invoke(result);
        }
        var document = format == EvalResultsFormat.LmEval
            ? LmEvalResults.Document(records, LmEvalModelInfo.Of(loaded.Tokenizer, loaded.Model.MaxContext), DateTime.UtcNow)
            : EvalResults.Document(records);
        EvalResults.Write(outPath, document);
        return (document, results);
    }
}
