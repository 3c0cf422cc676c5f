using System.Runtime.CompilerServices;

namespace Hone.Tokenization.Templates;

/// <summary>
/// Python's semantics for the closed set of template values: truth, equality, hashing, ordering, arithmetic, iteration, length,
/// membership, and Jinja's sandboxed attribute/item access. Error messages are worded like CPython 3.11's.
/// </summary>
internal static class PythonOps
{
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        MarkupValue => "Markup",
        List<object?> => "list",
        TupleValue => "tuple",
        DictValue => "dict",
        UndefinedValue => "Undefined",
        NamespaceValue => "Namespace",
        LoopValue => "LoopContext",
        MacroValue => "Macro",
        FunctionValue => "function",
        BoundMethodValue => "builtin_function_or_method",
        RangeValue => "range",
        IteratorValue iterator => iterator.TypeName,
        DictViewValue view => view.TypeName,
        SliceKey => "slice",
        _ => value.GetType().Name,
    };

    /// <summary>Jinja's object_type_repr, used in "... has no attribute ..." messages.</summary>
    public static string ObjectTypeRepr(object? value) => value switch
    {
        null => "None",
        MarkupValue => "markupsafe.Markup object",
        UndefinedValue => "jinja2.runtime.Undefined object",
        NamespaceValue => "jinja2.utils.Namespace object",
        LoopValue => "jinja2.runtime.LoopContext object",
        MacroValue => "jinja2.runtime.Macro object",
        _ => TypeName(value) + " object",
    };

    public static TemplateException TypeError(string message) => new(TemplateErrorKind.Type, message);

    public static bool IsNumber(object? value) => value is long or double or bool;

    public static bool TryGetText(object? value, out string text)
    {
        switch (value)
        {
            case string s: text = s; return true;
            case MarkupValue m: text = m.Text; return true;
            default: text = ""; return false;
        }
    }

    /// <summary>Integers (bool counts, as in Python) as a long.</summary>
    public static bool TryGetInteger(object? value, out long result)
    {
        switch (value)
        {
            case long l: result = l; return true;
            case bool b: result = b ? 1 : 0; return true;
            default: result = 0; return false;
        }
    }

    static double ToDouble(object? value) => value switch { double d => d, long l => l, bool b => b ? 1 : 0, _ => double.NaN };

    static void ThrowIfUndefined(object? left, object? right)
    {
        if (left is UndefinedValue a) throw a.Error();
        if (right is UndefinedValue b) throw b.Error();
    }

    // ------------------------------------------------------------------------------------------------- truth and equality

    public static bool IsTrue(object? value) => value switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        MarkupValue m => m.Text.Length > 0,
        List<object?> list => list.Count > 0,
        TupleValue tuple => tuple.Count > 0,
        DictValue dict => dict.Count > 0,
        DictViewValue view => view.Dict.Count > 0,
        RangeValue range => range.Count > 0,
        UndefinedValue => false,
        _ => true,
    };

    public static bool AreEqual(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            if (TryGetInteger(a, out var x) && TryGetInteger(b, out var y)) return x == y;
            return ToDouble(a) == ToDouble(b);
        }
        if (TryGetText(a, out var s) && TryGetText(b, out var t)) return s == t;
        switch (a, b)
        {
            case (null, null): return true;
            case (UndefinedValue, UndefinedValue): return true;
            case (List<object?> x, List<object?> y): return SequenceEqual(x, y);
            case (TupleValue x, TupleValue y): return SequenceEqual(x, y);
            case (DictValue x, DictValue y):
                RuntimeHelpers.EnsureSufficientExecutionStack(); // values nested a million deep are a RecursionError, not a crash
                if (x.Count != y.Count) return false;
                foreach (var (key, value) in x.Items)
                    if (!y.TryGet(key, out var other) || !AreEqual(value, other)) return false;
                return true;
            case (RangeValue x, RangeValue y): return SequenceEqual([.. x.Iterate()], [.. y.Iterate()]);
            default: return a is not null && a.Equals(b);
        }
    }

    static bool SequenceEqual(IReadOnlyList<object?> x, IReadOnlyList<object?> y)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        if (x.Count != y.Count) return false;
        for (var i = 0; i < x.Count; i++) if (!AreEqual(x[i], y[i])) return false;
        return true;
    }

    public static bool IsHashable(object? value) => value switch
    {
        List<object?> or DictValue or DictViewValue => false,
        TupleValue tuple => tuple.Items.All(IsHashable),
        _ => true,
    };

    public static void RequireHashable(object? value)
    {
        if (!IsHashable(value)) throw TypeError($"unhashable type: '{TypeName(value is TupleValue t ? t.Items.First(i => !IsHashable(i)) : value)}'");
    }

    /// <summary>Consistent with <see cref="AreEqual"/>: 1, 1.0 and True hash alike.</summary>
    public static int Hash(object? value)
    {
        switch (value)
        {
            case null: return 0;
            case bool b: return b ? 1 : 0;
            case long l: return l.GetHashCode();
            case double d: return d == Math.Floor(d) && Math.Abs(d) < 9.2e18 ? ((long)d).GetHashCode() : d.GetHashCode();
            case string s: return s.GetHashCode();
            case MarkupValue m: return m.Text.GetHashCode();
            case TupleValue tuple:
                RuntimeHelpers.EnsureSufficientExecutionStack();
                var hash = new HashCode();
                foreach (var item in tuple.Items) hash.Add(Hash(item));
                return hash.ToHashCode();
            case UndefinedValue: return 17;
            default: return RuntimeHelpers.GetHashCode(value);
        }
    }

    // --------------------------------------------------------------------------------------------------------- ordering

    /// <summary>Python's rich comparison for &lt; &lt;= &gt; &gt;=; <paramref name="op"/> names the operator in the error.</summary>
    public static bool Compare(object? a, object? b, CompareOperator op)
    {
        ThrowIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b) && !(TryGetInteger(a, out _) && TryGetInteger(b, out _)))
        {
            double x = ToDouble(a), y = ToDouble(b);
            return op switch { CompareOperator.Less => x < y, CompareOperator.LessOrEqual => x <= y, CompareOperator.Greater => x > y, _ => x >= y };
        }
        var order = Order(a, b, op);
        return op switch { CompareOperator.Less => order < 0, CompareOperator.LessOrEqual => order <= 0, CompareOperator.Greater => order > 0, _ => order >= 0 };
    }

    static string Symbol(CompareOperator op) => op switch
    {
        CompareOperator.Less => "<", CompareOperator.LessOrEqual => "<=", CompareOperator.Greater => ">", _ => ">=",
    };

    /// <summary>Total order used by sort, min and max: numbers, strings (by code point), lists and tuples (lexicographic).</summary>
    public static int Order(object? a, object? b, CompareOperator op = CompareOperator.Less)
    {
        ThrowIfUndefined(a, b);
        if (TryGetInteger(a, out var x) && TryGetInteger(b, out var y)) return x.CompareTo(y);
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a).CompareTo(ToDouble(b));
        if (TryGetText(a, out var s) && TryGetText(b, out var t)) return PythonStrings.CompareCodePoints(s, t);
        switch (a, b)
        {
            case (List<object?> l, List<object?> m): return OrderSequences(l, m, op);
            case (TupleValue l, TupleValue m): return OrderSequences(l, m, op);
        }
        throw TypeError($"'{Symbol(op)}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    static int OrderSequences(IReadOnlyList<object?> a, IReadOnlyList<object?> b, CompareOperator op)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        for (var i = 0; i < Math.Min(a.Count, b.Count); i++)
            if (!AreEqual(a[i], b[i])) return Order(a[i], b[i], op);
        return a.Count.CompareTo(b.Count);
    }

    // ------------------------------------------------------------------------------------------------------- arithmetic

    public static object? Binary(BinaryOperator op, object? a, object? b)
    {
        ThrowIfUndefined(a, b);
        try
        {
            return op switch
            {
                BinaryOperator.Add => Add(a, b),
                BinaryOperator.Subtract => Numeric(a, b, "-", (x, y) => checked(x - y), (x, y) => x - y),
                BinaryOperator.Multiply => Multiply(a, b),
                BinaryOperator.Divide => Divide(a, b),
                BinaryOperator.FloorDivide => FloorDivide(a, b),
                BinaryOperator.Modulo => Modulo(a, b),
                _ => Power(a, b),
            };
        }
        catch (OverflowException)
        {
            throw new TemplateException(TemplateErrorKind.Overflow, "integer result does not fit in 64 bits");
        }
    }

    static object? Numeric(object? a, object? b, string symbol, Func<long, long, long> integers, Func<double, double, double> floats)
    {
        if (TryGetInteger(a, out var x) && TryGetInteger(b, out var y)) return integers(x, y);
        if (IsNumber(a) && IsNumber(b)) return floats(ToDouble(a), ToDouble(b));
        throw TypeError($"unsupported operand type(s) for {symbol}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    static object? Add(object? a, object? b)
    {
        if (a is MarkupValue || b is MarkupValue)
        {
            // markupsafe: Markup + str escapes the str (and str + Markup likewise).
            if (TryGetText(a, out var left) && TryGetText(b, out var right))
            {
                RenderBudget.RequireLength((long)left.Length + right.Length, "a '+' of strings");
                return new MarkupValue((a is MarkupValue ? left : PythonFormat.EscapeHtml(left)) + (b is MarkupValue ? right : PythonFormat.EscapeHtml(right)));
            }
        }
        switch (a, b)
        {
            case (string x, string y):
                RenderBudget.RequireLength((long)x.Length + y.Length, "a '+' of strings");
                return string.Concat(x, y);
            case (string, _): throw TypeError($"can only concatenate str (not \"{TypeName(b)}\") to str");
            case (List<object?> x, List<object?> y):
                RenderBudget.RequireItems((long)x.Count + y.Count, "a '+' of lists");
                return x.Concat(y).ToList();
            case (List<object?>, _): throw TypeError($"can only concatenate list (not \"{TypeName(b)}\") to list");
            case (TupleValue x, TupleValue y):
                RenderBudget.RequireItems((long)x.Count + y.Count, "a '+' of tuples");
                return new TupleValue([.. x.Items, .. y.Items]);
            case (TupleValue, _): throw TypeError($"can only concatenate tuple (not \"{TypeName(b)}\") to tuple");
        }
        return Numeric(a, b, "+", (x, y) => checked(x + y), (x, y) => x + y);
    }

    static object? Multiply(object? a, object? b)
    {
        if (IsSequence(a) || IsSequence(b))
        {
            var (sequence, count) = IsSequence(a) ? (a, b) : (b, a);
            if (!TryGetInteger(count, out var times)) throw TypeError($"can't multiply sequence by non-int of type '{TypeName(count)}'");
            times = Math.Max(0, times);
            switch (sequence)
            {
                case string s:
                    if (s.Length == 0) return "";
                    RenderBudget.RequireLength(times > RenderBudget.MaxStringLength ? times : s.Length * times, "a str * int repetition");
                    return string.Concat(Enumerable.Repeat(s, (int)times));
                case List<object?> list:
                    if (list.Count == 0) return new List<object?>();
                    RenderBudget.RequireItems(times > RenderBudget.MaxItems ? times : list.Count * times, "a list * int repetition");
                    return Enumerable.Range(0, (int)times).SelectMany(_ => list).ToList();
                case TupleValue tuple:
                    if (tuple.Count == 0) return TupleValue.Empty;
                    RenderBudget.RequireItems(times > RenderBudget.MaxItems ? times : tuple.Count * times, "a tuple * int repetition");
                    return new TupleValue([.. Enumerable.Range(0, (int)times).SelectMany(_ => tuple.Items)]);
            }
        }
        return Numeric(a, b, "*", (x, y) => checked(x * y), (x, y) => x * y);
    }

    static bool IsSequence(object? value) => value is string or List<object?> or TupleValue;

    static object? Divide(object? a, object? b)
    {
        if (!IsNumber(a) || !IsNumber(b)) throw TypeError($"unsupported operand type(s) for /: '{TypeName(a)}' and '{TypeName(b)}'");
        var divisor = ToDouble(b);
        if (divisor == 0) throw new TemplateException(TemplateErrorKind.ZeroDivision, a is double || b is double ? "float division by zero" : "division by zero");
        return ToDouble(a) / divisor;
    }

    static object? FloorDivide(object? a, object? b)
    {
        if (TryGetInteger(a, out var x) && TryGetInteger(b, out var y))
        {
            if (y == 0) throw new TemplateException(TemplateErrorKind.ZeroDivision, "integer division or modulo by zero");
            var quotient = checked(x / y);
            return x % y != 0 && (x < 0) != (y < 0) ? quotient - 1 : quotient;
        }
        if (!IsNumber(a) || !IsNumber(b)) throw TypeError($"unsupported operand type(s) for //: '{TypeName(a)}' and '{TypeName(b)}'");
        if (ToDouble(b) == 0) throw new TemplateException(TemplateErrorKind.ZeroDivision, "float floor division by zero");
        return FloatDivMod(ToDouble(a), ToDouble(b)).Quotient;
    }

    static object? Modulo(object? a, object? b)
    {
        if (TryGetText(a, out var format)) return PythonFormat.Percent(format, b);
        if (TryGetInteger(a, out var x) && TryGetInteger(b, out var y))
        {
            if (y == 0) throw new TemplateException(TemplateErrorKind.ZeroDivision, "integer modulo by zero");
            if (y == -1) return 0L;
            var remainder = x % y;
            return remainder != 0 && (remainder < 0) != (y < 0) ? remainder + y : remainder;
        }
        if (!IsNumber(a) || !IsNumber(b)) throw TypeError($"unsupported operand type(s) for %: '{TypeName(a)}' and '{TypeName(b)}'");
        if (ToDouble(b) == 0) throw new TemplateException(TemplateErrorKind.ZeroDivision, "float modulo");
        return FloatDivMod(ToDouble(a), ToDouble(b)).Remainder;
    }

    /// <summary>CPython's float divmod (floatobject.c), so // and % agree with Python on signs and edge cases.</summary>
    static (double Quotient, double Remainder) FloatDivMod(double x, double y)
    {
        var mod = x % y; // C fmod: the sign of the dividend
        var div = (x - mod) / y;
        if (mod != 0)
        {
            if (y < 0 != mod < 0) { mod += y; div -= 1.0; }
        }
        else mod = Math.CopySign(0.0, y);
        double floor;
        if (div != 0)
        {
            floor = Math.Floor(div);
            if (div - floor > 0.5) floor += 1.0;
        }
        else floor = Math.CopySign(0.0, x / y);
        return (floor, mod);
    }

    static object? Power(object? a, object? b)
    {
        if (TryGetInteger(a, out var x) && TryGetInteger(b, out var y))
        {
            if (y < 0)
            {
                if (x == 0) throw new TemplateException(TemplateErrorKind.ZeroDivision, "0.0 cannot be raised to a negative power");
                return Math.Pow(x, y);
            }
            long result = 1;
            for (var exponent = y; exponent > 0; exponent >>= 1)
            {
                if ((exponent & 1) != 0) result = checked(result * x);
                if (exponent > 1) x = checked(x * x);
            }
            return result;
        }
        if (!IsNumber(a) || !IsNumber(b)) throw TypeError($"unsupported operand type(s) for ** or pow(): '{TypeName(a)}' and '{TypeName(b)}'");
        double bas = ToDouble(a), exp = ToDouble(b);
        if (bas == 0 && exp < 0) throw new TemplateException(TemplateErrorKind.ZeroDivision, "0.0 cannot be raised to a negative power");
        if (bas < 0 && exp != Math.Floor(exp)) throw new TemplateException(TemplateErrorKind.Unsupported, "a negative number raised to a fractional power is complex in Python");
        return Math.Pow(bas, exp);
    }

    public static object? Negate(object? value, bool minus)
    {
        if (value is UndefinedValue undefined) throw undefined.Error();
        if (TryGetInteger(value, out var integer)) return minus ? checked(-integer) : integer;
        if (value is double d) return minus ? -d : d;
        throw TypeError($"bad operand type for unary {(minus ? "-" : "+")}: '{TypeName(value)}'");
    }

    // ----------------------------------------------------------------------------------------- iteration, length, membership

    public static IEnumerable<object?> Iterate(object? value) => value switch
    {
        UndefinedValue => [],
        string s => PythonStrings.Characters(s),
        MarkupValue m => PythonStrings.Characters(m.Text),
        List<object?> list => list,
        TupleValue tuple => tuple.Items,
        DictValue dict => dict.Keys,
        DictViewValue view => view.Iterate(),
        RangeValue range => range.Iterate(),
        IteratorValue iterator => iterator.Drain(),
        _ => throw TypeError($"'{TypeName(value)}' object is not iterable"),
    };

    /// <summary>The items as a list; lists are returned as they are (templates cannot mutate them).</summary>
    public static IReadOnlyList<object?> ToList(object? value) => value switch
    {
        List<object?> list => list,
        TupleValue tuple => tuple.Items,
        _ => Materialize(Iterate(value), "a list of the items"),
    };

    /// <summary>Collects items (of a string, iterator or view) into a new list within <see cref="RenderBudget.MaxItems"/>.</summary>
    public static List<object?> Materialize(IEnumerable<object?> items, string what)
    {
        var result = new List<object?>();
        foreach (var item in items)
        {
            if (result.Count == RenderBudget.MaxItems) RenderBudget.RequireItems(result.Count + 1L, what);
            result.Add(item);
        }
        return result;
    }

    public static bool IsIterable(object? value) =>
        value is UndefinedValue or string or MarkupValue or List<object?> or TupleValue or DictValue or DictViewValue or RangeValue or IteratorValue or LoopValue;

    public static long Length(object? value) => value switch
    {
        string s => PythonStrings.Length(s),
        MarkupValue m => PythonStrings.Length(m.Text),
        List<object?> list => list.Count,
        TupleValue tuple => tuple.Count,
        DictValue dict => dict.Count,
        DictViewValue view => view.Dict.Count,
        RangeValue range => range.Count,
        UndefinedValue => 0,
        LoopValue loop => loop.Length,
        _ => throw TypeError($"object of type '{TypeName(value)}' has no len()"),
    };

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string or MarkupValue:
                TryGetText(container, out var text);
                if (!TryGetText(item, out var part)) throw TypeError($"'in <string>' requires string as left operand, not {TypeName(item)}");
                return text.Contains(part, StringComparison.Ordinal);
            case List<object?> or TupleValue or RangeValue or IteratorValue:
                foreach (var element in Iterate(container)) if (AreEqual(element, item)) return true;
                return false;
            case DictValue dict:
                return dict.ContainsKey(item);
            case DictViewValue view:
                if (view.Kind == DictViewKind.Keys) return view.Dict.ContainsKey(item);
                if (view.Kind == DictViewKind.Items)
                    return item is TupleValue { Count: 2 } pair && view.Dict.TryGet(pair[0], out var stored) && AreEqual(stored, pair[1]);
                return view.Dict.Values.Any(v => AreEqual(v, item));
            case UndefinedValue:
                return false;
            default:
                throw TypeError($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    // ------------------------------------------------------------------------------------------- attribute and item access

    /// <summary><c>obj.name</c> as the sandbox does it: the Python attribute (a method) first, then the item, else undefined.</summary>
    public static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case UndefinedValue undefined: throw undefined.Error();
            case DictValue dict:
                return Methods.TryGetAttribute(dict, name, out var method) ? method
                    : dict.TryGet(name, out var value) ? value : UndefinedValue.Member(dict, name);
            case NamespaceValue ns:
                return ns.Attributes.TryGetValue(name, out var attribute) ? attribute : UndefinedValue.Member(ns, name);
            case LoopValue loop:
                return LoopAttribute(loop, name) ?? UndefinedValue.Member(loop, name);
            default:
                return Methods.TryGetAttribute(target, name, out var member) ? member : UndefinedValue.Member(target, name);
        }
    }

    /// <summary><c>obj[key]</c> as the sandbox does it: the item first, then (for string keys) the attribute, else undefined.</summary>
    public static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case UndefinedValue undefined: throw undefined.Error();
            case DictValue dict:
                if (dict.TryGet(key, out var value)) return value;
                break;
            case string or MarkupValue or List<object?> or TupleValue or RangeValue when TryGetInteger(key, out var index):
                var length = Length(target);
                if (index < 0) index += length;
                if (index < 0 || index >= length) return UndefinedValue.Member(target, key);
                return target switch
                {
                    string s => PythonStrings.CharacterAt(s, (int)index),
                    MarkupValue m => PythonStrings.CharacterAt(m.Text, (int)index),
                    List<object?> list => list[(int)index],
                    TupleValue tuple => tuple[(int)index],
                    _ => ((RangeValue)target!)[index],
                };
        }
        if (key is string name && target is not DictValue)
        {
            var attribute = GetAttribute(target, name);
            return attribute is UndefinedValue ? UndefinedValue.Member(target, name) : attribute;
        }
        if (key is string method && target is DictValue d && Methods.TryGetAttribute(d, method, out var bound)) return bound;
        return UndefinedValue.Member(target, key);
    }

    public static object? Slice(object? target, object? start, object? stop, object? step)
    {
        if (target is UndefinedValue undefined) throw undefined.Error();
        if (target is not (string or MarkupValue or List<object?> or TupleValue or RangeValue)) return UndefinedValue.Member(target, new SliceKey(start, stop, step));
        var length = (int)Length(target);
        var (first, last, stride, count) = SliceIndices(length, start, stop, step);
        switch (target)
        {
            case string or MarkupValue:
                TryGetText(target, out var text);
                var sliced = PythonStrings.Slice(text, first, stride, count);
                return target is MarkupValue ? new MarkupValue(sliced) : sliced;
            case RangeValue range:
                return new RangeValue(range[first], range[last], range.Step * stride);
        }
        var items = ToList(target);
        var result = new object?[count];
        for (var i = 0; i < count; i++) result[i] = items[first + i * stride];
        return target is TupleValue ? new TupleValue(result) : result.ToList();
    }

    /// <summary>CPython's PySlice_AdjustIndices: the first index, the (exclusive) stop, the step and how many items a slice selects.</summary>
    public static (int Start, int Stop, int Step, int Count) SliceIndices(int length, object? start, object? stop, object? step)
    {
        static long? Bound(object? value)
        {
            if (value is null or UndefinedValue) return null;
            if (TryGetInteger(value, out var integer)) return integer;
            throw TypeError("slice indices must be integers or None or have an __index__ method");
        }
        var stride = Bound(step) ?? 1;
        if (stride == 0) throw new TemplateException(TemplateErrorKind.Value, "slice step cannot be zero");
        long Adjust(long? bound, long whenNone)
        {
            if (bound is not { } value) return whenNone;
            if (value < 0) { value += length; if (value < 0) value = stride < 0 ? -1 : 0; }
            else if (value >= length) value = stride < 0 ? length - 1 : length;
            return value;
        }
        var first = Adjust(Bound(start), stride < 0 ? length - 1 : 0);
        var last = Adjust(Bound(stop), stride < 0 ? -1 : length);
        long count = stride < 0 ? (last < first ? (first - last - 1) / -stride + 1 : 0) : (first < last ? (last - first - 1) / stride + 1 : 0);
        stride = Math.Clamp(stride, -(long)length - 1, (long)length + 1); // a step past the length selects at most one item either way; keeps it an int
        return ((int)first, (int)last, (int)stride, (int)count);
    }

    static object? LoopAttribute(LoopValue loop, string name) => name switch
    {
        "index" => (long)loop.Index0 + 1,
        "index0" => (long)loop.Index0,
        "revindex" => (long)(loop.Length - loop.Index0),
        "revindex0" => (long)(loop.Length - loop.Index0 - 1),
        "first" => loop.Index0 == 0,
        "last" => loop.Index0 == loop.Length - 1,
        "length" => (long)loop.Length,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => loop.Index0 > 0 ? loop.Items[loop.Index0 - 1] : UndefinedValue.WithHint("there is no previous item"),
        "nextitem" => loop.Index0 < loop.Length - 1 ? loop.Items[loop.Index0 + 1] : UndefinedValue.WithHint("there is no next item"),
        "cycle" => new FunctionValue("cycle", (_, arguments) =>
        {
            if (arguments.Positional.Count == 0) throw TypeError("no items for cycling given");
            return arguments.Positional[loop.Index0 % arguments.Positional.Count];
        }),
        "changed" => new FunctionValue("changed", (_, arguments) =>
        {
            var value = new TupleValue([.. arguments.Positional]);
            if (loop.LastChangedValue is TupleValue last && AreEqual(last, value)) return false;
            loop.LastChangedValue = value;
            return true;
        }),
        _ => null,
    };
}

/// <summary>A slice used as a key where Python raises and Jinja returns undefined (<c>none[1:]</c>); it only appears in messages.</summary>
internal sealed record SliceKey(object? Start, object? Stop, object? Step);
