using System.Globalization;
using System.Text;

namespace Hone.Grammars;

/// <summary>
/// llama.cpp's GBNF: <c>name ::= alternatives</c> rules, "literals" with \n \t \r \\ \" \xHH \uHHHH \UHHHHHHHH escapes,
/// [character classes] (ranges, ^ negation), <c>.</c> (any character), groups, <c>| * + ?</c> and <c>{m}</c>,
/// <c>{m,}</c>, <c>{m,n}</c> repetitions, and <c>#</c> comments. As in llama.cpp, a rule ends at the end of its line
/// unless inside parentheses or after <c>|</c> or <c>::=</c>. Errors name the line and column.
/// </summary>
internal sealed class GbnfParser
{
    /// <summary>The largest repetition count accepted ({m,n}); each counted copy is a rule.</summary>
    public const int MaxRepetition = 10_000;

    readonly string _text;
    readonly string _source;
    readonly RuleSet _rules;
    int _pos;

    GbnfParser(string text, string source, RuleSet rules)
    {
        _text = text;
        _source = source;
        _rules = rules;
    }

    public static RuleSet Parse(string text, string? source)
    {
        var rules = new RuleSet();
        var parser = new GbnfParser(text, source ?? "grammar", rules);
        parser.ParseRules();
        return rules;
    }

    (int Line, int Column) Where(int pos)
    {
        int line = 1, column = 1;
        for (int i = 0; i < pos && i < _text.Length; i++)
            if (_text[i] == '\n') { line++; column = 1; } else column++;
        return (line, column);
    }

    GrammarException Error(string message, int? at = null)
    {
        var (line, column) = Where(at ?? _pos);
        return new GrammarException($"{_source}:{line}:{column}: {message}");
    }

    string Origin(int pos) => $"{_source}:{Where(pos).Line}";

    bool AtEnd => _pos >= _text.Length;
    char Peek => _pos < _text.Length ? _text[_pos] : '\0';

    /// <summary>Skips spaces, tabs, comments, and newlines where <paramref name="newlines"/>.</summary>
    void SkipSpace(bool newlines)
    {
        while (_pos < _text.Length)
        {
            char c = _text[_pos];
            if (c is ' ' or '\t') _pos++;
            else if (c == '#') { while (_pos < _text.Length && _text[_pos] != '\n' && _text[_pos] != '\r') _pos++; }
            else if (newlines && c is '\n' or '\r') _pos++;
            else break;
        }
    }

    static bool IsWordChar(char c) => c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9' or '-' or '_';

    string Word()
    {
        int start = _pos;
        while (_pos < _text.Length && IsWordChar(_text[_pos])) _pos++;
        if (_pos == start) throw Error($"expected a rule name, found {Describe(Peek)}");
        return _text[start.._pos];
    }

    static string Describe(char c) => c == '\0' ? "the end of the grammar" : c is '\n' or '\r' ? "the end of the line" : $"'{c}'";

    void ParseRules()
    {
        SkipSpace(true);
        if (AtEnd) throw Error("the grammar is empty");
        while (!AtEnd)
        {
            int start = _pos;
            string name = Word();
            SkipSpace(false);
            if (string.CompareOrdinal(_text, _pos, "::=", 0, 3) != 0) throw Error($"expected '::=' after rule name '{name}', found {Describe(Peek)}");
            _pos += 3;
            SkipSpace(true);
            int rule = _rules.Rule(name, Origin(start));
            if (_rules.Bodies[rule] != null) throw Error($"rule '{name}' is defined twice", start);
            _rules.Origins[rule] = Origin(start);
            _rules.Define(rule, Alternatives(name, nested: false));
            if (!AtEnd && Peek is not ('\n' or '\r')) throw Error($"unexpected {Describe(Peek)} in rule '{name}'");
            SkipSpace(true);
        }
        for (int r = 0; r < _rules.Names.Count; r++)
            if (_rules.Bodies[r] == null) throw new GrammarException($"{_rules.Origins[r]}: rule '{_rules.Names[r]}' is used but never defined");
    }

    List<Symbol>[] Alternatives(string rule, bool nested)
    {
        var alternatives = new List<List<Symbol>> { Sequence(rule, nested) };
        while (Peek == '|')
        {
            _pos++;
            SkipSpace(true);
            alternatives.Add(Sequence(rule, nested));
        }
        return alternatives.ToArray();
    }

    List<Symbol> Sequence(string rule, bool nested)
    {
        var items = new List<Symbol>();
        int lastStart = -1; // where the last atom's symbols begin in items (for a repetition after it)
        while (!AtEnd)
        {
            int at = _pos;
            char c = Peek;
            if (c == '"')
            {
                lastStart = items.Count;
                string literal = Literal();
                _rules.Literals.Add(literal);
                foreach (byte b in Encoding.UTF8.GetBytes(literal)) items.Add(_rules.Byte(b));
            }
            else if (c == '[')
            {
                lastStart = items.Count;
                items.Add(_rules.CharacterClass(CharacterClass(), Origin(at)));
            }
            else if (c == '.')
            {
                _pos++;
                lastStart = items.Count;
                items.Add(_rules.CharacterClass([(0, 0x10FFFF)], Origin(at)));
            }
            else if (IsWordChar(c))
            {
                lastStart = items.Count;
                items.Add(Symbol.Reference(_rules.Rule(Word(), Origin(at))));
            }
            else if (c == '(')
            {
                _pos++;
                SkipSpace(true);
                var body = Alternatives(rule, nested: true);
                if (Peek != ')') throw Error($"expected ')' to close the group opened at line {Where(at).Line} column {Where(at).Column}, found {Describe(Peek)}");
                _pos++;
                lastStart = items.Count;
                items.Add(Symbol.Reference(_rules.NewRule(rule, Origin(at), body)));
            }
            else if (c is '*' or '+' or '?' or '{')
            {
                if (lastStart < 0) throw Error($"'{c}' has nothing before it to repeat");
                var (min, max) = Repetition();
                Repeat(items, lastStart, min, max, rule, Origin(at));
                lastStart = -1;
            }
            else if (c == '<')
                throw Error("token references (<...>, <[id]>) are not supported; write the token's text as a \"literal\"");
            else break;
            SkipSpace(nested);
        }
        if (!AtEnd && Peek is not ('|' or ')' or '\n' or '\r'))
            throw Error($"unexpected {Describe(Peek)} in rule '{rule}'");
        return items;
    }

    (int Min, int Max) Repetition()
    {
        char c = _text[_pos++];
        switch (c)
        {
            case '*': return (0, -1);
            case '+': return (1, -1);
            case '?': return (0, 1);
        }
        SkipSpace(false);
        int min = Integer();
        SkipSpace(false);
        int max = min;
        if (Peek == ',')
        {
            _pos++;
            SkipSpace(false);
            max = char.IsAsciiDigit(Peek) ? Integer() : -1;
            SkipSpace(false);
        }
        if (Peek != '}') throw Error($"expected '}}' to close the repetition, found {Describe(Peek)}");
        _pos++;
        if (max >= 0 && max < min) throw Error($"repetition {{{min},{max}}}: the maximum is below the minimum");
        return (min, max);
    }

    int Integer()
    {
        int start = _pos;
        while (char.IsAsciiDigit(Peek)) _pos++;
        if (_pos == start) throw Error($"expected a number, found {Describe(Peek)}");
        if (!int.TryParse(_text.AsSpan(start, _pos - start), NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value > MaxRepetition)
            throw Error($"repetition count {_text[start.._pos]} is over the limit of {MaxRepetition}", start);
        return value;
    }

    /// <summary>Replaces the atom at items[start..] with <paramref name="min"/> copies and then up to max − min optional
    /// ones (or any number, max = -1), as llama.cpp expands repetitions.</summary>
    void Repeat(List<Symbol> items, int start, int min, int max, string rule, string origin)
    {
        var atom = items.GetRange(start, items.Count - start);
        items.RemoveRange(start, items.Count - start);
        Symbol single = atom.Count == 1 ? atom[0] : Symbol.Reference(_rules.NewRule(rule, origin, [atom]));
        for (int i = 0; i < min; i++) items.Add(single);
        if (max < 0)
        {
            // star ::= atom star | ε  (right recursion, which the matcher runs as a loop)
            int star = _rules.Rule(FreshName(rule), origin);
            _rules.Define(star, [[single, Symbol.Reference(star)], []]);
            items.Add(Symbol.Reference(star));
            return;
        }
        if (max == min) return;
        // rest_k ::= atom rest_{k+1} | ε, built from the innermost out (level 1 takes one more item, level 2 two, ...).
        int loop = -1;
        if (max - min >= 2)
        {
            // The same item unbounded, never reached from the root: the level rules' token masks are taken from its.
            loop = _rules.Rule(FreshName(rule), origin);
            _rules.Define(loop, [[single, Symbol.Reference(loop)], []]);
        }
        Symbol? inner = null;
        for (int level = 1; level <= max - min; level++)
        {
            var first = new List<Symbol> { single };
            if (inner is Symbol next) first.Add(next);
            int levelRule = _rules.NewRule(rule, origin, [first, []]);
            if (loop >= 0) _rules.ChainLevels[levelRule] = (loop, level);
            inner = Symbol.Reference(levelRule);
        }
        items.Add(inner!.Value);
    }

    string FreshName(string rule)
    {
        for (int n = 1; ; n++)
            if (!_rules.TryGetRule($"{rule}~{n}", out _)) return $"{rule}~{n}";
    }

    string Literal()
    {
        int start = _pos;
        _pos++; // opening quote
        var text = new StringBuilder();
        while (true)
        {
            if (AtEnd || Peek is '\n' or '\r') throw Error("unterminated string literal", start);
            char c = _text[_pos];
            if (c == '"') { _pos++; return text.ToString(); }
            text.Append(char.ConvertFromUtf32(Character()));
        }
    }

    /// <summary>One character of a literal or class, escapes decoded, as a code point.</summary>
    int Character()
    {
        int at = _pos;
        char c = _text[_pos];
        if (c != '\\')
        {
            if (char.IsHighSurrogate(c) && _pos + 1 < _text.Length && char.IsLowSurrogate(_text[_pos + 1]))
            {
                _pos += 2;
                return char.ConvertToUtf32(c, _text[_pos - 1]);
            }
            if (char.IsSurrogate(c)) throw Error("an unpaired surrogate is not a character");
            _pos++;
            return c;
        }
        _pos++;
        if (AtEnd) throw Error("the escape at the end of the grammar is incomplete", at);
        char e = _text[_pos++];
        switch (e)
        {
            case 'n': return '\n';
            case 't': return '\t';
            case 'r': return '\r';
            case '\\': case '"': case '[': case ']': case '-': case '^': case '/': case '\'': return e;
            case 'x': return Hex(2, at);
            case 'u': return Hex(4, at);
            case 'U': return Hex(8, at);
            default: throw Error($"unknown escape '\\{e}'", at);
        }
    }

    int Hex(int digits, int at)
    {
        if (_pos + digits > _text.Length || !int.TryParse(_text.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value))
            throw Error($"escape needs {digits} hexadecimal digits", at);
        _pos += digits;
        if (value > 0x10FFFF || value is >= 0xD800 and <= 0xDFFF) throw Error($"escape U+{value:X} is not a character", at);
        return value;
    }

    /// <summary>A [class] as sorted, merged code point ranges (negation applied).</summary>
    List<(int Lo, int Hi)> CharacterClass()
    {
        int start = _pos;
        _pos++; // [
        bool negated = false;
        if (Peek == '^') { negated = true; _pos++; }
        var ranges = new List<(int, int)>();
        while (true)
        {
            if (AtEnd || Peek is '\n' or '\r') throw Error("unterminated character class", start);
            if (Peek == ']') { _pos++; break; }
            int lo = Character(), hi = lo;
            if (Peek == '-' && _pos + 1 < _text.Length && _text[_pos + 1] != ']')
            {
                _pos++;
                hi = Character();
                if (hi < lo) throw Error($"range U+{lo:X}-U+{hi:X} is backwards");
            }
            ranges.Add((lo, hi));
        }
        if (ranges.Count == 0 && !negated) throw Error("empty character class", start);
        var merged = Merge(ranges);
        return negated ? Complement(merged) : merged;
    }

    internal static List<(int Lo, int Hi)> Merge(List<(int Lo, int Hi)> ranges)
    {
        ranges.Sort();
        var merged = new List<(int Lo, int Hi)>();
        foreach (var (lo, hi) in ranges)
        {
            if (merged.Count > 0 && lo <= merged[^1].Hi + 1) merged[^1] = (merged[^1].Lo, Math.Max(merged[^1].Hi, hi));
            else merged.Add((lo, hi));
        }
        return merged;
    }

    internal static List<(int Lo, int Hi)> Complement(List<(int Lo, int Hi)> merged)
    {
        var result = new List<(int, int)>();
        int next = 0;
        foreach (var (lo, hi) in merged)
        {
            if (lo > next) result.Add((next, lo - 1));
            next = hi + 1;
        }
        if (next <= 0x10FFFF) result.Add((next, 0x10FFFF));
        return result;
    }
}
