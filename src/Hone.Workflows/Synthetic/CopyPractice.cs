using System.Text;
using Hone.Tensors;

namespace Hone.Synthetic;

/// <summary>The kinds of copying-practice documents (<see cref="CopyPractice"/>), plus the two kinds of ordinary text a
/// practice mix keeps (the copying corpus and the base model's own pretraining text).</summary>
public enum PracticeKind
{
    /// <summary>4–40 random letters with spaces (one token each), " = ", the same letters: copying by content, one symbol
    /// at a time, at a distance that varies so that only finding the earlier occurrence works.</summary>
    Letters,
    /// <summary>4–30 random digits with spaces, " = ", the same digits.</summary>
    Digits,
    /// <summary>4–30 random vocabulary pieces, then the same on the next line: copying of whatever tokens a value happens
    /// to be cut into.</summary>
    VocabularyPairs,
    /// <summary>4–60 random vocabulary pieces said twice, half the time with a passage of general text between.</summary>
    VocabularyRuns,
    /// <summary>6–16 names, e-mails, order ids, codes, products and numbers, said two or three times.</summary>
    ValueRuns,
    /// <summary>A passage of general text said twice, half the time with other text between.</summary>
    RepeatedPassages,
    /// <summary>Short exchanges in the tool-call markup the agent writes: a customer gives a name and zip code or an
    /// e-mail and an order id, the assistant passes them on in calls. Without these, "&lt;" never occurs in the
    /// generated pretraining text and its embedding stays untrained (an adapter cannot train it).</summary>
    CallMarkup,
    /// <summary><see cref="CopyCorpus"/> documents: forms, tables, JSON tool results, quoted replies.</summary>
    CopyCorpus,
    /// <summary>The base model's pretraining documents, against forgetting.</summary>
    Pretraining,
}

/// <summary>
/// Practice documents that make a small model copy from its context (an induction head: find the earlier occurrence of
/// the current token, predict what followed it). From random weights a model of the quickstart's size sits on a plateau
/// for thousands of steps on such tasks; after pretraining on text, which gives it a head that attends to the previous
/// token, letter runs of varied length break through in 2,000–2,500 steps, and wider mixes carry the skill to the
/// pieces ids and e-mails are cut into (docs/performance.md, 2026-12-05 late night). Deterministic per seed.
/// </summary>
public static class CopyPractice
{
    /// <summary>One document of <paramref name="kind"/> (not <see cref="PracticeKind.CopyCorpus"/> or
    /// <see cref="PracticeKind.Pretraining"/>, which come from their own files).</summary>
    /// <param name="pieces">the tokenizer's ordinary vocabulary pieces, for <see cref="PracticeKind.VocabularyRuns"/></param>
    /// <param name="general">general documents, for passages and the gaps between repeats</param>
    public static string Document(PracticeKind kind, Xoshiro256 random, IReadOnlyList<string> pieces, IReadOnlyList<string> general) => kind switch
    {
        PracticeKind.Letters => SpacedRun(random, random.Between(4, 40), "abcdefghijklmnopqrstuvwxyz"),
        PracticeKind.Digits => SpacedRun(random, random.Between(4, 30), "0123456789"),
        PracticeKind.VocabularyPairs => VocabularyPair(random, pieces),
        PracticeKind.VocabularyRuns => VocabularyRun(random, pieces, general),
        PracticeKind.ValueRuns => ValueRun(random),
        PracticeKind.RepeatedPassages => RepeatedPassage(random, general),
        PracticeKind.CallMarkup => CallMarkup(random),
        _ => throw new ArgumentException($"{kind} documents come from their own files, not from {nameof(CopyPractice)}", nameof(kind)),
    };

    /// <summary>"j v z = j v z."</summary>
    static string SpacedRun(Xoshiro256 r, int length, string symbols)
    {
        var run = new StringBuilder(length * 2);
        for (int i = 0; i < length; i++)
        {
            if (i > 0) run.Append(' ');
            run.Append(symbols[r.NextInt(symbols.Length)]);
        }
        string s = run.ToString();
        return $"{s} = {s}.";
    }

    static string PieceRun(Xoshiro256 r, IReadOnlyList<string> pieces, int length)
    {
        if (pieces.Count == 0) throw new ArgumentException("vocabulary runs need the tokenizer's pieces");
        var run = new StringBuilder();
        for (int i = 0; i < length; i++) run.Append(pieces[r.NextInt(pieces.Count)]);
        string s = run.ToString().Trim();
        return s.Length == 0 ? "x" : s;
    }

    static string VocabularyPair(Xoshiro256 r, IReadOnlyList<string> pieces)
    {
        string s = PieceRun(r, pieces, r.Between(4, 30));
        return $"{s}\n{s}";
    }

    static string VocabularyRun(Xoshiro256 r, IReadOnlyList<string> pieces, IReadOnlyList<string> general)
    {
        string s = PieceRun(r, pieces, r.Between(4, 60));
        return r.NextDouble() < 0.5 ? $"{s}\n{Slice(r, general, 0, 600)}\n{s}" : $"{s}\n{s}";
    }

    static string RepeatedPassage(Xoshiro256 r, IReadOnlyList<string> general)
    {
        string passage = Slice(r, general, 40, 400);
        if (passage.Trim().Length == 0) passage = "a passage";
        return r.NextDouble() < 0.5 ? $"{passage}\n{passage}" : $"{passage}\n{Slice(r, general, 0, 500)}\n{passage}";
    }

    /// <summary>A piece of a random general document, between <paramref name="min"/> and <paramref name="max"/> characters
    /// where the document is long enough.</summary>
    static string Slice(Xoshiro256 r, IReadOnlyList<string> general, int min, int max)
    {
        if (general.Count == 0) throw new ArgumentException("passages need general documents");
        string document = general[r.NextInt(general.Count)];
        int length = Math.Min(document.Length, r.Between(min, max));
        int start = r.NextInt(document.Length - length + 1);
        return document.Substring(start, length);
    }

    // The copying corpus's names, so that practice and corpus speak of the same people.
    static readonly string[] First = CopyCorpus.FirstNames, Last = CopyCorpus.LastNames;
    static readonly string[] Products =
        ["t-shirt", "water bottle", "desk lamp", "backpack", "running shoes", "coffee maker", "yoga mat", "notebook", "sunglasses", "skateboard", "wall clock"];
    static readonly string[] Colors = ["red", "blue", "black", "white", "green", "grey", "purple", "orange"];
    static readonly string[] CodeShapes = ["LLDD", "XXXXX", "DDD-DDD", "LDLD"];
    static readonly string[] Separators = [" ", ", ", " | "];

    static string Email(Xoshiro256 r) => $"{r.One(First)}.{r.One(Last)}{CopyCorpus.Digits(r, 4)}@example.com";

    static string OrderId(Xoshiro256 r) => "#W" + CopyCorpus.Digits(r, 7);

    static string Value(Xoshiro256 r) => r.NextInt(8) switch
    {
        0 => r.One(First),
        1 => r.One(Last),
        2 => r.One(Products),
        3 => CopyCorpus.Digits(r, r.Between(2, 7)),
        4 => r.One(Colors),
        5 => CopyCorpus.Code(r, r.One(CodeShapes)),
        6 => Email(r),
        _ => OrderId(r),
    };

    static string ValueRun(Xoshiro256 r)
    {
        string separator = r.One(Separators);
        int n = r.Between(6, 16);
        var values = new string[n];
        for (int i = 0; i < n; i++) values[i] = Value(r);
        string run = string.Join(separator, values);
        return r.NextDouble() < 0.3 ? $"{run}\n{run}\n{run}" : $"{run}\n{run}";
    }

    static string Title(string s) => char.ToUpperInvariant(s[0]) + s[1..];

    static string CallMarkup(Xoshiro256 r)
    {
        string first = r.One(First), last = r.One(Last);
        var b = new StringBuilder();
        if (r.NextDouble() < 0.5)
        {
            string zip = CopyCorpus.Digits(r, 5);
            b.Append($"User: I'm {Title(first)} {Title(last)}, zip {zip}.\n");
            b.Append("Assistant: <tool_call>\n{\"name\": \"find_user_id_by_name_zip\", \"arguments\": ");
            b.Append($"{{\"first_name\":\"{Title(first)}\",\"last_name\":\"{Title(last)}\",\"zip\":\"{zip}\"}}}}\n</tool_call>\n");
        }
        else
        {
            string email = $"{first}.{last}{CopyCorpus.Digits(r, 4)}@example.com";
            b.Append($"User: Hi, my email is {email}.\n");
            b.Append($"Assistant: <tool_call>\n{{\"name\": \"find_user_id_by_email\", \"arguments\": {{\"email\":\"{email}\"}}}}\n</tool_call>\n");
        }
        b.Append($"Tool: {first}_{last}_{CopyCorpus.Digits(r, 4)}\n");
        string order = OrderId(r);
        b.Append($"User: What about order {order}?\n");
        b.Append($"Assistant: <tool_call>\n{{\"name\": \"get_order_details\", \"arguments\": {{\"order_id\":\"{order}\"}}}}\n</tool_call>");
        return b.ToString();
    }

    /// <summary>The tokenizer's ordinary pieces as text: every token that decodes to valid text without a line break, not a
    /// special token and not a lone byte.</summary>
    public static List<string> Pieces(Hone.Tokenization.Tokenizer tokenizer)
    {
        var pieces = new List<string>();
        var strict = new UTF8Encoding(false, true);
        for (int id = 0; id < tokenizer.VocabSize; id++)
        {
            if (tokenizer.IsSpecial(id)) continue;
            var bytes = tokenizer.TokenBytes(id);
            if (bytes.Length < 2) continue;
            string text;
            try { text = strict.GetString(bytes); }
            catch (DecoderFallbackException) { continue; }
            if (text.Contains('\n') || text.Contains('\r') || text.Contains("<|")) continue;
            pieces.Add(text);
        }
        return pieces;
    }
}
