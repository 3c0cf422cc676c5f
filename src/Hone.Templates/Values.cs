using System.Collections;

namespace Hone.Tokenization.Templates;

// Runtime values. Python's types map to: None -> null, bool, int -> long, float -> double, str -> string, list -> List<object?>,
// tuple -> TupleValue, dict -> DictValue; the rest are the Jinja objects below. Nothing else ever reaches the renderer
// (inputs are converted by ValueConversion), so every operation can switch over this closed set.

/// <summary>Jinja's default Undefined: prints as "", is false, iterates as empty; any other use raises with a message saying why it is undefined.</summary>
internal sealed class UndefinedValue
{
    readonly string? hint;
    readonly bool hasOwner;
    readonly object? owner;
    readonly object? key;
    readonly TemplateErrorKind kind;

    UndefinedValue(string? hint, bool hasOwner, object? owner, object? key, TemplateErrorKind kind = TemplateErrorKind.Undefined)
    {
        this.hint = hint;
        this.hasOwner = hasOwner;
        this.owner = owner;
        this.key = key;
        this.kind = kind;
    }

    public static UndefinedValue Named(string name) => new(null, false, null, name);
    public static UndefinedValue Member(object? owner, object? key) => new(null, true, owner, key);
    public static UndefinedValue WithHint(string hint) => new(hint, false, null, null);

    /// <summary>The sandbox's answer to a mutating method (list.append): using it raises SecurityError.</summary>
    public static UndefinedValue Unsafe(object? owner, string attribute) =>
        new($"access to attribute '{attribute}' of '{PythonOps.TypeName(owner)}' object is unsafe.", true, owner, attribute, TemplateErrorKind.Security);

    public string Message
    {
        get
        {
            if (hint != null) return hint;
            if (!hasOwner) return $"{PythonFormat.Repr(key)} is undefined";
            if (key is not string) return $"{PythonOps.ObjectTypeRepr(owner)} has no element {PythonFormat.Repr(key)}";
            return $"{PythonFormat.Repr(PythonOps.ObjectTypeRepr(owner))} has no attribute {PythonFormat.Repr(key)}";
        }
    }

    public TemplateException Error() => new(kind, Message);
}

internal sealed class TupleValue(object?[] items) : IReadOnlyList<object?>
{
    public static readonly TupleValue Empty = new([]);
    public object?[] Items { get; } = items;
    public int Count => Items.Length;
    public object? this[int index] => Items[index];
    public IEnumerator<object?> GetEnumerator() => ((IEnumerable<object?>)Items).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => Items.GetEnumerator();
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality (1 == 1.0 == True), None allowed as a key.</summary>
internal sealed class DictValue
{
    static readonly object NoneKey = new();
    readonly OrderedDictionary<object, object?> entries;

    public DictValue() => entries = new OrderedDictionary<object, object?>(KeyComparer.Instance);
    public DictValue(int capacity) => entries = new OrderedDictionary<object, object?>(capacity, KeyComparer.Instance);

    public int Count => entries.Count;

    public void Set(object? key, object? value)
    {
        PythonOps.RequireHashable(key);
        entries[key ?? NoneKey] = value;
    }

    public bool TryGet(object? key, out object? value)
    {
        if (!PythonOps.IsHashable(key)) { value = null; return false; }
        return entries.TryGetValue(key ?? NoneKey, out value);
    }

    public bool ContainsKey(object? key)
    {
        PythonOps.RequireHashable(key);
        return entries.ContainsKey(key ?? NoneKey);
    }

    public IEnumerable<object?> Keys => entries.Keys.Select(k => k == NoneKey ? null : k);
    public IEnumerable<object?> Values => entries.Values;
    public IEnumerable<KeyValuePair<object?, object?>> Items => entries.Select(e => new KeyValuePair<object?, object?>(e.Key == NoneKey ? null : e.Key, e.Value));

    public DictValue Copy()
    {
        var copy = new DictValue(Count);
        foreach (var (key, value) in entries) copy.entries.Add(key, value);
        return copy;
    }

    sealed class KeyComparer : IEqualityComparer<object>
    {
        public static readonly KeyComparer Instance = new();
        public new bool Equals(object? x, object? y) => ReferenceEquals(x, y) || (x != NoneKey && y != NoneKey && PythonOps.AreEqual(x, y));
        public int GetHashCode(object obj) => obj == NoneKey ? 0 : PythonOps.Hash(obj);
    }
}

/// <summary>What <c>dict.keys()</c>, <c>.values()</c> and <c>.items()</c> return: a live, re-iterable view.</summary>
internal sealed class DictViewValue(DictValue dict, DictViewKind kind)
{
    public DictValue Dict { get; } = dict;
    public DictViewKind Kind { get; } = kind;
    public string TypeName => Kind switch { DictViewKind.Keys => "dict_keys", DictViewKind.Values => "dict_values", _ => "dict_items" };

    public IEnumerable<object?> Iterate() => Kind switch
    {
        DictViewKind.Keys => Dict.Keys,
        DictViewKind.Values => Dict.Values,
        _ => Dict.Items.Select(e => (object?)new TupleValue([e.Key, e.Value])),
    };
}

internal enum DictViewKind { Keys, Values, Items }

/// <summary>A Python range object (what the sandboxed <c>range()</c> returns).</summary>
internal sealed class RangeValue(long start, long stop, long step)
{
    public long Start { get; } = start;
    public long Stop { get; } = stop;
    public long Step { get; } = step;
    public long Count => Step > 0 ? (Stop > Start ? (Stop - Start + Step - 1) / Step : 0) : (Start > Stop ? (Start - Stop - Step - 1) / -Step : 0);
    public long this[long index] => Start + index * Step;

    public IEnumerable<object?> Iterate()
    {
        for (long i = 0, n = Count; i < n; i++) yield return this[i];
    }
}

/// <summary>
/// A one-shot Python iterator: what select, map, items, unique, batch and reverse return. Like a generator it is always true,
/// has no length, and is exhausted once iterated.
/// </summary>
internal sealed class IteratorValue(string typeName, IEnumerable<object?> source)
{
    IEnumerator<object?>? enumerator;
    public string TypeName { get; } = typeName;

    public IEnumerable<object?> Drain()
    {
        enumerator ??= source.GetEnumerator();
        while (enumerator.MoveNext()) yield return enumerator.Current;
    }
}

/// <summary>Jinja's <c>namespace()</c>: the one object templates may assign attributes on, so values survive loop scopes.</summary>
internal sealed class NamespaceValue
{
    public OrderedDictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>A <c>safe</c>-marked string (markupsafe.Markup). Concatenating a plain string to it escapes the plain string, as in Jinja.</summary>
internal sealed record MarkupValue(string Text);

/// <summary>A macro bound to the scope it was defined in.</summary>
internal sealed class MacroValue(MacroDefinition definition, Scope closure)
{
    public MacroDefinition Definition { get; } = definition;
    public Scope Closure { get; } = closure;
}

/// <summary>A built-in function (range, dict, namespace, raise_exception, strftime_now, loop.cycle...).</summary>
internal sealed class FunctionValue(string name, Func<Renderer, CallArguments, object?> invoke)
{
    public string Name { get; } = name;
    public object? Invoke(Renderer renderer, CallArguments arguments) => invoke(renderer, arguments);
}

/// <summary><c>receiver.name</c> where name is a Python method of str, list or dict: called through <see cref="Methods"/>.</summary>
internal sealed record BoundMethodValue(object? Receiver, string Name);

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class LoopValue(IReadOnlyList<object?> items)
{
    public IReadOnlyList<object?> Items { get; } = items;
    public int Index0 { get; set; }
    /// <summary>What loop.changed() was last called with (null before the first call).</summary>
    public TupleValue? LastChangedValue { get; set; }
    public int Length => Items.Count;
}

/// <summary>Arguments of a call: positional values and keyword values in call order.</summary>
internal sealed class CallArguments(List<object?> positional, List<KeyValuePair<string, object?>> named)
{
    public static readonly object Missing = new();
    public static readonly CallArguments None = new([], []); // shared: arguments are never modified after a call is set up

    public List<object?> Positional { get; } = positional;
    public List<KeyValuePair<string, object?>> Named { get; } = named;

    /// <summary>
    /// Binds to a Python-style signature: <paramref name="parameters"/> in order, the first <paramref name="required"/> mandatory.
    /// Absent optional parameters come back as <see cref="Missing"/>.
    /// </summary>
    public object?[] Bind(string function, string[] parameters, int required = 0)
    {
        if (Positional.Count > parameters.Length)
            throw new TemplateException(TemplateErrorKind.Type, $"{function}() takes at most {parameters.Length} argument{(parameters.Length == 1 ? "" : "s")} ({Positional.Count} given)");
        var values = new object?[parameters.Length];
        Array.Fill(values, Missing);
        for (var i = 0; i < Positional.Count; i++) values[i] = Positional[i];
        foreach (var (key, value) in Named)
        {
            var at = Array.IndexOf(parameters, key);
            if (at < 0) throw new TemplateException(TemplateErrorKind.Type, $"{function}() got an unexpected keyword argument '{key}'");
            if (values[at] != Missing) throw new TemplateException(TemplateErrorKind.Type, $"{function}() got multiple values for argument '{key}'");
            values[at] = value;
        }
        for (var i = 0; i < required; i++)
            if (values[i] == Missing) throw new TemplateException(TemplateErrorKind.Type, $"{function}() missing required argument: '{parameters[i]}'");
        return values;
    }

    public void RequireNone(string function)
    {
        if (Positional.Count > 0 || Named.Count > 0) throw new TemplateException(TemplateErrorKind.Type, $"{function}() takes no arguments");
    }
}

/// <summary>Variables visible at a point of rendering: a chain of frames (template, loop iteration, macro call, with block).</summary>
internal sealed class Scope(Scope? parent)
{
    Dictionary<string, object?>? variables;
    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var scope = this; scope != null; scope = scope.Parent)
            if (scope.variables != null && scope.variables.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => (variables ??= new Dictionary<string, object?>(StringComparer.Ordinal))[name] = value;
}
