using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace Hone.DataTools;

/// <summary>Writing systems letters are sorted into, for the script statistics. CJK is one system because Chinese,
/// Japanese and Korean text mix Han with kana or Hangul as a matter of course.</summary>
public enum WritingSystem { None, Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew, Arabic, Indic, Thai, Ethiopic, Cjk, Other }

/// <summary>Per-text counts for <c>data stats</c>.</summary>
public struct TextFacts
{
    /// <summary>Unicode code points (a surrogate pair is one; a lone surrogate is one).</summary>
    public int CodePoints;
    public int NonAscii;
    public bool WhitespaceOnly;
    /// <summary>U+FFFD, left by a decoder that met bytes it could not read.</summary>
    public int Replacement;
    /// <summary>Lone surrogates (from \uD800-style escapes) and Unicode noncharacters (U+FDD0–U+FDEF, U+xFFFE/F).</summary>
    public int Invalid;
    /// <summary>C0 controls other than tab, LF and CR; DEL; C1 controls (U+0080–U+009F, usually mis-decoded Windows-1252).</summary>
    public int Control;
    public WritingSystem Dominant;
    /// <summary>The second most frequent writing system holds at least <see cref="TextProfile.MixedScriptShare"/> of the letters.</summary>
    public bool MixedScript;
    /// <summary>Some word (a run of letters and combining marks) mixes writing systems other than CJK — the mark of
    /// homoglyphs such as a Cyrillic "а" inside a Latin word, or of encoding damage.</summary>
    public bool MixedScriptWord;
}

public static class TextProfile
{
    public const double MixedScriptShare = 0.10;

    /// <summary>Code point ranges of the writing systems; letters outside them are <see cref="WritingSystem.Other"/>.</summary>
    static readonly (int First, int Last, WritingSystem System)[] Ranges =
    [
        (0x0041, 0x005A, WritingSystem.Latin), (0x0061, 0x007A, WritingSystem.Latin), (0x00C0, 0x02AF, WritingSystem.Latin),
        (0x0370, 0x03FF, WritingSystem.Greek), (0x0400, 0x052F, WritingSystem.Cyrillic), (0x0530, 0x058F, WritingSystem.Armenian),
        (0x0590, 0x05FF, WritingSystem.Hebrew), (0x0600, 0x06FF, WritingSystem.Arabic), (0x0750, 0x077F, WritingSystem.Arabic),
        (0x08A0, 0x08FF, WritingSystem.Arabic), (0x0900, 0x0DFF, WritingSystem.Indic), (0x0E00, 0x0EFF, WritingSystem.Thai),
        (0x10A0, 0x10FF, WritingSystem.Georgian), (0x1100, 0x11FF, WritingSystem.Cjk), (0x1200, 0x139F, WritingSystem.Ethiopic),
        (0x1C80, 0x1C8F, WritingSystem.Cyrillic), (0x1C90, 0x1CBF, WritingSystem.Georgian), (0x1E00, 0x1EFF, WritingSystem.Latin),
        (0x1F00, 0x1FFF, WritingSystem.Greek), (0x2C60, 0x2C7F, WritingSystem.Latin), (0x2D00, 0x2D2F, WritingSystem.Georgian),
        (0x2D80, 0x2DDF, WritingSystem.Ethiopic), (0x2DE0, 0x2DFF, WritingSystem.Cyrillic), (0x2E80, 0x2FDF, WritingSystem.Cjk),
        (0x3005, 0x3007, WritingSystem.Cjk), (0x3021, 0x3029, WritingSystem.Cjk), (0x3031, 0x303C, WritingSystem.Cjk),
        (0x3040, 0x30FF, WritingSystem.Cjk), (0x3100, 0x318F, WritingSystem.Cjk), (0x31A0, 0x31FF, WritingSystem.Cjk),
        (0x3400, 0x4DBF, WritingSystem.Cjk), (0x4E00, 0x9FFF, WritingSystem.Cjk), (0xA640, 0xA69F, WritingSystem.Cyrillic),
        (0xA720, 0xA7FF, WritingSystem.Latin), (0xA960, 0xA97F, WritingSystem.Cjk), (0xAB30, 0xAB6F, WritingSystem.Latin),
        (0xAC00, 0xD7FF, WritingSystem.Cjk), (0xF900, 0xFAFF, WritingSystem.Cjk), (0xFB1D, 0xFB4F, WritingSystem.Hebrew),
        (0xFB50, 0xFDFF, WritingSystem.Arabic), (0xFE70, 0xFEFF, WritingSystem.Arabic), (0xFF21, 0xFF3A, WritingSystem.Latin),
        (0xFF41, 0xFF5A, WritingSystem.Latin), (0xFF66, 0xFF9F, WritingSystem.Cjk), (0xFFA0, 0xFFDC, WritingSystem.Cjk),
        (0x20000, 0x3FFFF, WritingSystem.Cjk),
    ];

    static readonly int SystemCount = Enum.GetValues<WritingSystem>().Length;

    /// <summary>The writing system of a letter.</summary>
    public static WritingSystem SystemOf(int codePoint)
    {
        if (codePoint < 0x80) return WritingSystem.Latin;
        int lo = 0, hi = Ranges.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (codePoint < Ranges[mid].First) hi = mid - 1;
            else if (codePoint > Ranges[mid].Last) lo = mid + 1;
            else return Ranges[mid].System;
        }
        return WritingSystem.Other;
    }

    public static TextFacts Analyze(string text)
    {
        var facts = new TextFacts { WhitespaceOnly = text.Length > 0 };
        Span<int> letters = stackalloc int[SystemCount];
        letters.Clear();
        // The current word's writing systems as a bit set, to spot words that mix them.
        int wordSystems = 0;
        const int cjkBit = 1 << (int)WritingSystem.Cjk;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            facts.CodePoints++;
            if (c < 0x80)
            {
                if (c is >= 'a' and <= 'z' or >= 'A' and <= 'Z')
                {
                    letters[(int)WritingSystem.Latin]++;
                    wordSystems |= 1 << (int)WritingSystem.Latin;
                    facts.WhitespaceOnly = false;
                    continue;
                }
                EndWord(ref facts, ref wordSystems);
                if (c < 0x20 ? c is not ('\t' or '\n' or '\r') : c == 0x7F) facts.Control++;
                if (facts.WhitespaceOnly && !char.IsWhiteSpace(c)) facts.WhitespaceOnly = false;
                continue;
            }
            facts.NonAscii++;
            int cp = c;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) cp = char.ConvertToUtf32(c, text[++i]);
            else if (char.IsSurrogate(c)) { facts.Invalid++; facts.WhitespaceOnly = false; EndWord(ref facts, ref wordSystems); continue; }
            if (facts.WhitespaceOnly && !(cp <= 0xFFFF && char.IsWhiteSpace((char)cp))) facts.WhitespaceOnly = false;
            if (cp == 0xFFFD) facts.Replacement++;
            else if (cp is >= 0xFDD0 and <= 0xFDEF || (cp & 0xFFFE) == 0xFFFE) facts.Invalid++;
            else if (cp is >= 0x80 and <= 0x9F) facts.Control++;
            var category = CharUnicodeInfo.GetUnicodeCategory(cp);
            if (category is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark) continue;
            if (category is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter)
            {
                var system = SystemOf(cp);
                letters[(int)system]++;
                wordSystems |= 1 << (int)system;
                continue;
            }
            EndWord(ref facts, ref wordSystems);
        }
        EndWord(ref facts, ref wordSystems);

        int first = 0, second = 0, total = 0;
        for (int s = 1; s < letters.Length; s++)
        {
            total += letters[s];
            if (letters[s] > letters[first]) { second = first; first = s; }
            else if (s != first && letters[s] > letters[second]) second = s;
        }
        facts.Dominant = letters[first] > 0 ? (WritingSystem)first : WritingSystem.None;
        facts.MixedScript = second != 0 && letters[second] > 0 && letters[second] >= MixedScriptShare * total;
        return facts;

        static void EndWord(ref TextFacts facts, ref int systems)
        {
            if ((systems & cjkBit) == 0 && (systems & (systems - 1)) != 0) facts.MixedScriptWord = true;
            systems = 0;
        }
    }

    /// <summary>A 128-bit content hash (SHA-256, truncated) of the text's UTF-16 code units, for in-process exact
    /// duplicate detection; collisions are out of reach at any data size.</summary>
    public static UInt128 ContentHash(string text)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(MemoryMarshal.AsBytes(text.AsSpan()), digest);
        return MemoryMarshal.Read<UInt128>(digest);
    }

    /// <summary>Code points of a text (a surrogate pair counts once, a lone surrogate once).</summary>
    public static int CodePoints(string text)
    {
        int n = text.Length;
        for (int i = 1; i < text.Length; i++)
            if (char.IsLowSurrogate(text[i]) && char.IsHighSurrogate(text[i - 1])) n--;
        return n;
    }

    /// <summary>UTF-8 length of a text.</summary>
    public static int Utf8Length(string text) => Encoding.UTF8.GetByteCount(text);
}
