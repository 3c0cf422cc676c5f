using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Synthetic;

/// <param name="Train">train.jsonl: continued-pretraining records {"text": document}</param>
/// <param name="HeldOut">heldout.txt: held-out documents separated by blank lines (general perplexity)</param>
public sealed record GeneralFiles(string Train, string HeldOut, int TrainDocuments, int HeldOutDocuments, long TrainBytes, long HeldOutBytes);

/// <param name="Train">train.jsonl: SFT records {"messages": [system, user, assistant…]}</param>
/// <param name="HeldOut">heldout.jsonl: held-out conversations in the same shape</param>
/// <param name="Evaluation">eval.jsonl: the domain task (<see cref="DomainTaskItem"/>), one item per held-out conversation</param>
/// <param name="HeldOutText">heldout.txt: the held-out conversations as plain text separated by blank lines (domain perplexity)</param>
public sealed record EcommerceFiles(string Train, string HeldOut, string Evaluation, string HeldOutText, long TrainBytes);

/// <summary>Writes the generated data in the shapes the trainer and the evaluation read (each file atomically).</summary>
public static class SyntheticFiles
{
    public const string TrainFile = "train.jsonl", HeldOutFile = "heldout.jsonl", EvaluationFile = "eval.jsonl", HeldOutTextFile = "heldout.txt";

    public static GeneralFiles WriteGeneral(IReadOnlyList<string> documents, string directory, double heldOutFraction = 0.05)
    {
        var (train, heldOut) = GeneralCorpus.Split(documents, heldOutFraction);
        string trainPath = Path.Combine(directory, TrainFile), heldOutPath = Path.Combine(directory, HeldOutTextFile);
        WriteJsonLines(trainPath, train.Select(d => new JsonObject { ["text"] = d }));
        WriteDocuments(heldOutPath, heldOut);
        return new GeneralFiles(trainPath, heldOutPath, train.Count, heldOut.Count, new FileInfo(trainPath).Length, new FileInfo(heldOutPath).Length);
    }

    public static EcommerceFiles WriteEcommerce(EcommerceData data, string directory)
    {
        string Combine(string name) => Path.Combine(directory, name);
        WriteJsonLines(Combine(TrainFile), data.Train.Select(c => new JsonObject { ["messages"] = Messages(c.Messages) }));
        WriteJsonLines(Combine(HeldOutFile), data.HeldOut.Select(c => new JsonObject { ["messages"] = Messages(c.Messages) }));
        WriteJsonLines(Combine(EvaluationFile), data.Evaluation.Select(e => e.ToJson()));
        WriteDocuments(Combine(HeldOutTextFile), data.HeldOut.Select(c => c.PlainText));
        return new EcommerceFiles(Combine(TrainFile), Combine(HeldOutFile), Combine(EvaluationFile), Combine(HeldOutTextFile), new FileInfo(Combine(TrainFile)).Length);
    }

    /// <summary>Reads the domain task back (eval.jsonl).</summary>
    public static IReadOnlyList<DomainTaskItem> ReadEvaluation(string path) =>
        File.ReadLines(path).Where(l => l.Trim().Length > 0)
            .Select((l, i) => DomainTaskItem.FromJson(JsonNode.Parse(l) ?? throw new FormatException($"{path}:{i + 1}: null record"))).ToList();

    /// <summary>The texts of a data file, for training a tokenizer: a .txt file's blank-line separated documents, or a
    /// JSONL file's "text" fields and message contents ("messages", or a task's "prompt_messages").</summary>
    public static IEnumerable<string> ReadTexts(string path)
    {
        foreach (var (line, record, error) in RecordFile.Records(path, textDocuments: true))
        {
            if (error != null) throw new DataFormatException(path, line, error);
            if (record?["text"] is JsonValue t && t.TryGetValue(out string? text)) { yield return text; continue; }
            var messages = record?["messages"] as JsonArray ?? record?["prompt_messages"] as JsonArray
                ?? throw new DataFormatException(path, line, "expected \"text\", \"messages\" or \"prompt_messages\"");
            foreach (var m in messages)
                if (m?["content"] is JsonValue c && c.TryGetValue(out string? content)) yield return content;
        }
    }

    internal static JsonArray Messages(IEnumerable<ChatMessage> messages) =>
        new(messages.Select(m => (JsonNode?)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray());

    // £, €, ’ written as themselves: the files are data for people and tools to read, never embedded in HTML.
    static readonly JsonWriterOptions LineOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void WriteJsonLines(string path, IEnumerable<JsonObject> records) => AtomicFile.Write(path, stream =>
    {
        using var writer = new Utf8JsonWriter(stream, LineOptions);
        foreach (var record in records)
        {
            record.WriteTo(writer);
            writer.Flush();
            stream.WriteByte((byte)'\n');
            writer.Reset();
        }
    });

    /// <summary>Documents separated by one blank line (the CPT .txt convention); a document must not hold a blank line.</summary>
    public static void WriteDocuments(string path, IEnumerable<string> documents) => AtomicFile.Write(path, stream =>
    {
        using var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true);
        bool first = true;
        foreach (var document in documents)
        {
            if (document.Contains("\n\n", StringComparison.Ordinal) || document.Trim().Length == 0)
                throw new ArgumentException("a document is empty or contains a blank line, which would split it in two");
            if (!first) writer.Write("\n\n");
            writer.Write(document);
            first = false;
        }
        writer.Write('\n');
    });
}
