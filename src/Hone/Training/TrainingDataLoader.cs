using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Hone.ToolCalls;

namespace Hone.Training;

/// <summary>
/// Reads training data and tokenizes it for a model:
/// CPT — a .txt file (documents separated by blank lines) or JSONL {"text": ...}; each document becomes
/// [BOS] text EOS, every token a target.
/// SFT — JSONL (or a JSON array) in the OpenAI `messages` shape, Alpaca (`instruction`/`input`/`output`, optional
/// `system`, `history`) or ShareGPT (`conversations` with `from`/`value`), rendered with the model's chat template
/// (or a given one, or a plain instruction/response template for base models); only assistant tokens are
/// targets unless TrainOnPrompt. Records may carry tools (OpenAI `tools`/`tool_calls`/`tool` messages, or ShareGPT's
/// function_call/observation turns): they train through the template with the tools shown, the calls as targets.
/// Malformed records are errors naming file and line; with SkipBadLines they are counted and skipped. A data path may
/// be a folder holding one data file (<see cref="DataPath"/>); CSV rows are records with the header's names as fields.
/// </summary>
public static class TrainingDataLoader
{
    public static TrainingData Load(Checkpoint checkpoint, TrainOptions o)
    {
        if (o.ReplayData != null && o.Stage == TrainingStage.Cpt)
            throw new ArgumentException("replay data mixes plain documents into sft; for cpt, put them in the data");
        var tokenizer = checkpoint.LoadTokenizer();
        int skipped = 0;
        ChatTemplate? template = null;
        string templateName = "";
        if (o.Stage != TrainingStage.Cpt) (template, templateName) = ChatConversation.ResolveTemplate(tokenizer, o.Template);
        // The template's tool-call format, found once when the first record with tools comes (null: it renders none).
        ToolCallFormat? toolFormat = null;
        bool toolFormatKnown = false;
        ToolCallFormat? ToolFormat()
        {
            if (!toolFormatKnown) (toolFormat, toolFormatKnown) = (ToolCallFormat.Detect(template!), true);
            return toolFormat;
        }
        List<TrainingExample> Read(string path, TrainingStage stage, int limit = 0)
        {
            var examples = new List<TrainingExample>();
            path = DataPath.Resolve(path, DataPath.RecordExtensions);
            long records = 0;
            var items = stage == TrainingStage.Cpt
                ? RecordFile.Texts(path).Select(t => (t.Line, (object?)t.Text, t.Error))
                : RecordFile.Records(path, textDocuments: false).Select(r => (r.Line, (object?)r.Record, r.Error));
            foreach (var (line, item, error) in items)
            {
                if (limit > 0 && records++ >= limit) break;
                try
                {
                    if (error != null) throw new DataFormatException(path, line, error);
                    var example = stage == TrainingStage.Cpt
                        ? Document(tokenizer, (DocumentText)item!)
                        : Conversation(tokenizer, template!, ChatConversation.ToConversation((JsonNode)item!, path, line), o.TrainOnPrompt, ToolFormat, templateName);
                    if (example.TargetCount > 0) examples.Add(example);
                }
                catch (Exception e) when (e is DataFormatException or TemplateException or FormatException or InvalidOperationException or KeyNotFoundException or ToolFormatException)
                {
                    if (!o.SkipBadLines) throw e as DataFormatException ?? new DataFormatException(path, line, e.Message);
                    skipped++;
                }
            }
            return examples;
        }
        int pad = tokenizer.PaddingId ?? tokenizer.EosId ?? 0;
        if (o.Stage == TrainingStage.Unlearn)
        {
            // Unlearning: one conversation per row (no packing, no validation split); the forget set is the training
            // stream, the retain set a second one. Both are evaluated whole at the evaluation points.
            var forget = Read(o.Forget!, TrainingStage.Sft, o.MaxSamples);
            if (forget.Count == 0) throw new DataFormatException(o.Forget!, 0, "no usable forget examples");
            var forgetFit = Fit(forget, o.SeqLen, o.Forget!);
            var retain = o.Retain != null ? Read(o.Retain, TrainingStage.Sft) : null;
            if (retain is { Count: 0 }) throw new DataFormatException(o.Retain!, 0, "no usable retain examples");
            var retainFit = retain != null ? Fit(retain, o.SeqLen, o.Retain!) : default;
            var forgetRows = new TrainingRows(forget, o.SeqLen, false, pad, o.Seed);
            var retainRows = retain != null ? new TrainingRows(retain, o.SeqLen, false, pad, o.Seed + 1) : null;
            var text = $"unlearning ({o.UnlearnMethod}): forget {forget.Count} conversations ({forget.Sum(e => (long)e.TargetCount):N0} targets)" +
                (retain != null ? $", retain {retain.Count} conversations ({retain.Sum(e => (long)e.TargetCount):N0} targets{(o.UnlearnMethod == "grad-ascent" ? "; evaluated, not trained on, by grad-ascent" : "")})" : "") +
                (forgetFit.Truncated + retainFit.Truncated > 0 ? $"; {forgetFit.Truncated + retainFit.Truncated} longer than {o.SeqLen + 1} tokens truncated" : "") +
                (forgetFit.Dropped + retainFit.Dropped > 0 ? $"; {forgetFit.Dropped + retainFit.Dropped} dropped (no answer token within the first {o.SeqLen + 1})" : "") +
                (skipped > 0 ? $"; skipped {skipped} bad records" : "") + $"; template {templateName}";
            return new TrainingData(forgetRows, null, skipped, text) { Retain = retainRows };
        }
        bool packing = o.Packing ?? o.Stage == TrainingStage.Cpt;
        var train = Read(o.Data, o.Stage, o.MaxSamples);
        var fit = packing ? default : Fit(train, o.SeqLen, o.Data);
        List<TrainingExample>? validation = null;
        if (o.ValData != null)
        {
            validation = Read(o.ValData, o.Stage);
            if (!packing) Fit(validation, o.SeqLen, o.ValData);
        }
        else if (o.ValSplit > 0 && train.Count >= 2)
        {
            var order = Enumerable.Range(0, train.Count).ToArray();
            var rng = new Xoshiro256(o.Seed + 7919);
            for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
            int held = Math.Max(1, (int)Math.Round(train.Count * o.ValSplit));
            var heldSet = order.Take(held).ToHashSet();
            validation = heldSet.Order().Select(i => train[i]).ToList();
            train = Enumerable.Range(0, train.Count).Where(i => !heldSet.Contains(i)).Select(i => train[i]).ToList();
        }
        if (train.Count == 0) throw new DataFormatException(o.Data, 0, "no usable training examples");
        // Replay documents join training after the validation split: they are never validation.
        var replay = o.ReplayData != null ? Read(o.ReplayData, TrainingStage.Cpt) : [];
        train.AddRange(replay);
        int replayed = replay.Count;
        var rows = new TrainingRows(train, o.SeqLen, packing, pad, o.Seed);
        var valRows = validation is { Count: > 0 } ? new TrainingRows(validation, o.SeqLen, packing, pad, o.Seed) : null;
        long tokens = train.Sum(e => (long)e.Ids.Length), targets = train.Sum(e => (long)e.TargetCount);
        var description = new StringBuilder($"data: {train.Count - replayed} {(o.Stage == TrainingStage.Cpt ? "documents" : "conversations")}" +
            (replayed > 0 ? $" + {replayed} replay documents" : "") + $", {tokens:N0} tokens ({targets:N0} targets)");
        if (valRows != null) description.Append($"; validation {validation!.Count}");
        if (skipped > 0) description.Append($"; skipped {skipped} bad records");
        if (fit.Truncated > 0) description.Append($"; {fit.Truncated} longer than {o.SeqLen + 1} tokens truncated (loss on the part that fits)");
        if (fit.Dropped > 0) description.Append($"; {fit.Dropped} dropped (no answer token within the first {o.SeqLen + 1}; the longest has {fit.Longest:N0} tokens: raise --seq-len to keep them)");
        if (template != null) description.Append($"; template {templateName}");
        description.Append(packing ? $"; packed into {rows.RowsPerEpoch} windows of {o.SeqLen}" : $"; {rows.RowsPerEpoch} rows of {o.SeqLen}");
        return new TrainingData(rows, valRows, skipped, description.ToString());
    }

    /// <summary>Without packing, an example is one row of the first SeqLen + 1 tokens: longer ones are truncated
    /// (as LLaMA-Factory's cutoff_len does) and those with no target left in the row are dropped, with counts.</summary>
    static (int Truncated, int Dropped, int Longest) Fit(List<TrainingExample> examples, int sequence, string file)
    {
        int truncated = 0, dropped = 0, longest = 0, window = sequence + 1, before = examples.Count;
        examples.RemoveAll(e =>
        {
            if (e.Ids.Length <= window) return false;
            longest = Math.Max(longest, e.Ids.Length);
            if (e.IsTarget.AsSpan(1, window - 1).Contains(true)) { truncated++; return false; }
            dropped++;
            return true;
        });
        if (before > 0 && examples.Count == 0)
            throw new DataFormatException(file, 0, $"none of the {before} examples has an answer token within its first {window} tokens " +
                $"(the longest has {longest:N0}): raise --seq-len, shorten the prompts, or use --packing");
        return (truncated, dropped, longest);
    }

    /// <summary>[BOS] text EOS, every token but the first a target. The text is taken out of its holder here and
    /// passed straight to the tokenizer, so it can be collected before the ids are copied into their final array.</summary>
    internal static TrainingExample Document(Tokenizer tokenizer, DocumentText text)
    {
        var ids = tokenizer.EncodeDocument(text.Take(), tokenizer.AddsBos ? tokenizer.BosId : null, tokenizer.EosId);
        var targets = new bool[ids.Length];
        if (ids.Length > 1) targets.AsSpan(1).Fill(true);
        return new TrainingExample(ids, targets);
    }

    /// <summary>A conversation through the template; one with tools gets them shown and its messages prepared as the
    /// template's tool-call format needs (the targets are the assistant turns, calls included, never the tool results).</summary>
    internal static TrainingExample Conversation(Tokenizer tokenizer, ChatTemplate template, ChatRecord record, bool trainOnPrompt, Func<ToolCallFormat?> toolFormat, string templateName)
    {
        var messages = record.Messages;
        if (record.UsesTools)
        {
            var format = toolFormat() ?? throw new InvalidOperationException(
                $"the record uses tools, but the chat template ({templateName}) renders no tool calls Hone reads " +
                $"({string.Join(", ", ToolCallFormat.All.Select(f => f.Name))}); give a template that does (--template)");
            if (record.Tools != null) ToolDefinition.ParseList(record.Tools);
            messages = format.PrepareMessages(messages);
        }
        var (ids, isTarget) = ChatConversation.Tokenize(tokenizer, template, messages, trainOnPrompt, record.Tools);
        return new TrainingExample(ids, isTarget);
    }
}
