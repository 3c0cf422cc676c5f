using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Evaluation;

/// <summary>One multiple-choice question: the choices' texts and the index of the right one.</summary>
public sealed record ChoiceQuestion(string Question, IReadOnlyList<string> Choices, int Answer);

/// <summary>Readers for evaluation data: JSONL (optionally .gz) or a JSON array of records, headerless CSV, text.</summary>
public static class EvalData
{
    /// <summary>Records of a .jsonl / .jsonl.gz (one object per line, blank lines skipped) or .json (an array).
    /// A line that is not a JSON object is an error naming file and line: evaluation data must be clean.</summary>
    public static List<JsonObject> ReadRecords(string path)
    {
        RequireFile(path);
        var records = new List<JsonObject>();
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            JsonNode? root;
            try { root = JsonNode.Parse(File.ReadAllText(path)); }
            catch (JsonException e) { throw new FormatException($"{path}: not valid JSON: {e.Message}"); }
            if (root is not JsonArray array) throw new FormatException($"{path}: a .json data file must hold an array of objects (or use .jsonl)");
            for (int i = 0; i < array.Count; i++)
                records.Add(array[i] as JsonObject ?? throw new FormatException($"{path}: element {i} is not a JSON object"));
            return records;
        }
        using var reader = OpenText(path);
        long number = 0;
        string? line;
        while ((line = reader.ReadLine()) != null)
        {
            number++;
            if (line.Trim().Length == 0) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new FormatException($"{path}:{number}: not valid JSON: {e.Message}"); }
            records.Add(node as JsonObject ?? throw new FormatException($"{path}:{number}: expected a JSON object"));
        }
        return records;
    }

    /// <summary>A text file, gzip-decompressed when it ends in .gz; damage is an error naming the file.</summary>
    public static TextReader OpenText(string path)
    {
        RequireFile(path);
        return TextFile.Open(path);
    }

    public static bool IsRecordFile(string path)
    {
        var p = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;
        return p.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || p.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>MMLU's layout (hendrycks/test): question, the choices, then the answer letter.</summary>
    public static List<ChoiceQuestion> ReadMmluCsv(string path)
    {
        var questions = new List<ChoiceQuestion>();
        using var reader = OpenText(path);
        foreach (var (line, cells) in Csv.Rows(reader, path))
        {
            if (cells.Count < 4) throw new DataFormatException(path, line, $"{cells.Count} fields; expected question, at least two choices and the answer letter");
            var choices = cells.ToArray()[1..^1];
            questions.Add(new ChoiceQuestion(cells[0], choices, AnswerIndex(cells[^1], choices.Length, $"{path}:{line}")));
        }
        return questions;
    }

    /// <summary>JSONL records {question, choices: [...], answer: index or letter}.</summary>
    public static List<ChoiceQuestion> ReadChoiceRecords(string path)
    {
        var questions = new List<ChoiceQuestion>();
        var records = ReadRecords(path);
        for (int i = 0; i < records.Count; i++)
        {
            var o = records[i];
            string where = $"{path}: record {i + 1}";
            string question = o["question"] is JsonValue q && q.TryGetValue(out string? qs) ? qs : throw new FormatException($"{where}: \"question\" must be a string");
            if (o["choices"] is not JsonArray arr || arr.Count < 2) throw new FormatException($"{where}: \"choices\" must be an array of at least two strings");
            var choices = arr.Select(n => n is JsonValue v && v.TryGetValue(out string? s) ? s : throw new FormatException($"{where}: every choice must be a string")).ToArray();
            int answer = o["answer"] switch
            {
                JsonValue v when v.TryGetValue(out int index) => index >= 0 && index < choices.Length ? index
                    : throw new FormatException($"{where}: answer index {index} is outside 0..{choices.Length - 1}"),
                JsonValue v when v.TryGetValue(out string? letter) => AnswerIndex(letter, choices.Length, where),
                _ => throw new FormatException($"{where}: \"answer\" must be a choice index or letter"),
            };
            questions.Add(new ChoiceQuestion(question, choices, answer));
        }
        return questions;
    }

    static int AnswerIndex(string letter, int count, string where)
    {
        var t = letter.Trim();
        if (t.Length == 1 && char.ToUpperInvariant(t[0]) - 'A' is int i && i >= 0 && i < count) return i;
        throw new FormatException($"{where}: answer \"{letter}\" is not one of the letters A..{(char)('A' + count - 1)}");
    }

    public static void RequireFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data file not found", path);
    }
}
