namespace Hone.Tokenization.Templates;

/// <summary>A test: <c>value is name(arguments)</c>.</summary>
internal delegate bool TestFunction(object? value, CallArguments arguments);

/// <summary>The test table: Jinja 3.1's built-in tests (tests.py), with Python's type rules (bool is a number, a string is iterable...).</summary>
internal static class Tests
{
    static readonly Dictionary<string, TestFunction> Table = new(StringComparer.Ordinal)
    {
        ["odd"] = (v, a) => PythonOps.AreEqual(PythonOps.Binary(BinaryOperator.Modulo, v, 2L), 1L),
        ["even"] = (v, a) => PythonOps.AreEqual(PythonOps.Binary(BinaryOperator.Modulo, v, 2L), 0L),
        ["divisibleby"] = (v, a) => PythonOps.AreEqual(PythonOps.Binary(BinaryOperator.Modulo, v, Argument(a, "divisibleby", "num")), 0L),
        ["defined"] = (v, _) => v is not UndefinedValue,
        ["undefined"] = (v, _) => v is UndefinedValue,
        ["filter"] = (v, _) => v is string name && Filters.Exists(name),
        ["test"] = (v, _) => v is string name && Table!.ContainsKey(name),
        ["none"] = (v, _) => v is null,
        ["boolean"] = (v, _) => v is bool,
        ["false"] = (v, _) => v is false,
        ["true"] = (v, _) => v is true,
        ["integer"] = (v, _) => v is long,
        ["float"] = (v, _) => v is double,
        ["lower"] = (v, _) => PythonStrings.IsLower(PythonFormat.Str(v)),
        ["upper"] = (v, _) => PythonStrings.IsUpper(PythonFormat.Str(v)),
        ["string"] = (v, _) => v is string or MarkupValue,
        ["mapping"] = (v, _) => v is DictValue,
        ["number"] = (v, _) => PythonOps.IsNumber(v),
        // Python: len() and __getitem__ both work. Undefined has both (its __getitem__ raises, but exists).
        ["sequence"] = (v, _) => v is string or MarkupValue or List<object?> or TupleValue or DictValue or RangeValue or UndefinedValue,
        ["iterable"] = (v, _) => PythonOps.IsIterable(v),
        ["callable"] = (v, _) => v is MacroValue or FunctionValue or BoundMethodValue or UndefinedValue or LoopValue,
        ["sameas"] = (v, a) => SameAs(v, Argument(a, "sameas", "other")),
        ["escaped"] = (v, _) => v is MarkupValue,
        ["in"] = (v, a) => PythonOps.Contains(Argument(a, "in", "seq"), v),
        ["=="] = Compare(CompareOperator.Equal),
        ["eq"] = Compare(CompareOperator.Equal),
        ["equalto"] = Compare(CompareOperator.Equal),
        ["!="] = Compare(CompareOperator.NotEqual),
        ["ne"] = Compare(CompareOperator.NotEqual),
        [">"] = Compare(CompareOperator.Greater),
        ["gt"] = Compare(CompareOperator.Greater),
        ["greaterthan"] = Compare(CompareOperator.Greater),
        [">="] = Compare(CompareOperator.GreaterOrEqual),
        ["ge"] = Compare(CompareOperator.GreaterOrEqual),
        ["<"] = Compare(CompareOperator.Less),
        ["lt"] = Compare(CompareOperator.Less),
        ["lessthan"] = Compare(CompareOperator.Less),
        ["<="] = Compare(CompareOperator.LessOrEqual),
        ["le"] = Compare(CompareOperator.LessOrEqual),
    };

    public static TestFunction? Find(string name) => Table.GetValueOrDefault(name);

    static object? Argument(CallArguments arguments, string test, string parameter) => arguments.Bind(test, [parameter], 1)[0];

    static TestFunction Compare(CompareOperator op) => (v, a) =>
    {
        var other = Argument(a, "compare", "other");
        return op switch
        {
            CompareOperator.Equal => PythonOps.AreEqual(v, other),
            CompareOperator.NotEqual => !PythonOps.AreEqual(v, other),
            _ => PythonOps.Compare(v, other, op),
        };
    };

    /// <summary>Python's <c>is</c>: singletons by value, small ints as CPython caches them, everything else by reference.</summary>
    static bool SameAs(object? value, object? other) => (value, other) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        (long x, long y) => x == y && x is >= -5 and <= 256,
        _ => ReferenceEquals(value, other),
    };
}
