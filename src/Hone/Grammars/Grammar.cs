using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;

namespace Hone.Grammars;

/// <summary>
/// A context-free grammar over the bytes of the output, compiled for matching: the rules flattened into positions,
/// matched as a pushdown automaton whose configurations (sets of stacks, as llama.cpp's) are interned, so each
/// distinct configuration is computed once and then looked up — per byte, and per token mask
/// (<see cref="GrammarMatcher"/>). Made from GBNF text (<see cref="ParseGbnf"/>) or a JSON Schema
/// (<see cref="FromJsonSchema"/>). Safe to share between threads and sequences: its tables grow under a lock.
/// </summary>
public sealed class Grammar
{
    // Positions: each rule's alternatives laid out one after another, each ending in End.
    // _element[p] ≥ 0: a byte set (index into _sets); End: end of an alternative; else a rule reference, -(rule + 2).
    const int End = -1;
    readonly int[] _element;
    readonly ulong[] _sets;                 // [set, 4] bits of the bytes each set holds
    readonly int[][] _alternatives;         // [rule] → first positions of its alternatives
    readonly string[] _ruleNames;
    readonly int[] _loopPosition, _budget;  // [position] the loop's position for a counted repetition's level, and the level

    /// <summary>Limits on the tables a pathological grammar could grow without end.</summary>
    public const int MaxNodes = 2_000_000, MaxStates = 200_000, MaxStacksPerState = 10_000;

    readonly Lock _lock = new();
    // Stack nodes: (position, parent node); parent Bottom = the empty stack below, Cut = a stack cut off below (for
    // masks that hold whatever lies below: popping into it "escapes"). Interned.
    const int Bottom = -1, Cut = -2;
    // How a set of stacks ends without consuming input: some stack empties (the grammar accepts), or pops into Cut.
    const int Accepting = 1, Escaping = 2;
    readonly List<int> _nodePosition = new(), _nodeParent = new();
    readonly Dictionary<long, int> _nodes = new();
    // For a node whose position is a byte set: the configuration after that byte is consumed there (memoized).
    readonly List<int[]?> _afterNodes = new();
    readonly List<int> _afterEnds = new();
    // Configurations: sorted node ids (each at a byte-set position) and whether the stack may be empty (the grammar
    // has matched a whole root). Interned; id 0 is the start.
    readonly List<int[]> _stateNodes = new();
    readonly List<int> _stateEnds = new();
    readonly Dictionary<StateKey, int> _states = new();
    readonly List<int[]?> _transitions = new(); // [state] → [256] next state, Unknown before computed, Dead when none
    readonly List<ulong[]?> _stateBytes = new(); // [state] → the bytes it can consume (4 words)
    internal const int Dead = -1, Unknown = -2;

    readonly ConditionalWeakTable<TokenVocabulary, GrammarTokenMasks> _masks = new();

    Grammar(RuleSet rules, int root, string text)
    {
        Text = text;
        Literals = rules.Literals.ToArray();
        var positions = new List<int>();
        _alternatives = new int[rules.Names.Count][];
        for (int r = 0; r < rules.Names.Count; r++)
        {
            var body = rules.Bodies[r]!;
            _alternatives[r] = new int[body.Length];
            for (int a = 0; a < body.Length; a++)
            {
                _alternatives[r][a] = positions.Count;
                foreach (var symbol in body[a]) positions.Add(symbol.IsBytes ? symbol.Set : -(symbol.Rule + 2));
                positions.Add(End);
            }
        }
        _element = positions.ToArray();
        // A counted repetition's level positions stand for the unbounded loop's, with the level as a budget.
        _loopPosition = new int[_element.Length];
        _budget = new int[_element.Length];
        Array.Fill(_loopPosition, -1);
        foreach (var (levelRule, (loop, level)) in rules.ChainLevels)
        {
            int a = _alternatives[levelRule][0], b = _alternatives[loop][0];
            for (int i = 0; i < 2; i++)
                if (_element[a + i] != End) { _loopPosition[a + i] = b + i; _budget[a + i] = level; }
        }
        _sets = new ulong[rules.Sets.Count * 4];
        for (int s = 0; s < rules.Sets.Count; s++) rules.Sets[s].CopyTo(_sets, s * 4);
        _ruleNames = rules.Names.ToArray();
        RootName = rules.Names[root];
        // The start configuration: the root's alternatives over the empty stack.
        var nodes = new List<int>();
        int ends = 0;
        var visited = new HashSet<long>();
        foreach (int start in _alternatives[root]) Expand(start, Bottom, visited, nodes, ref ends);
        Intern(nodes, ends);
    }

    /// <summary>The grammar as GBNF (the source text, or what a schema compiled to).</summary>
    public string Text { get; }

    /// <summary>The literal strings of the grammar: special tokens are matched only where a literal spells them.</summary>
    public IReadOnlyList<string> Literals { get; }

    public string RootName { get; }

    /// <summary>Parses llama.cpp GBNF. <paramref name="source"/> names the text in errors (a file name).</summary>
    /// <exception cref="GrammarException">a syntax error (line and column), an undefined, unproductive or
    /// left-recursive rule, or a missing root</exception>
    public static Grammar ParseGbnf(string text, string? source = null, string root = "root")
    {
        ArgumentNullException.ThrowIfNull(text);
        var rules = GbnfParser.Parse(text, source);
        if (!rules.TryGetRule(root, out int rootRule))
            throw new GrammarException($"{source ?? "grammar"}: there is no '{root}' rule (the rule generation starts from)");
        Validate(rules, source ?? "grammar");
        return new Grammar(rules, rootRule, text);
    }

    /// <summary>Reads a GBNF file, naming it in errors.</summary>
    public static Grammar FromGbnfFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: grammar file not found", path);
        return ParseGbnf(File.ReadAllText(path), path);
    }

    /// <summary>Reads a JSON Schema file (see <see cref="FromJsonSchema"/>), naming it in errors.</summary>
    /// <exception cref="GrammarException">the file is not JSON, holds null, or the schema cannot be enforced</exception>
    public static Grammar FromJsonSchemaFile(string path, JsonSchemaOptions? options = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: JSON Schema file not found", path);
        JsonNode schema;
        try { schema = JsonNode.Parse(File.ReadAllText(path)) ?? throw new GrammarException($"{path}: holds null, not a schema"); }
        catch (System.Text.Json.JsonException e) { throw new GrammarException($"{path}: not JSON: {e.Message}"); }
        try { return FromJsonSchema(schema, options); }
        catch (GrammarException e) { throw new GrammarException($"{path}: {e.Message}"); }
    }

    /// <summary>The grammar of JSON text valid under a JSON Schema (see <see cref="GbnfBuilder.AddJsonSchema"/> for
    /// the keywords enforced; any other keyword is refused by name).</summary>
    public static Grammar FromJsonSchema(JsonNode schema, JsonSchemaOptions? options = null)
    {
        var builder = new GbnfBuilder(options);
        string rule = builder.AddJsonSchema("root-value", schema);
        return ParseGbnf(builder.Build(rule), "schema");
    }

    /// <summary>Refuses rules that can never finish (every derivation is infinite) and left recursion (which a
    /// top-down matcher cannot run), naming the rule.</summary>
    static void Validate(RuleSet rules, string source)
    {
        int n = rules.Names.Count;
        var productive = new bool[n];
        var nullable = new bool[n];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < n; r++)
            {
                foreach (var alternative in rules.Bodies[r]!)
                {
                    if (!productive[r] && alternative.All(s => s.IsBytes || productive[s.Rule])) { productive[r] = true; changed = true; }
                    if (!nullable[r] && alternative.All(s => !s.IsBytes && nullable[s.Rule])) { nullable[r] = true; changed = true; }
                }
            }
        }
        for (int r = 0; r < n; r++)
            if (!productive[r])
                throw new GrammarException($"{rules.Origins[r]}: rule '{rules.Names[r]}' can never finish (every alternative recurses without end)");
        // Left-corner edges: r → s when s can come first in r (after nullable symbols only).
        var edges = new List<int>[n];
        for (int r = 0; r < n; r++)
        {
            edges[r] = new List<int>();
            foreach (var alternative in rules.Bodies[r]!)
                foreach (var symbol in alternative)
                {
                    if (symbol.IsBytes) break;
                    edges[r].Add(symbol.Rule);
                    if (!nullable[symbol.Rule]) break;
                }
        }
        var color = new byte[n]; // 0 unvisited, 1 on the path, 2 done
        var path = new List<int>();
        for (int r = 0; r < n; r++) Visit(r);

        void Visit(int r)
        {
            if (color[r] == 2) return;
            if (color[r] == 1)
            {
                var cycle = path.Skip(path.IndexOf(r)).Append(r).Select(i => rules.Names[i]);
                throw new GrammarException($"{rules.Origins[r]}: rule '{rules.Names[r]}' is left-recursive ({string.Join(" → ", cycle)}); rewrite it with a repetition");
            }
            color[r] = 1;
            path.Add(r);
            foreach (int s in edges[r]) Visit(s);
            path.RemoveAt(path.Count - 1);
            color[r] = 2;
        }
        _ = source;
    }

    /// <summary>Whether the whole text is a match of the grammar (bytes of its UTF-8).</summary>
    public bool Matches(string text) => Matches(System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>Whether the whole byte string is a match of the grammar.</summary>
    public bool Matches(ReadOnlySpan<byte> bytes)
    {
        lock (_lock)
        {
            int s = Run(Start, bytes);
            return s != Dead && Accepts(s);
        }
    }

    internal GrammarTokenMasks MasksFor(TokenVocabulary vocabulary) => _masks.GetValue(vocabulary, v => new GrammarTokenMasks(this, v));

    internal Lock Sync => _lock;

    // ---- the automaton ------------------------------------------------------------------------------------------

    int Node(int position, int parent)
    {
        long key = ((long)position << 32) | (uint)parent;
        if (_nodes.TryGetValue(key, out int id)) return id;
        if (_nodePosition.Count >= MaxNodes)
            throw new GrammarException($"the grammar's stacks grew past {MaxNodes} nodes (output nested too deep for it)");
        id = _nodePosition.Count;
        _nodePosition.Add(position);
        _nodeParent.Add(parent);
        _afterNodes.Add(null);
        _afterEnds.Add(0);
        _nodes[key] = id;
        return id;
    }

    /// <summary>Adds the stacks that (position, parent) reaches without consuming input: each ends at a byte set, or
    /// empties or pops into a cut (<paramref name="ends"/>). A reference followed by the end of its alternative does not
    /// push a return (tail call), so repetitions run in constant stack depth.</summary>
    void Expand(int position, int parent, HashSet<long> visited, List<int> nodes, ref int ends)
    {
        if (!visited.Add(((long)position << 32) | (uint)parent)) return;
        int element = _element[position];
        if (element >= 0) { nodes.Add(Node(position, parent)); return; }
        if (element == End)
        {
            if (parent == Bottom) ends |= Accepting;
            else if (parent == Cut) ends |= Escaping;
            else Expand(_nodePosition[parent], _nodeParent[parent], visited, nodes, ref ends);
            return;
        }
        int rule = -element - 2;
        int returnTo = _element[position + 1] == End ? parent : Node(position + 1, parent);
        foreach (int start in _alternatives[rule]) Expand(start, returnTo, visited, nodes, ref ends);
    }

    int Intern(List<int> nodes, int ends)
    {
        nodes.Sort();
        int w = 0;
        for (int i = 0; i < nodes.Count; i++)
            if (w == 0 || nodes[i] != nodes[w - 1]) nodes[w++] = nodes[i];
        nodes.RemoveRange(w, nodes.Count - w);
        if (nodes.Count > MaxStacksPerState)
            throw new GrammarException($"the grammar is too ambiguous: {nodes.Count} parses are alive at once (limit {MaxStacksPerState})");
        var key = new StateKey(nodes.ToArray(), ends);
        if (_states.TryGetValue(key, out int id)) return id;
        if (_stateNodes.Count >= MaxStates)
            throw new GrammarException($"the grammar reached {MaxStates} distinct states (output nested too deep for it)");
        id = _stateNodes.Count;
        _stateNodes.Add(key.Nodes);
        _stateEnds.Add(ends);
        _transitions.Add(null);
        _stateBytes.Add(null);
        _states[key] = id;
        return id;
    }

    internal const int Start = 0;

    /// <summary>The state after a run of bytes, or <see cref="Dead"/> at the first one that does not fit. Caller holds
    /// <see cref="Sync"/>.</summary>
    internal int Run(int state, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            state = Step(state, b);
            if (state == Dead) return Dead;
        }
        return state;
    }

    /// <summary>A state's transitions by byte, <see cref="Unknown"/> where not computed yet (then <see cref="Step"/>).</summary>
    internal int[] Row(int state)
    {
        var row = _transitions[state];
        if (row == null) { row = new int[256]; Array.Fill(row, Unknown); _transitions[state] = row; }
        return row;
    }

    /// <summary>The state after one byte, or <see cref="Dead"/>. Caller holds <see cref="Sync"/>.</summary>
    internal int Step(int state, byte b)
    {
        var row = _transitions[state];
        if (row == null) { row = new int[256]; Array.Fill(row, Unknown); _transitions[state] = row; }
        int next = row[b];
        if (next != Unknown) return next;
        var nodes = new List<int>();
        int ends = 0;
        foreach (int node in _stateNodes[state])
        {
            int set = _element[_nodePosition[node]];
            if ((_sets[set * 4 + (b >> 6)] & (1UL << (b & 63))) == 0) continue;
            var after = _afterNodes[node];
            if (after == null)
            {
                var found = new List<int>();
                int foundEnds = 0;
                Expand(_nodePosition[node] + 1, _nodeParent[node], new HashSet<long>(), found, ref foundEnds);
                after = found.ToArray();
                _afterNodes[node] = after;
                _afterEnds[node] = foundEnds;
            }
            nodes.AddRange(after);
            ends |= _afterEnds[node];
        }
        next = nodes.Count == 0 && ends == 0 ? Dead : Intern(nodes, ends);
        row[b] = next;
        return next;
    }

    /// <summary>The grammar may stop here (a whole root has been matched).</summary>
    internal bool Accepts(int state) => (_stateEnds[state] & Accepting) != 0;

    /// <summary>Some stack of a cut state popped into what was cut off: what follows depends on the real stack.</summary>
    internal bool Escapes(int state) => (_stateEnds[state] & Escaping) != 0;

    /// <summary>Nothing more can follow: the output is complete.</summary>
    internal bool IsComplete(int state) => Accepts(state) && _stateNodes[state].Length == 0;

    /// <summary>The bytes a state can consume next (4 words of bits; memoized): a walk skips every other byte without
    /// stepping.</summary>
    internal ulong[] NextBytes(int state)
    {
        if (_stateBytes[state] is { } known) return known;
        var bits = new ulong[4];
        foreach (int node in _stateNodes[state])
        {
            int set = _element[_nodePosition[node]];
            for (int w = 0; w < 4; w++) bits[w] |= _sets[set * 4 + w];
        }
        _stateBytes[state] = bits;
        return bits;
    }

    /// <summary>The stacks of a state (node ids).</summary>
    internal int[] StateNodes(int state) => _stateNodes[state];

    /// <summary>The state holding just one stack.</summary>
    internal int SingleStackState(int node) => Intern([node], 0);

    /// <summary>The stack of <paramref name="node"/> kept to its top <paramref name="depth"/> frames and cut below (or whole,
    /// when not deeper): masks computed from it hold for every stack with the same top, except for the tokens that
    /// reach below it, which <see cref="Escapes"/> marks.</summary>
    /// <param name="budget">the fewest items a counted repetition in the kept frames may still take (int.MaxValue:
    /// none): its levels are cut as the unbounded loop, so they share one classification, and a token longer than
    /// the budget in bytes must be checked on the real stack</param>
    internal int CutStack(int node, int depth, out int budget)
    {
        Span<int> positions = stackalloc int[depth];
        int n = 0, at = node;
        budget = int.MaxValue;
        while (at >= 0 && n < depth)
        {
            int position = _nodePosition[at];
            if (_loopPosition[position] >= 0) { budget = Math.Min(budget, _budget[position]); position = _loopPosition[position]; }
            positions[n++] = position;
            at = _nodeParent[at];
        }
        int parent = at >= 0 ? Cut : Bottom;
        for (int i = n - 1; i >= 0; i--) parent = Node(positions[i], parent);
        return parent;
    }

    internal int StateCount => _stateNodes.Count;

    readonly record struct StateKey(int[] Nodes, int Ends)
    {
        public bool Equals(StateKey other) => Ends == other.Ends && Nodes.AsSpan().SequenceEqual(other.Nodes);
        public override int GetHashCode()
        {
            var hash = new HashCode();
            hash.Add(Ends);
            foreach (int n in Nodes) hash.Add(n);
            return hash.ToHashCode();
        }
    }
}
