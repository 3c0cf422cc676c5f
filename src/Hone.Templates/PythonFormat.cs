using System.Globalization;
using System.Numerics;
using System.Text;

namespace Hone.Tokenization.Templates;

/// <summary>Python's text forms of values: str(), repr(), float repr, json.dumps, str % args, str.format and strftime.</summary>
internal static class PythonFormat
{
    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>Python's str(value), which is what <c>{{ value }}</c> prints.</summary>
    public static string Str(object? value) => value switch
    {
        string s => s,
        MarkupValue m => m.Text,
        UndefinedValue => "",
        _ => Repr(value),
    };

    public static string Repr(object? value)
    {
        switch (value)
        {
            case null: return "None";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(Invariant);
            case double d: return FloatRepr(d);
            case string s: return StringRepr(s);
        }
        var output = new StringBuilder();
        WriteRepr(output, value);
        return output.ToString();
    }

    /// <summary>
    /// repr into one builder, checked against the string cap after every element: a list holding itself ten times, ten levels
    /// deep, is small as a value but has a repr of 10^10 elements.
    /// </summary>
    static void WriteRepr(StringBuilder output, object? value)
    {
        switch (value)
        {
            case null or bool or long or double: output.Append(Repr(value)); break;
            case string s: WriteStringRepr(output, s); break;
            case MarkupValue m: output.Append("Markup("); WriteStringRepr(output, m.Text); output.Append(')'); break;
            case UndefinedValue: output.Append("Undefined"); break;
            case List<object?> list: WriteItems(output, "[", list, "]"); break;
            case TupleValue tuple:
                if (tuple.Count == 1) { output.Append('('); WriteRepr(output, tuple[0]); output.Append(",)"); }
                else WriteItems(output, "(", tuple.Items, ")");
                break;
            case DictValue dict: WritePairs(output, "{", dict.Items, "}"); break;
            case DictViewValue view: WriteItems(output, view.TypeName + "([", view.Iterate(), "])"); break;
            case RangeValue range: output.Append(range.Step == 1 ? string.Create(Invariant, $"range({range.Start}, {range.Stop})") : string.Create(Invariant, $"range({range.Start}, {range.Stop}, {range.Step})")); break;
            case NamespaceValue ns: WritePairs(output, "<Namespace {", ns.Attributes.Select(a => new KeyValuePair<object?, object?>(a.Key, a.Value)), "}>"); break;
            case LoopValue loop: output.Append(string.Create(Invariant, $"<LoopContext {loop.Index0 + 1}/{loop.Length}>")); break;
            case MacroValue macro: output.Append("<Macro "); WriteStringRepr(output, macro.Definition.Name); output.Append('>'); break;
            case SliceKey slice: WriteItems(output, "slice(", [slice.Start, slice.Stop, slice.Step], ")"); break;
            default:
                // Python prints these with a memory address; there is no faithful rendering.
                throw new TemplateException(TemplateErrorKind.Unsupported, $"cannot render a {PythonOps.TypeName(value)} object as text (Python shows its memory address); convert it first, e.g. with |list");
        }
        RenderBudget.CheckBuilder(output, "a repr");
    }

    static void WriteItems(StringBuilder output, string open, IEnumerable<object?> items, string close)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        output.Append(open);
        var first = true;
        foreach (var item in items)
        {
            if (!first) output.Append(", ");
            first = false;
            WriteRepr(output, item);
        }
        output.Append(close);
    }

    static void WritePairs(StringBuilder output, string open, IEnumerable<KeyValuePair<object?, object?>> pairs, string close)
    {
        System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
        output.Append(open);
        var first = true;
        foreach (var (key, item) in pairs)
        {
            if (!first) output.Append(", ");
            first = false;
            WriteRepr(output, key);
            output.Append(": ");
            WriteRepr(output, item);
        }
        output.Append(close);
    }

    /// <summary>Python's repr of a str: single quotes unless the text has ' and no ", non-printable characters escaped.</summary>
    public static string StringRepr(string s)
    {
        var result = new StringBuilder(s.Length + 2);
        WriteStringRepr(result, s);
        return result.ToString();
    }

    static void WriteStringRepr(StringBuilder result, string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        result.Append(quote);
        foreach (var r in EnumerateCodePoints(s))
        {
            if (result.Length > RenderBudget.MaxStringLength) RenderBudget.CheckBuilder(result, "a repr");
            switch (r)
            {
                case '\\': result.Append("\\\\"); continue;
                case '\n': result.Append("\\n"); continue;
                case '\r': result.Append("\\r"); continue;
                case '\t': result.Append("\\t"); continue;
            }
            if (r == quote) result.Append('\\').Append(quote);
            else if (r < 0x20 || r == 0x7f) result.Append("\\x").Append(r.ToString("x2", Invariant));
            else if (r < 0x7f || IsPrintable(r)) result.Append(char.ConvertFromUtf32(r));
            else if (r <= 0xff) result.Append("\\x").Append(r.ToString("x2", Invariant));
            else if (r <= 0xffff) result.Append("\\u").Append(r.ToString("x4", Invariant));
            else result.Append("\\U").Append(r.ToString("x8", Invariant));
        }
        result.Append(quote);
        RenderBudget.CheckBuilder(result, "a repr");
    }

    /// <summary>Code points, lone surrogates included (Python strings may hold them).</summary>
    static IEnumerable<int> EnumerateCodePoints(string s)
    {
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { yield return char.ConvertToUtf32(s[i], s[i + 1]); i++; }
            else yield return s[i];
        }
    }

    /// <summary>Python's str.isprintable for one character: not a control, format, surrogate, private, unassigned or separator (space excepted).</summary>
    static bool IsPrintable(int codePoint)
    {
        if (codePoint is >= 0xD800 and <= 0xDFFF) return false;
        return CharUnicodeInfo.GetUnicodeCategory(codePoint) switch
        {
            UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
                or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => false,
            UnicodeCategory.SpaceSeparator => codePoint == ' ',
            _ => true,
        };
    }

    /// <summary>Python's repr(float): the shortest digits that round-trip, exponent form below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double value)
    {
        if (double.IsNaN(value)) return "nan";
        if (double.IsInfinity(value)) return value > 0 ? "inf" : "-inf";
        if (value == 0) return double.IsNegative(value) ? "-0.0" : "0.0";
        var (negative, digits, pointPosition) = ShortestDigits(value);
        var sign = negative ? "-" : "";
        if (pointPosition <= -4 || pointPosition > 16)
        {
            var exponent = pointPosition - 1;
            var mantissa = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            return $"{sign}{mantissa}e{(exponent < 0 ? "-" : "+")}{Math.Abs(exponent):00}";
        }
        if (pointPosition <= 0) return $"{sign}0.{new string('0', -pointPosition)}{digits}";
        if (pointPosition >= digits.Length) return $"{sign}{digits}{new string('0', pointPosition - digits.Length)}.0";
        return $"{sign}{digits[..pointPosition]}.{digits[pointPosition..]}";
    }

    /// <summary>Shortest round-trip digits (no leading/trailing zeros) and where the point goes: value = 0.DIGITS x 10^pointPosition.</summary>
    static (bool Negative, string Digits, int PointPosition) ShortestDigits(double value)
    {
        var text = value.ToString("R", Invariant);
        var negative = text.StartsWith('-');
        if (negative) text = text[1..];
        var exponent = 0;
        var e = text.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(text[(e + 1)..], Invariant);
            text = text[..e];
        }
        var dot = text.IndexOf('.');
        var integerDigits = dot < 0 ? text.Length : dot;
        var digits = text.Replace(".", "");
        var leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        return (negative, digits, integerDigits - leadingZeros + exponent);
    }

    /// <summary>markupsafe.escape, for Markup concatenation.</summary>
    public static string EscapeHtml(string s) =>
        s.Replace("&", "&amp;").Replace(">", "&gt;").Replace("<", "&lt;").Replace("'", "&#39;").Replace("\"", "&#34;");

    // ----------------------------------------------------------------------------------------------------------------- json

    /// <summary>
    /// Python's json.dumps(value, ensure_ascii, indent, separators, sort_keys) — what Hugging Face's <c>tojson</c> filter calls
    /// (with ensure_ascii=False). <paramref name="indent"/> null means single-line.
    /// </summary>
    public static string Json(object? value, bool ensureAscii, string? indent, string itemSeparator, string keySeparator, bool sortKeys)
    {
        var output = new StringBuilder();
        WriteJson(output, value, ensureAscii, indent, itemSeparator, keySeparator, sortKeys, 0);
        return output.ToString();
    }

    static void WriteJson(StringBuilder output, object? value, bool ascii, string? indent, string itemSeparator, string keySeparator, bool sortKeys, int level)
    {
        switch (value)
        {
            case null: output.Append("null"); return;
            case bool b: output.Append(b ? "true" : "false"); return;
            case long l: output.Append(l.ToString(Invariant)); return;
            case double d: output.Append(JsonFloat(d)); return;
            case string or MarkupValue:
                PythonOps.TryGetText(value, out var text);
                WriteJsonString(output, text, ascii);
                return;
            case List<object?> or TupleValue:
                System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
                var items = PythonOps.ToList(value);
                if (items.Count == 0) { output.Append("[]"); return; }
                output.Append('[');
                for (var i = 0; i < items.Count; i++)
                {
                    if (i > 0) output.Append(itemSeparator);
                    NewLine(output, indent, level + 1);
                    WriteJson(output, items[i], ascii, indent, itemSeparator, keySeparator, sortKeys, level + 1);
                    RenderBudget.CheckBuilder(output, "a tojson result");
                }
                NewLine(output, indent, level);
                output.Append(']');
                return;
            case DictValue dict:
                System.Runtime.CompilerServices.RuntimeHelpers.EnsureSufficientExecutionStack();
                if (dict.Count == 0) { output.Append("{}"); return; }
                IEnumerable<KeyValuePair<object?, object?>> entries = dict.Items;
                if (sortKeys) entries = entries.OrderBy(e => e.Key, Comparer<object?>.Create((a, b) => PythonOps.Order(a, b)));
                output.Append('{');
                var first = true;
                foreach (var (key, item) in entries)
                {
                    if (!first) output.Append(itemSeparator);
                    first = false;
                    NewLine(output, indent, level + 1);
                    WriteJsonString(output, JsonKey(key), ascii);
                    output.Append(keySeparator);
                    WriteJson(output, item, ascii, indent, itemSeparator, keySeparator, sortKeys, level + 1);
                    RenderBudget.CheckBuilder(output, "a tojson result");
                }
                NewLine(output, indent, level);
                output.Append('}');
                return;
            default:
                throw PythonOps.TypeError($"Object of type {PythonOps.TypeName(value)} is not JSON serializable");
        }
    }

    static void NewLine(StringBuilder output, string? indent, int level)
    {
        if (indent == null) return;
        output.Append('\n');
        for (var i = 0; i < level; i++)
        {
            output.Append(indent);
            RenderBudget.CheckBuilder(output, "a tojson result");
        }
    }

    static string JsonFloat(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : FloatRepr(d);

    static string JsonKey(object? key) => key switch
    {
        string s => s,
        MarkupValue m => m.Text,
        null => "null",
        bool b => b ? "true" : "false",
        long l => l.ToString(Invariant),
        double d => JsonFloat(d),
        _ => throw PythonOps.TypeError($"keys must be str, int, float, bool or None, not {PythonOps.TypeName(key)}"),
    };

    static void WriteJsonString(StringBuilder output, string text, bool ascii)
    {
        output.Append('"');
        foreach (var c in text)
        {
            if (output.Length > RenderBudget.MaxStringLength) RenderBudget.CheckBuilder(output, "a tojson result");
            switch (c)
            {
                case '"': output.Append("\\\""); break;
                case '\\': output.Append("\\\\"); break;
                case '\n': output.Append("\\n"); break;
                case '\r': output.Append("\\r"); break;
                case '\t': output.Append("\\t"); break;
                case '\b': output.Append("\\b"); break;
                case '\f': output.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e)) output.Append("\\u").Append(((int)c).ToString("x4", Invariant));
                    else output.Append(c);
                    break;
            }
        }
        output.Append('"');
    }

    // -------------------------------------------------------------------------------------------------- str % arguments

    /// <summary>printf-style formatting, <c>format % arguments</c> (conversions s r d i f F x X o c %).</summary>
    public static string Percent(string format, object? arguments)
    {
        var values = arguments is TupleValue tuple ? tuple.Items : [arguments];
        var mapping = arguments as DictValue;
        var next = 0;
        var output = new StringBuilder();
        object? Take()
        {
            if (next >= values.Length) throw PythonOps.TypeError("not enough arguments for format string");
            return values[next++];
        }
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%') { output.Append(format[i]); continue; }
            RenderBudget.CheckBuilder(output, "a '%' format result");
            if (++i >= format.Length) throw new TemplateException(TemplateErrorKind.Value, "incomplete format");
            object? value = null;
            var fromMapping = false;
            if (format[i] == '(')
            {
                var close = format.IndexOf(')', i);
                if (close < 0 || mapping == null) throw PythonOps.TypeError("format requires a mapping");
                var key = format[(i + 1)..close];
                if (!mapping.TryGet(key, out value)) throw new TemplateException(TemplateErrorKind.Value, $"KeyError: {StringRepr(key)}");
                fromMapping = true;
                i = close + 1;
            }
            var flags = "";
            for (; i < format.Length && "-+ #0".Contains(format[i]); i++)
                if (!flags.Contains(format[i])) flags += format[i]; // each flag once: a run of a million '-' stays five characters
            var width = RenderBudget.Width(ReadNumber(format, ref i, Take, "width") ?? 0, "a '%' format width");
            int? precision = null;
            if (i < format.Length && format[i] == '.') { i++; precision = RenderBudget.Width(ReadNumber(format, ref i, Take, "precision") ?? 0, "a '%' format precision"); }
            if (i >= format.Length) throw new TemplateException(TemplateErrorKind.Value, "incomplete format");
            var conversion = format[i];
            if (conversion == '%') { output.Append('%'); continue; }
            if (!fromMapping) value = Take();
            var text = conversion switch
            {
                's' => Str(value),
                'r' or 'a' => Repr(value),
                'd' or 'i' or 'u' => FormatInteger(value, 10, false, flags, conversion),
                'x' or 'X' => FormatInteger(value, 16, conversion == 'X', flags, conversion),
                'o' => FormatInteger(value, 8, false, flags, conversion),
                'f' or 'F' => FormatFixed(value, precision ?? 6, flags, conversion),
                'c' => value is string { Length: > 0 } c ? c : PythonOps.TryGetInteger(value, out var code) ? Character(code) : throw PythonOps.TypeError("%c requires int or char"),
                _ => throw new TemplateException(TemplateErrorKind.Unsupported, $"unsupported format character '{conversion}' (0x{(int)conversion:x}) at index {i}"),
            };
            if (conversion is 's' or 'r' or 'a' && precision is { } limit && text.Length > limit) text = text[..limit];
            output.Append(Pad(text, width, flags.Contains('-'), flags.Contains('0') && conversion is not ('s' or 'r' or 'a' or 'c')));
        }
        RenderBudget.CheckBuilder(output, "a '%' format result");
        if (mapping == null && next < values.Length) throw PythonOps.TypeError("not all arguments converted during string formatting");
        return output.ToString();
    }

    /// <summary>A width or precision: digits, or '*' taking the next argument. Python's own limit is an index-sized integer.</summary>
    static long? ReadNumber(string format, ref int i, Func<object?> take, string what)
    {
        if (i < format.Length && format[i] == '*')
        {
            i++;
            return PythonOps.TryGetInteger(take(), out var star) ? star : throw PythonOps.TypeError("* wants int");
        }
        var start = i;
        while (i < format.Length && char.IsAsciiDigit(format[i])) i++;
        if (i == start) return null;
        return long.TryParse(format.AsSpan(start, i - start), NumberStyles.None, Invariant, out var number) ? number
            : throw new TemplateException(TemplateErrorKind.Value, $"{what} too big");
    }

    /// <summary>chr(code) for %c: any code point, lone surrogates included (Python strings may hold them).</summary>
    static string Character(long code)
    {
        if (code is < 0 or > 0x10FFFF) throw new TemplateException(TemplateErrorKind.Overflow, "%c arg not in range(0x110000)");
        return code is >= 0xD800 and <= 0xDFFF ? ((char)code).ToString() : char.ConvertFromUtf32((int)code);
    }

    static string Pad(string text, int width, bool left, bool zeros)
    {
        if (text.Length >= width) return text;
        RenderBudget.RequireLength(width, "a '%' format width");
        if (left) return text.PadRight(width);
        if (!zeros) return text.PadLeft(width);
        var signLength = text.Length > 0 && text[0] is '-' or '+' or ' ' ? 1 : 0;
        return text[..signLength] + new string('0', width - text.Length) + text[signLength..];
    }

    static string FormatInteger(object? value, int radix, bool upper, string flags, char conversion)
    {
        long number;
        if (PythonOps.TryGetInteger(value, out var integer)) number = integer;
        else if (value is double d && radix == 10) number = (long)Math.Truncate(d);
        else throw PythonOps.TypeError($"%{conversion} format: {(radix == 10 ? "a real number" : "an integer")} is required, not {PythonOps.TypeName(value)}");
        var magnitude = number == long.MinValue ? "9223372036854775808" : Convert.ToString(Math.Abs(number), radix);
        if (upper) magnitude = magnitude.ToUpperInvariant();
        if (flags.Contains('#') && radix != 10) magnitude = (radix == 16 ? (upper ? "0X" : "0x") : "0o") + magnitude;
        return Signed(number < 0, magnitude, flags);
    }

    static string FormatFixed(object? value, int precision, string flags, char conversion)
    {
        if (!PythonOps.IsNumber(value)) throw PythonOps.TypeError($"must be real number, not {PythonOps.TypeName(value)}");
        var d = value is double x ? x : value is long l ? l : (bool)value! ? 1 : 0;
        if (double.IsNaN(d) || double.IsInfinity(d)) return Signed(d < 0, conversion == 'F' ? FloatRepr(Math.Abs(d)).ToUpperInvariant() : FloatRepr(Math.Abs(d)), flags);
        return Signed(double.IsNegative(d), FixedPoint(Math.Abs(d), precision), flags);
    }

    /// <summary>
    /// A finite double rounded half-to-even on its exact binary value, as CPython's '%.Nf' and round() do (.NET's "F" format
    /// rounds exact ties away from zero: 0.125 would give 0.13 where Python gives 0.12).
    /// </summary>
    static BigInteger RoundedScaled(double value, int precision)
    {
        var bits = BitConverter.DoubleToInt64Bits(Math.Abs(value));
        var exponent = (int)((bits >> 52) & 0x7FF);
        var mantissa = bits & 0xFFFFFFFFFFFFFL;
        if (exponent == 0) exponent = 1;
        else mantissa |= 1L << 52;
        exponent -= 1075; // |value| = mantissa * 2^exponent
        BigInteger numerator = mantissa, denominator = BigInteger.One;
        if (exponent >= 0) numerator <<= exponent;
        else denominator <<= -exponent;
        if (precision >= 0) numerator *= BigInteger.Pow(10, precision);
        else denominator *= BigInteger.Pow(10, -precision);
        var quotient = BigInteger.DivRem(numerator, denominator, out var remainder);
        var half = (remainder * 2).CompareTo(denominator);
        if (half > 0 || (half == 0 && !quotient.IsEven)) quotient += 1;
        return quotient;
    }

    /// <summary>|value| with <paramref name="precision"/> decimals, correctly rounded half-to-even.</summary>
    public static string FixedPoint(double value, int precision)
    {
        // A double is an exact binary fraction with at most 1074 decimals: further digits are zeros, so a precision of
        // a million costs a million zeros, not a power of ten with a million digits.
        const int ExactDecimals = 1074;
        var zeros = Math.Max(0, precision - ExactDecimals);
        precision -= zeros;
        var digits = RoundedScaled(value, precision).ToString(Invariant);
        RenderBudget.RequireLength((long)digits.Length + zeros + 1, "a fixed-point number");
        if (precision == 0) return zeros == 0 ? digits : digits + "." + new string('0', zeros);
        digits = digits.PadLeft(precision + 1, '0');
        return digits[..^precision] + "." + digits[^precision..] + new string('0', zeros);
    }

    /// <summary>Python's round(value, digits) for floats.</summary>
    public static double Round(double value, int digits)
    {
        if (double.IsNaN(value) || double.IsInfinity(value) || value == 0) return value;
        if (digits > 330) return value;
        if (digits < -330) return Math.CopySign(0.0, value);
        var scaled = RoundedScaled(value, digits);
        var text = digits >= 0 ? scaled.ToString(Invariant) + "e-" + digits : scaled.ToString(Invariant) + "e" + (-digits);
        return Math.CopySign(double.Parse(text, NumberStyles.Float, Invariant), value);
    }

    static string Signed(bool negative, string magnitude, string flags) =>
        (negative ? "-" : flags.Contains('+') ? "+" : flags.Contains(' ') ? " " : "") + magnitude;

    // ------------------------------------------------------------------------------------------------------- str.format

    /// <summary>str.format: <c>{}</c>, <c>{0}</c>, <c>{name}</c>, <c>{name.attr}</c>, <c>{0[key]}</c>, <c>!r</c>/<c>!s</c>, and simple specs.</summary>
    public static string Format(string format, CallArguments arguments)
    {
        var output = new StringBuilder();
        var automatic = 0;
        for (var i = 0; i < format.Length; i++)
        {
            var c = format[i];
            if (c == '}')
            {
                if (i + 1 < format.Length && format[i + 1] == '}') { output.Append('}'); i++; continue; }
                throw new TemplateException(TemplateErrorKind.Value, "Single '}' encountered in format string");
            }
            if (c != '{') { output.Append(c); continue; }
            if (i + 1 < format.Length && format[i + 1] == '{') { output.Append('{'); i++; continue; }
            var close = format.IndexOf('}', i);
            if (close < 0) throw new TemplateException(TemplateErrorKind.Value, "Single '{' encountered in format string");
            var field = format[(i + 1)..close];
            i = close;
            var spec = "";
            var colon = field.IndexOf(':');
            if (colon >= 0) { spec = field[(colon + 1)..]; field = field[..colon]; }
            var conversion = '\0';
            var bang = field.IndexOf('!');
            if (bang >= 0) { conversion = field.Length > bang + 1 ? field[bang + 1] : '\0'; field = field[..bang]; }
            var nameEnd = field.IndexOfAny(['.', '[']);
            var head = nameEnd < 0 ? field : field[..nameEnd];
            object? value;
            if (head.Length == 0) value = Positional(arguments, automatic++);
            else if (int.TryParse(head, NumberStyles.None, Invariant, out var position)) value = Positional(arguments, position);
            else
            {
                var found = arguments.Named.FindIndex(n => n.Key == head);
                if (found < 0) throw new TemplateException(TemplateErrorKind.Value, $"KeyError: {StringRepr(head)}");
                value = arguments.Named[found].Value;
            }
            for (var rest = nameEnd < 0 ? "" : field[nameEnd..]; rest.Length > 0;)
            {
                if (rest[0] == '.')
                {
                    var end = rest.IndexOfAny(['.', '['], 1);
                    var attribute = end < 0 ? rest[1..] : rest[1..end];
                    value = PythonOps.GetAttribute(value, attribute);
                    rest = end < 0 ? "" : rest[end..];
                }
                else
                {
                    var end = rest.IndexOf(']');
                    if (end < 0) throw new TemplateException(TemplateErrorKind.Value, "Missing ']' in format string");
                    var key = rest[1..end];
                    value = PythonOps.GetItem(value, long.TryParse(key, NumberStyles.None, Invariant, out var index) ? index : key);
                    rest = rest[(end + 1)..];
                }
            }
            var text = conversion switch { 'r' or 'a' => Repr(value), 's' => Str(value), _ => null };
            output.Append(ApplySpec(text ?? (object?)value, spec));
            RenderBudget.CheckBuilder(output, "a str.format result");
        }
        RenderBudget.CheckBuilder(output, "a str.format result");
        return output.ToString();
    }

    static long SpecNumber(string digits) => long.TryParse(digits, NumberStyles.None, Invariant, out var number) ? number
        : throw new TemplateException(TemplateErrorKind.Value, "Too many decimal digits in format string");

    static object? Positional(CallArguments arguments, int index) =>
        index < arguments.Positional.Count ? arguments.Positional[index] : throw new TemplateException(TemplateErrorKind.Value, $"Replacement index {index} out of range for positional args tuple");

    /// <summary>The format-spec mini-language subset: [[fill]align][sign][0][width][.precision][s|d|f|%].</summary>
    static string ApplySpec(object? value, string spec)
    {
        if (spec.Length == 0) return Str(value);
        var i = 0;
        char fill = ' ', align = '\0';
        if (spec.Length >= 2 && spec[1] is '<' or '>' or '^') { fill = spec[0]; align = spec[1]; i = 2; }
        else if (spec[0] is '<' or '>' or '^') { align = spec[0]; i = 1; }
        var sign = i < spec.Length && spec[i] is '+' or '-' or ' ' ? spec[i++] : '\0';
        if (i < spec.Length && spec[i] == '0') { fill = '0'; align = align == '\0' ? '=' : align; i++; }
        var start = i;
        while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
        var width = i > start ? RenderBudget.Width(SpecNumber(spec[start..i]), "a format-spec width") : 0;
        int? precision = null;
        if (i < spec.Length && spec[i] == '.')
        {
            start = ++i;
            while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
            if (i == start) throw new TemplateException(TemplateErrorKind.Value, "Format specifier missing precision");
            precision = RenderBudget.Width(SpecNumber(spec[start..i]), "a format-spec precision");
        }
        var type = i < spec.Length ? spec[i++] : '\0';
        if (i != spec.Length) throw new TemplateException(TemplateErrorKind.Unsupported, $"format spec '{spec}' is not supported");
        string text;
        var numeric = PythonOps.IsNumber(value) && value is not bool;
        switch (type)
        {
            case 'f' or 'F' or '%':
                if (!PythonOps.IsNumber(value)) throw new TemplateException(TemplateErrorKind.Value, $"Unknown format code '{type}' for object of type '{PythonOps.TypeName(value)}'");
                var d = value is double x ? x : value is long l ? l : (bool)value! ? 1 : 0;
                if (type == '%') d *= 100;
                text = FixedPoint(Math.Abs(d), precision ?? 6) + (type == '%' ? "%" : "");
                text = (double.IsNegative(d) ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "") + text;
                break;
            case 'd':
                if (!PythonOps.TryGetInteger(value, out var integer)) throw new TemplateException(TemplateErrorKind.Value, $"Unknown format code 'd' for object of type '{PythonOps.TypeName(value)}'");
                text = (integer < 0 ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "") + Math.Abs(integer).ToString(Invariant);
                break;
            case 's' or '\0':
                if (type == '\0' && numeric && precision == null && sign == '\0') { text = Str(value); break; }
                if (type == '\0' && numeric) throw new TemplateException(TemplateErrorKind.Unsupported, $"format spec '{spec}' is not supported for numbers");
                text = Str(value);
                if (precision is { } limit && text.Length > limit) text = text[..limit];
                break;
            default:
                throw new TemplateException(TemplateErrorKind.Unsupported, $"format code '{type}' is not supported");
        }
        if (text.Length >= width) return text;
        RenderBudget.RequireLength(width, "a format-spec width");
        if (align == '\0') align = numeric || type is 'd' or 'f' or 'F' or '%' ? '>' : '<';
        var padding = width - text.Length;
        return align switch
        {
            '<' => text + new string(fill, padding),
            '>' => new string(fill, padding) + text,
            '^' => new string(fill, padding / 2) + text + new string(fill, padding - padding / 2),
            _ => text.Length > 0 && text[0] is '-' or '+' or ' ' ? text[0] + new string(fill, padding) + text[1..] : new string(fill, padding) + text,
        };
    }

    // ---------------------------------------------------------------------------------------------------------- strftime

    static readonly string[] DayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    static readonly string[] MonthNames = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    /// <summary>
    /// Python's datetime.strftime on Linux (glibc, C locale) for a naive local time: %a %A %b %B %c %C %d %D %e %F %f %H %I %j %k %l
    /// %m %M %n %p %P %R %S %t %T %u %U %w %W %x %X %y %Y %z %Z %%, with glibc's "-" (no padding) and "_" (space padding) flags.
    /// Unknown directives are copied as they are, as glibc does.
    /// </summary>
    public static string Strftime(DateTime time, string format)
    {
        var output = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { output.Append(format[i]); continue; }
            var start = i;
            var pad = '\0';
            if (format[i + 1] is '-' or '_' or '0' && i + 2 < format.Length) pad = format[++i];
            var directive = format[++i];
            string Number(int value, int digits, char defaultPad = '0')
            {
                var padChar = pad == '\0' ? defaultPad : pad == '_' ? ' ' : '0';
                var text = value.ToString(Invariant);
                return pad == '-' ? text : text.PadLeft(digits, padChar);
            }
            RenderBudget.CheckBuilder(output, "a strftime result");
            var hour12 = time.Hour % 12 == 0 ? 12 : time.Hour % 12;
            var weekday = (int)time.DayOfWeek;
            output.Append(directive switch
            {
                'a' => DayNames[weekday][..3],
                'A' => DayNames[weekday],
                'b' or 'h' => MonthNames[time.Month - 1][..3],
                'B' => MonthNames[time.Month - 1],
                'c' => $"{DayNames[weekday][..3]} {MonthNames[time.Month - 1][..3]} {Number(time.Day, 2, ' ')} {time.ToString("HH:mm:ss", Invariant)} {time.Year}",
                'C' => Number(time.Year / 100, 2),
                'd' => Number(time.Day, 2),
                'D' => time.ToString("MM/dd/yy", Invariant),
                'e' => Number(time.Day, 2, ' '),
                'F' => time.ToString("yyyy-MM-dd", Invariant),
                'f' => (time.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", Invariant),
                'H' => Number(time.Hour, 2),
                'I' => Number(hour12, 2),
                'j' => Number(time.DayOfYear, 3),
                'k' => Number(time.Hour, 2, ' '),
                'l' => Number(hour12, 2, ' '),
                'm' => Number(time.Month, 2),
                'M' => Number(time.Minute, 2),
                'n' => "\n",
                'p' => time.Hour < 12 ? "AM" : "PM",
                'P' => time.Hour < 12 ? "am" : "pm",
                'R' => time.ToString("HH:mm", Invariant),
                'S' => Number(time.Second, 2),
                't' => "\t",
                'T' => time.ToString("HH:mm:ss", Invariant),
                'u' => (weekday == 0 ? 7 : weekday).ToString(Invariant),
                'U' => Number((time.DayOfYear + 6 - weekday) / 7, 2),
                'w' => weekday.ToString(Invariant),
                'W' => Number((time.DayOfYear + 6 - (weekday + 6) % 7) / 7, 2),
                'x' => time.ToString("MM/dd/yy", Invariant),
                'X' => time.ToString("HH:mm:ss", Invariant),
                'y' => Number(time.Year % 100, 2),
                'Y' => time.Year.ToString(Invariant),
                'z' or 'Z' => "",
                '%' => "%",
                _ => format[start..(i + 1)],
            });
        }
        return output.ToString();
    }
}
