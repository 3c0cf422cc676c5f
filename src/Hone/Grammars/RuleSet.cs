namespace Hone.Grammars;

/// <summary>One symbol of a rule's alternative: a set of bytes (one byte of input) or a reference to a rule.</summary>
internal readonly record struct Symbol(int Value)
{
    public static Symbol Bytes(int set) => new(set);
    public static Symbol Reference(int rule) => new(-rule - 1);
    public bool IsBytes => Value >= 0;
    public int Set => Value;
    public int Rule => -Value - 1;
}

/// <summary>
/// A grammar over bytes as rules of alternatives of symbols: what GBNF text compiles to before it is flattened into
/// the matcher's tables. Groups, repetitions and non-ASCII character classes become generated rules (named after the
/// rule they appear in, as llama.cpp names them).
/// </summary>
internal sealed class RuleSet
{
    public readonly List<string> Names = new();
    /// <summary>[rule][alternative] → symbols; null while a rule is referenced but not yet defined.</summary>
    public readonly List<List<Symbol>[]?> Bodies = new();
    /// <summary>Where each rule was first referenced or defined (for errors), "line L".</summary>
    public readonly List<string> Origins = new();
    /// <summary>Byte sets, each 256 bits as 4 words.</summary>
    public readonly List<ulong[]> Sets = new();
    /// <summary>The literal strings the grammar holds (a special token is only matched where a literal spells it).</summary>
    public readonly HashSet<string> Literals = new(StringComparer.Ordinal);
    /// <summary>Counted repetitions: each level rule of a chain (level = how many items it may still take) and the
    /// unbounded loop of the same item, so token masks can be shared between the levels.</summary>
    public readonly Dictionary<int, (int Loop, int Level)> ChainLevels = new();
    readonly Dictionary<string, int> _rules = new(StringComparer.Ordinal);
    readonly Dictionary<(ulong, ulong, ulong, ulong), int> _sets = new();
    readonly Dictionary<string, int> _classRules = new(StringComparer.Ordinal);

    public const int MaxRules = 200_000;
    public const int MaxSymbols = 2_000_000;
    int _symbols;

    public int Rule(string name, string origin)
    {
        if (_rules.TryGetValue(name, out int id)) return id;
        if (Names.Count >= MaxRules) throw new GrammarException($"the grammar has more than {MaxRules} rules (after expanding repetitions)");
        id = Names.Count;
        _rules[name] = id;
        Names.Add(name);
        Bodies.Add(null);
        Origins.Add(origin);
        return id;
    }

    public bool TryGetRule(string name, out int id) => _rules.TryGetValue(name, out id);

    /// <summary>A new rule named after <paramref name="baseName"/> (base~1, base~2, ...: '~' keeps generated names apart
    /// from every name a grammar can spell).</summary>
    public int NewRule(string baseName, string origin, List<Symbol>[] body)
    {
        for (int n = 1; ; n++)
        {
            string name = $"{baseName}~{n}";
            if (_rules.ContainsKey(name)) continue;
            int id = Rule(name, origin);
            Define(id, body);
            return id;
        }
    }

    public void Define(int rule, List<Symbol>[] body)
    {
        foreach (var alternative in body)
        {
            _symbols += alternative.Count + 1;
            if (_symbols > MaxSymbols) throw new GrammarException($"the grammar has more than {MaxSymbols} symbols (after expanding repetitions)");
        }
        Bodies[rule] = body;
    }

    public int Set(ulong a, ulong b, ulong c, ulong d)
    {
        if (_sets.TryGetValue((a, b, c, d), out int id)) return id;
        id = Sets.Count;
        Sets.Add([a, b, c, d]);
        _sets[(a, b, c, d)] = id;
        return id;
    }

    public int ByteSet(byte lo, byte hi)
    {
        Span<ulong> words = stackalloc ulong[4];
        for (int b = lo; b <= hi; b++) words[b >> 6] |= 1UL << (b & 63);
        return Set(words[0], words[1], words[2], words[3]);
    }

    public Symbol Byte(byte b) => Symbol.Bytes(ByteSet(b, b));

    /// <summary>Symbols for a character class given as sorted, merged code point ranges: one byte set when every
    /// character is ASCII, else a rule with one alternative per UTF-8 byte-range sequence (shared by equal classes).</summary>
    public Symbol CharacterClass(List<(int Lo, int Hi)> ranges, string origin)
    {
        if (ranges.Count == 0) throw new GrammarException($"{origin}: a character class matches no character");
        string key = string.Join(',', ranges.Select(r => $"{r.Lo:x}-{r.Hi:x}"));
        if (_classRules.TryGetValue(key, out int cached)) return Symbol.Reference(cached);
        Span<ulong> single = stackalloc ulong[4];
        bool anySingle = false;
        var multi = new List<List<Symbol>>();
        foreach (var (lo, hi) in ranges)
            foreach (var sequence in Utf8Ranges.Sequences(lo, hi))
            {
                if (sequence.Length == 1)
                {
                    for (int b = sequence[0].Lo; b <= sequence[0].Hi; b++) single[b >> 6] |= 1UL << (b & 63);
                    anySingle = true;
                    continue;
                }
                multi.Add(sequence.Select(r => Symbol.Bytes(ByteSet(r.Lo, r.Hi))).ToList());
            }
        var singleSymbol = anySingle ? Symbol.Bytes(Set(single[0], single[1], single[2], single[3])) : default;
        if (multi.Count == 0 && !anySingle) throw new GrammarException($"{origin}: a character class matches no character (only surrogates)");
        if (multi.Count == 0) return singleSymbol;
        if (anySingle) multi.Insert(0, [singleSymbol]);
        int rule = NewRule("char", origin, multi.ToArray());
        _classRules[key] = rule;
        return Symbol.Reference(rule);
    }
}
