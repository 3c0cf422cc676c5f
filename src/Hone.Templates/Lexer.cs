using System.Globalization;
using System.Text;

namespace Hone.Tokenization.Templates;

internal enum TokenKind
{
    Text, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End,
}

/// <param name="Text">the literal text for Text tokens, the operator or name itself, the source spelling of numbers</param>
/// <param name="Value">decoded string, long or double for literals</param>
internal readonly record struct Token(TokenKind Kind, string Text, object? Value, SourcePosition Position)
{
    public bool Is(TokenKind kind, string text) => Kind == kind && Text == text;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;
    public bool IsOperator(string op) => Kind == TokenKind.Operator && Text == op;
}

/// <summary>
/// Splits a template into tokens exactly as Jinja's lexer does with Hugging Face's settings (trim_blocks, lstrip_blocks, default
/// delimiters, keep_trailing_newline off): newlines normalized to \n, one trailing newline dropped, <c>-</c>/<c>+</c> whitespace
/// control, comments removed, <c>{% raw %}</c> passed through.
/// </summary>
internal sealed class Lexer
{
    static readonly string[] Operators =
        ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"];

    readonly string source;
    readonly string? name;
    readonly int[] lineStarts;
    readonly List<Token> tokens = [];
    int position;
    bool lineStarting = true; // Jinja: did the previous match end with a newline (lstrip_blocks applies at the very start too)

    Lexer(string source, string? name)
    {
        this.source = Normalize(source);
        this.name = name;
        var starts = new List<int> { 0 };
        for (var i = 0; i < this.source.Length; i++) if (this.source[i] == '\n') starts.Add(i + 1);
        lineStarts = [.. starts];
    }

    public static List<Token> Tokenize(string source, string? name)
    {
        var lexer = new Lexer(source, name);
        lexer.Run();
        return lexer.tokens;
    }

    static string Normalize(string source)
    {
        var text = source.Contains('\r') ? source.Replace("\r\n", "\n").Replace('\r', '\n') : source;
        return text.EndsWith('\n') ? text[..^1] : text;
    }

    SourcePosition At(int offset)
    {
        var line = Array.BinarySearch(lineStarts, offset);
        if (line < 0) line = ~line - 1;
        return new SourcePosition(line + 1, offset - lineStarts[line] + 1);
    }

    TemplateSyntaxException Error(string reason, int offset) => new(reason, name, At(offset));

    internal static bool IsWhitespace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f'; // Python's str.isspace

    void Run()
    {
        while (position < source.Length)
        {
            var start = FindTagStart(position);
            if (start < 0)
            {
                Emit(TokenKind.Text, source[position..], null, position);
                break;
            }
            var kind = source[start + 1];
            var signOffset = start + 2;
            var sign = signOffset < source.Length && source[signOffset] is '-' or '+' ? source[signOffset] : '\0';
            var text = source[position..start];
            if (sign == '-') text = TrimEndWhitespace(text);
            else if (sign != '+' && kind != '{') text = LeftStripped(text);
            if (text.Length > 0) Emit(TokenKind.Text, text, null, position);
            position = signOffset + (sign == '\0' ? 0 : 1);
            switch (kind)
            {
                case '#': SkipComment(start); break;
                case '%' when TryRaw(start): break;
                case '%': TagContents(start, TokenKind.BlockBegin, TokenKind.BlockEnd, '%'); break;
                default: TagContents(start, TokenKind.VariableBegin, TokenKind.VariableEnd, '}'); break;
            }
        }
        tokens.Add(new Token(TokenKind.End, "", null, At(source.Length)));
    }

    int FindTagStart(int from)
    {
        for (var i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
            if (source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>lstrip_blocks: whitespace between the start of a line and a block or comment tag is removed.</summary>
    string LeftStripped(string text)
    {
        var lineStart = text.LastIndexOf('\n') + 1;
        if (lineStart == 0 && !lineStarting) return text;
        if (lineStart == text.Length) return text;
        for (var i = lineStart; i < text.Length; i++) if (!IsWhitespace(text[i])) return text;
        return text[..lineStart];
    }

    /// <summary>Python's rstrip(): string.TrimEnd() misses \x1c-\x1f.</summary>
    static string TrimEndWhitespace(string text)
    {
        var end = text.Length;
        while (end > 0 && IsWhitespace(text[end - 1])) end--;
        return text[..end];
    }

    int SkipWhitespace(int from)
    {
        while (from < source.Length && IsWhitespace(source[from])) from++;
        return from;
    }

    /// <summary>After a tag: <c>-%}</c> eats all following whitespace, a plain end (block or comment) eats one newline (trim_blocks).</summary>
    int AfterTagEnd(int endStart, int endLength, char sign, bool trimBlocks)
    {
        var next = endStart + endLength;
        if (sign == '-') next = SkipWhitespace(next);
        else if (sign != '+' && trimBlocks && next < source.Length && source[next] == '\n') next++;
        lineStarting = next > 0 && source[next - 1] == '\n';
        return next;
    }

    void SkipComment(int start)
    {
        var close = source.IndexOf("#}", position, StringComparison.Ordinal);
        if (close < 0) throw Error("Missing end of comment tag", start);
        var sign = close > position && source[close - 1] is '-' or '+' ? source[close - 1] : '\0';
        position = AfterTagEnd(close, 2, sign, trimBlocks: true);
    }

    /// <summary><c>{% raw %}...{% endraw %}</c>: the body is text, tags in it are not interpreted.</summary>
    bool TryRaw(int start)
    {
        var at = SkipWhitespace(position);
        if (string.CompareOrdinal(source, at, "raw", 0, 3) != 0) return false;
        at = SkipWhitespace(at + 3);
        int bodyStart;
        if (string.CompareOrdinal(source, at, "-%}", 0, 3) == 0) bodyStart = SkipWhitespace(at + 3);
        else if (string.CompareOrdinal(source, at, "%}", 0, 2) == 0) bodyStart = at + 2;
        else return false;
        for (var search = bodyStart; ;)
        {
            var tag = source.IndexOf("{%", search, StringComparison.Ordinal);
            if (tag < 0) throw Error("Missing end of raw directive", start);
            var sign = tag + 2 < source.Length && source[tag + 2] is '-' or '+' ? source[tag + 2] : '\0';
            var cursor = SkipWhitespace(tag + 2 + (sign == '\0' ? 0 : 1));
            if (string.CompareOrdinal(source, cursor, "endraw", 0, 6) == 0)
            {
                cursor = SkipWhitespace(cursor + 6);
                var endSign = source.Length > cursor && source[cursor] is '-' or '+' ? source[cursor] : '\0';
                var close = cursor + (endSign == '\0' ? 0 : 1);
                if (string.CompareOrdinal(source, close, "%}", 0, 2) == 0)
                {
                    var body = source[bodyStart..tag];
                    lineStarting = bodyStart > 0 && source[bodyStart - 1] == '\n';
                    if (sign == '-') body = TrimEndWhitespace(body);
                    else if (sign != '+') body = LeftStripped(body);
                    if (body.Length > 0) Emit(TokenKind.Text, body, null, bodyStart);
                    position = AfterTagEnd(close, 2, endSign, trimBlocks: true);
                    return true;
                }
            }
            search = tag + 2;
        }
    }

    void TagContents(int start, TokenKind begin, TokenKind end, char closer)
    {
        Emit(begin, source.Substring(start, 2), null, start);
        var brackets = new Stack<char>();
        while (true)
        {
            if (position >= source.Length)
                throw Error(begin == TokenKind.BlockBegin ? "unexpected end of template, expected end of statement block" : "unexpected end of template, expected end of print statement", start);
            if (brackets.Count == 0 && TryTagEnd(end, closer)) return;
            var c = source[position];
            if (IsWhitespace(c)) { position++; continue; }
            var tokenStart = position;
            if (char.IsAsciiDigit(c) && TryNumber()) continue;
            if (char.IsLetter(c) || c == '_')
            {
                while (position < source.Length && (char.IsLetterOrDigit(source[position]) || source[position] == '_')) position++;
                Emit(TokenKind.Name, source[tokenStart..position], null, tokenStart);
                continue;
            }
            if (c is '\'' or '"' && TryString(c)) continue;
            var op = Operators.FirstOrDefault(o => string.CompareOrdinal(source, position, o, 0, o.Length) == 0)
                ?? throw Error($"unexpected char {PythonFormat.Repr(c.ToString())} at {position}", position);
            switch (op)
            {
                case "(": brackets.Push(')'); break;
                case "[": brackets.Push(']'); break;
                case "{": brackets.Push('}'); break;
                case ")" or "]" or "}":
                    if (brackets.Count == 0) throw Error($"unexpected '{op}'", position);
                    var expected = brackets.Pop();
                    if (expected != op[0]) throw Error($"unexpected '{op}', expected '{expected}'", position);
                    break;
            }
            position += op.Length;
            Emit(TokenKind.Operator, op, null, tokenStart);
        }
    }

    bool TryTagEnd(TokenKind end, char closer)
    {
        var close = closer == '%' ? "%}" : "}}";
        var sign = source[position] is '-' or '+' ? source[position] : '\0';
        if (sign == '+' && closer == '}') return false; // Jinja has no "+}}"
        var at = position + (sign == '\0' ? 0 : 1);
        if (string.CompareOrdinal(source, at, close, 0, 2) != 0) return false;
        Emit(end, close, null, position);
        position = AfterTagEnd(at, 2, sign, trimBlocks: closer == '%');
        return true;
    }

    bool TryNumber()
    {
        var start = position;
        if (start > 0 && source[start - 1] == '.') return TryInteger(start); // Jinja: a float never follows a dot (items.0.1)
        var at = Digits(start);
        var isFloat = false;
        if (at < source.Length - 1 && source[at] == '.' && char.IsAsciiDigit(source[at + 1])) { at = Digits(at + 1); isFloat = true; }
        if (at < source.Length && source[at] is 'e' or 'E')
        {
            var exponent = at + 1;
            if (exponent < source.Length && source[exponent] is '+' or '-') exponent++;
            if (exponent < source.Length && char.IsAsciiDigit(source[exponent])) { at = Digits(exponent); isFloat = true; }
        }
        if (!isFloat) return TryInteger(start);
        var spelling = source[start..at];
        Emit(TokenKind.Float, spelling, double.Parse(spelling.Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture), start);
        position = at;
        return true;
    }

    /// <summary>Digits with single underscores between them, as Python literals allow.</summary>
    int Digits(int at)
    {
        while (true)
        {
            while (at < source.Length && char.IsAsciiDigit(source[at])) at++;
            if (at + 1 < source.Length && source[at] == '_' && char.IsAsciiDigit(source[at + 1])) { at++; continue; }
            return at;
        }
    }

    bool TryInteger(int start)
    {
        var at = start;
        int radix = 10;
        if (source[at] == '0' && at + 1 < source.Length && char.ToLowerInvariant(source[at + 1]) is 'b' or 'o' or 'x')
        {
            radix = char.ToLowerInvariant(source[at + 1]) switch { 'b' => 2, 'o' => 8, _ => 16 };
            var digitsStart = at + 2;
            at = digitsStart;
            while (at < source.Length)
            {
                var c = source[at] == '_' && at + 1 < source.Length ? source[at + 1] : source[at];
                if (!IsDigitIn(c, radix)) break;
                at += source[at] == '_' ? 2 : 1;
            }
            if (at == digitsStart) { at = start + 1; radix = 10; } // "0x" alone lexes as 0 then a name
        }
        else if (source[at] == '0')
        {
            at++;
            while (at < source.Length && (source[at] == '0' || (source[at] == '_' && at + 1 < source.Length && source[at + 1] == '0'))) at += source[at] == '_' ? 2 : 1;
        }
        else at = Digits(at);
        var spelling = source[start..at];
        var digits = spelling.Replace("_", "");
        if (radix != 10) digits = digits[2..];
        long value = 0;
        foreach (var c in digits)
        {
            var digit = c <= '9' ? c - '0' : char.ToLowerInvariant(c) - 'a' + 10;
            if (value > (long.MaxValue - digit) / radix) throw Error($"integer literal {spelling} does not fit in 64 bits", start);
            value = value * radix + digit;
        }
        Emit(TokenKind.Integer, spelling, value, start);
        position = at;
        return true;
    }

    static bool IsDigitIn(char c, int radix) => radix switch
    {
        2 => c is '0' or '1',
        8 => c is >= '0' and <= '7',
        _ => char.IsAsciiHexDigit(c),
    };

    bool TryString(char quote)
    {
        var start = position;
        var at = start + 1;
        while (at < source.Length && source[at] != quote) at += source[at] == '\\' ? 2 : 1;
        if (at >= source.Length) return false; // unterminated: Jinja reports the quote as an unexpected char
        Emit(TokenKind.String, source[start..(at + 1)], Unescape(source[(start + 1)..at], start), start);
        position = at + 1;
        return true;
    }

    /// <summary>Python's unicode-escape decoding, which Jinja applies to string literals.</summary>
    string Unescape(string body, int offset)
    {
        if (!body.Contains('\\')) return body;
        var result = new StringBuilder(body.Length);
        for (var i = 0; i < body.Length; i++)
        {
            var c = body[i];
            if (c != '\\' || i + 1 >= body.Length) { result.Append(c); continue; }
            var e = body[++i];
            switch (e)
            {
                case '\n': break;
                case '\\' or '\'' or '"': result.Append(e); break;
                case 'a': result.Append('\a'); break;
                case 'b': result.Append('\b'); break;
                case 'f': result.Append('\f'); break;
                case 'n': result.Append('\n'); break;
                case 'r': result.Append('\r'); break;
                case 't': result.Append('\t'); break;
                case 'v': result.Append('\v'); break;
                case >= '0' and <= '7':
                    var octal = 0;
                    var count = 0;
                    for (; count < 3 && i < body.Length && body[i] is >= '0' and <= '7'; count++, i++) octal = octal * 8 + body[i] - '0';
                    i--;
                    result.Append((char)octal);
                    break;
                case 'x': AppendCodePoint(result, HexEscape(body, ref i, 2, offset)); break;
                case 'u': AppendCodePoint(result, HexEscape(body, ref i, 4, offset)); break;
                case 'U': AppendCodePoint(result, HexEscape(body, ref i, 8, offset)); break;
                case 'N': throw Error("\\N{...} escapes are not supported", offset);
                default: result.Append('\\').Append(e); break;
            }
        }
        return result.ToString();
    }

    static void AppendCodePoint(StringBuilder result, int codePoint)
    {
        if (codePoint is >= 0xD800 and <= 0xDFFF) result.Append((char)codePoint); // Python allows lone surrogates
        else result.Append(char.ConvertFromUtf32(codePoint));
    }

    int HexEscape(string body, ref int i, int length, int offset)
    {
        var digits = i + 1 + length <= body.Length ? body.Substring(i + 1, length) : "";
        if (digits.Length != length || !digits.All(char.IsAsciiHexDigit))
            throw Error($"(unicode error) 'unicodeescape' codec can't decode bytes: truncated \\{body[i]}{new string('X', length)} escape", offset);
        var value = int.Parse(digits, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        if (value > 0x10FFFF) throw Error("(unicode error) 'unicodeescape' codec can't decode bytes: illegal Unicode character", offset);
        i += length;
        return value;
    }

    void Emit(TokenKind kind, string text, object? value, int offset) => tokens.Add(new Token(kind, text, value, At(offset)));
}
