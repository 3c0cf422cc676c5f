using System.Globalization;
using System.Text;

namespace Hone.Grammars;

/// <summary>
/// A JSON Schema <c>pattern</c> (ECMA-262 syntax, the common subset) as GBNF over the content of a JSON string:
/// literals, escapes (\d \w \s and their negations, \n \t \r \f \v, \xHH, \uHHHH, escaped metacharacters), classes
/// with ranges and negation, <c>.</c>, groups (capturing, <c>(?:</c>, named), alternation and the quantifiers
/// <c>* + ? {m} {m,} {m,n}</c> (lazy ones match the same strings). A pattern matches anywhere in the string unless
/// anchored, so an unanchored end matches any text. Anything else (lookaround, backreferences, \b, anchors inside)
/// is refused by name. Characters a JSON string must escape are written with their canonical escapes.
/// </summary>
internal sealed class RegexToGbnf
{
    const int MaxCount = 1000;
    readonly GbnfBuilder _builder;
    readonly string _pattern;
    readonly string _path;
    readonly string _hint;
    int _pos;

    public RegexToGbnf(GbnfBuilder builder, string pattern, string path, string hint)
    {
        _builder = builder;
        _pattern = pattern;
        _path = path;
        _hint = hint;
    }

    GrammarException Error(string message) => new($"JSON Schema at {_path}: pattern '{_pattern}' at offset {_pos}: {message}");

    public string Convert()
    {
        bool anchoredStart = _pattern.StartsWith('^');
        if (anchoredStart) _pos = 1;
        string body = Alternation();
        bool anchoredEnd = false;
        if (_pos < _pattern.Length && _pattern[_pos] == '$' && _pos == _pattern.Length - 1) { anchoredEnd = true; _pos++; }
        if (_pos < _pattern.Length) throw Error($"unexpected '{_pattern[_pos]}'");
        string chars = _builder.Primitive("json-char");
        return $"{(anchoredStart ? "" : chars + "* ")}({body}){(anchoredEnd ? "" : " " + chars + "*")}";
    }

    char? Peek => _pos < _pattern.Length ? _pattern[_pos] : null;

    string Alternation()
    {
        var alternatives = new List<string> { Sequence() };
        while (Peek == '|')
        {
            _pos++;
            alternatives.Add(Sequence());
        }
        return string.Join(" | ", alternatives.Select(a => a.Length == 0 ? "\"\"" : a));
    }

    string Sequence()
    {
        var items = new List<string>();
        while (Peek is char c && c != '|' && c != ')')
        {
            if (c == '$' && _pos == _pattern.Length - 1) break;
            string atom = Atom();
            items.Add(Quantified(atom));
        }
        return string.Join(" ", items);
    }

    string Quantified(string atom)
    {
        if (Peek is not char q) return atom;
        string result;
        switch (q)
        {
            case '*': _pos++; result = $"({atom})*"; break;
            case '+': _pos++; result = $"({atom})+"; break;
            case '?': _pos++; result = $"({atom})?"; break;
            case '{' when IsCount():
                _pos++;
                int min = Number(), max = min;
                bool open = false;
                if (Peek == ',') { _pos++; if (Peek == '}') open = true; else max = Number(); }
                if (Peek != '}') throw Error("expected '}'");
                _pos++;
                if (!open && max < min) throw Error($"{{{min},{max}}}: the maximum is below the minimum");
                if (min > MaxCount || max > MaxCount) throw Error($"counts over {MaxCount} are not enforced");
                result = open ? $"({atom}){{{min},}}" : $"({atom}){{{min},{max}}}";
                break;
            default: return atom;
        }
        if (Peek == '?') _pos++; // lazy: the same strings
        if (Peek is '*' or '+' or '?' || (Peek == '{' && IsCount())) throw Error("a quantifier cannot follow a quantifier");
        return result;
    }

    bool IsCount()
    {
        int i = _pos + 1;
        int digits = 0;
        while (i < _pattern.Length && char.IsAsciiDigit(_pattern[i])) { i++; digits++; }
        return digits > 0 && i < _pattern.Length && (_pattern[i] == '}' || _pattern[i] == ',');
    }

    int Number()
    {
        int start = _pos;
        while (Peek is char c && char.IsAsciiDigit(c)) _pos++;
        if (start == _pos || !int.TryParse(_pattern.AsSpan(start, _pos - start), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            throw Error("expected a count");
        return n;
    }

    string Atom()
    {
        char c = _pattern[_pos];
        switch (c)
        {
            case '(':
                _pos++;
                if (Peek == '?')
                {
                    if (_pos + 1 < _pattern.Length && _pattern[_pos + 1] == ':') _pos += 2;
                    else if (_pos + 1 < _pattern.Length && _pattern[_pos + 1] == '<' && _pos + 2 < _pattern.Length && _pattern[_pos + 2] is not ('=' or '!'))
                    {
                        int close = _pattern.IndexOf('>', _pos);
                        if (close < 0) throw Error("unterminated group name");
                        _pos = close + 1;
                    }
                    else throw Error("lookaround and other (?...) groups are not supported");
                }
                string inner = Alternation();
                if (Peek != ')') throw Error("expected ')'");
                _pos++;
                return $"({(inner.Length == 0 ? "\"\"" : inner)})";
            case '[':
                return Set(Class());
            case '.':
                _pos++;
                return Set(GbnfParser.Complement(GbnfParser.Merge([(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)])));
            case '\\':
                return Escape(inClass: false) is var (ranges, _) ? Set(ranges) : throw Error("bad escape");
            case '^': throw Error("'^' is only supported at the start of the pattern");
            case '$': throw Error("'$' is only supported at the end of the pattern");
            case '*' or '+' or '?' or '{': throw Error($"'{c}' has nothing to repeat");
            default:
                int cp = char.ConvertToUtf32(_pattern, _pos);
                _pos += char.IsSurrogatePair(_pattern, _pos) ? 2 : 1;
                return Set([(cp, cp)]);
        }
    }

    /// <summary>An escape at _pos (the backslash): its code point ranges, and whether it is a single character.</summary>
    (List<(int Lo, int Hi)> Ranges, bool Single) Escape(bool inClass)
    {
        _pos++;
        if (Peek is not char e) throw Error("the pattern ends in a backslash");
        _pos++;
        List<(int, int)> Digit = [('0', '9')];
        List<(int, int)> Word = [('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
        List<(int, int)> Space = [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)];
        switch (e)
        {
            case 'd': return (Digit, false);
            case 'D': return (GbnfParser.Complement(Digit), false);
            case 'w': return (Word, false);
            case 'W': return (GbnfParser.Complement(Word), false);
            case 's': return (Space, false);
            case 'S': return (GbnfParser.Complement(GbnfParser.Merge(Space)), false);
            case 'n': return ([(0x0A, 0x0A)], true);
            case 't': return ([(0x09, 0x09)], true);
            case 'r': return ([(0x0D, 0x0D)], true);
            case 'f': return ([(0x0C, 0x0C)], true);
            case 'v': return ([(0x0B, 0x0B)], true);
            case '0': return ([(0, 0)], true);
            case 'x': return Single(Hex(2));
            case 'u': return Single(Hex(4));
            case 'b' when inClass: return ([(0x08, 0x08)], true);
            case 'b' or 'B': throw Error("word boundaries (\\b, \\B) are not supported");
            case >= '1' and <= '9': throw Error("backreferences are not supported");
            default:
                if (char.IsAsciiLetterOrDigit(e)) throw Error($"escape '\\{e}' is not supported");
                return Single(e);
        }
    }

    static (List<(int, int)>, bool) Single(int c) => ([(c, c)], true);

    int Hex(int digits)
    {
        if (_pos + digits > _pattern.Length || !int.TryParse(_pattern.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int v))
            throw Error($"expected {digits} hexadecimal digits");
        _pos += digits;
        return v;
    }

    List<(int Lo, int Hi)> Class()
    {
        _pos++; // [
        bool negated = Peek == '^';
        if (negated) _pos++;
        var ranges = new List<(int, int)>();
        bool first = true;
        while (true)
        {
            if (Peek is not char c) throw Error("unterminated character class");
            if (c == ']' && !first) { _pos++; break; }
            if (c == ']' && first) { _pos++; if (!negated) throw Error("empty character class"); ranges.Add((0, 0x10FFFF)); negated = false; break; }
            first = false;
            var (lo, single) = ClassItem();
            if (single && Peek == '-' && _pos + 1 < _pattern.Length && _pattern[_pos + 1] != ']')
            {
                _pos++;
                var (hi, singleHi) = ClassItem();
                if (!singleHi) throw Error("a range cannot end in a class escape");
                if (hi[0].Lo < lo[0].Lo) throw Error("the range is backwards");
                ranges.Add((lo[0].Lo, hi[0].Lo));
            }
            else ranges.AddRange(lo);
        }
        var merged = GbnfParser.Merge(ranges);
        return negated ? GbnfParser.Complement(merged) : merged;
    }

    (List<(int Lo, int Hi)>, bool) ClassItem()
    {
        if (_pattern[_pos] == '\\') return Escape(inClass: true);
        int cp = char.ConvertToUtf32(_pattern, _pos);
        _pos += char.IsSurrogatePair(_pattern, _pos) ? 2 : 1;
        return ([(cp, cp)], true);
    }

    /// <summary>GBNF for one JSON string character (raw or escaped) whose decoded value is in the ranges.</summary>
    string Set(List<(int Lo, int Hi)> ranges)
    {
        ranges = GbnfParser.Merge(ranges);
        var plain = new List<(int Lo, int Hi)>();
        var escaped = new List<string>();
        foreach (var (lo, hi) in ranges)
        {
            for (int c = lo; c <= Math.Min(hi, 0x7F); c++)
                if (c < 0x20 || c == '"' || c == '\\' || c == 0x7F) escaped.Add(GbnfBuilder.Literal(JsonEscape(c)));
            // Plain: the range without the characters JSON escapes.
            int start = lo;
            foreach (int special in (int[])['"', '\\', 0x7F])
                if (special >= start && special <= hi)
                {
                    if (special > start) plain.Add((start, special - 1));
                    start = special + 1;
                }
            start = Math.Max(start, 0x20);
            if (start <= hi) plain.Add((start, hi));
        }
        var alternatives = new List<string>();
        plain = GbnfParser.Merge(plain.Where(r => r.Lo <= r.Hi && !(r.Lo == '"' && r.Hi == '"')).ToList());
        plain = plain.SelectMany(r => Without(r, '"')).SelectMany(r => Without(r, '\\')).SelectMany(r => Without(r, 0x7F)).ToList();
        if (plain.Count > 0)
        {
            var s = new StringBuilder("[");
            foreach (var (lo, hi) in plain) s.Append(lo == hi ? $"\\U{lo:X8}" : $"\\U{lo:X8}-\\U{hi:X8}");
            alternatives.Add(s.Append(']').ToString());
        }
        alternatives.AddRange(escaped);
        if (alternatives.Count == 0) throw Error("a class matches no character");
        return alternatives.Count == 1 ? alternatives[0] : $"({string.Join(" | ", alternatives)})";
    }

    static IEnumerable<(int Lo, int Hi)> Without((int Lo, int Hi) r, int c)
    {
        if (c < r.Lo || c > r.Hi) { yield return r; yield break; }
        if (r.Lo < c) yield return (r.Lo, c - 1);
        if (c < r.Hi) yield return (c + 1, r.Hi);
    }

    /// <summary>A character JSON escapes (DEL too: the grammar's string characters leave it out raw).</summary>
    static string JsonEscape(int c) => c == 0x7F ? "\\u007f" : JsonSchemaConverter.JsonEscapeChar(c);
}
