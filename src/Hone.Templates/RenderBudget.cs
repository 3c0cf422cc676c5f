using System.Globalization;
using System.Text;

namespace Hone.Tokenization.Templates;

/// <summary>
/// What one render may spend. Jinja's sandbox bounds only <c>range()</c>; a broken or hostile template could still loop for
/// hours (nested ranges), build gigabyte strings (a width of 999999999, a string doubled 40 times) or fan a macro out
/// exponentially. Each render therefore has:
/// <list type="bullet">
/// <item>a step budget: statements run, expressions evaluated and loop iterations;</item>
/// <item>a handling budget: the characters and items of every string or collection an expression yields, every piece
/// written to an output and every string a helper builds (a value referenced a thousand times costs a thousand times);</item>
/// <item>a size cap on any one string (widths, repetitions, joins and concatenations are checked before they allocate),
/// on any one list, and on the output.</item>
/// </list>
/// Exceeding one is a <see cref="TemplateException"/> of kind <see cref="TemplateErrorKind.Limit"/> that names the limit.
/// The limits are far above what real chat templates use. Rendering 2,001 messages of 2,000 characters with each of the 45
/// real templates in shared/data takes at most 58 steps per message (Mistral Nemo) and handles at most 9.1 characters per
/// character of conversation; so 10 million steps is about 170,000 messages, 512 Mi handled characters a conversation of
/// about 55 million characters, and the 32 Mi-character output cap is some 8 million tokens: no model context comes near.
/// (TemplateLimitTests keeps every real template under 5% and 10% of the first two on that conversation.)
/// Helpers deep in the value code (formatting, string methods) reach the render's budget through <see cref="current"/>:
/// renders are synchronous on one thread, and threading a budget through every value helper would touch every signature.
/// </summary>
internal sealed class RenderBudget
{
    public const long MaxSteps = 10_000_000;
    public const long MaxHandled = 512L << 20;
    /// <summary>Characters in any one string a template builds, and in the output (64 MiB of UTF-16).</summary>
    public const int MaxStringLength = 32 << 20;
    /// <summary>Items in any one list or tuple a template builds.</summary>
    public const int MaxItems = 4 << 20;

    [ThreadStatic] static RenderBudget? current;

    long steps;
    long handled;

    public long Steps => steps;
    public long Handled => handled;

    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>Makes this the budget that value helpers on this thread charge, until the returned value is disposed.</summary>
    public Entered Enter()
    {
        var previous = current;
        current = this;
        return new Entered(previous);
    }

    public readonly struct Entered(RenderBudget? previous) : IDisposable
    {
        public void Dispose() => current = previous;
    }

    public void Step()
    {
        if (++steps > MaxSteps)
            throw new TemplateException(TemplateErrorKind.Limit,
                string.Create(Invariant, $"the template ran more than {MaxSteps:N0} steps (statements, expressions and loop iterations) in one render; a loop or macro runs away"));
    }

    public void Handle(long amount)
    {
        if ((handled += amount) > MaxHandled)
            throw new TemplateException(TemplateErrorKind.Limit,
                string.Create(Invariant, $"the template handled more than {MaxHandled:N0} characters and items in one render; it builds or copies too much text"));
    }

    /// <summary>Charges a value an expression yielded by its size, and refuses values over the size caps.</summary>
    public void HandleValue(object? value)
    {
        switch (value)
        {
            case string s: Handle(s.Length); break;
            case List<object?> list: CheckItems(list.Count, "a list"); Handle(list.Count); break;
            case TupleValue tuple: CheckItems(tuple.Count, "a tuple"); Handle(tuple.Count); break;
            case DictValue dict: Handle(dict.Count); break;
            case RangeValue range: Handle(range.Count); break;
            case MarkupValue markup: Handle(markup.Text.Length); break;
        }
    }

    /// <summary>Appends to the output or a captured block (a macro's, a filter block's), within the string cap.</summary>
    public void Write(StringBuilder output, string text)
    {
        CheckLength((long)output.Length + text.Length, "the rendered output");
        output.Append(text);
        Handle(text.Length);
    }

    /// <summary>
    /// Before building a string of <paramref name="length"/> characters: refuses it over <see cref="MaxStringLength"/> and
    /// charges it to the current render. <paramref name="what"/> names it ("a '%' format width", "str * int").
    /// </summary>
    public static void RequireLength(long length, string what)
    {
        CheckLength(length, what);
        if (length > 0) current?.Handle(length);
    }

    static void CheckLength(long length, string what)
    {
        if (length > MaxStringLength)
            throw new TemplateException(TemplateErrorKind.Limit,
                string.Create(Invariant, $"{what} would be {length:N0} characters long; a template may build strings of at most {MaxStringLength:N0}"));
    }

    /// <summary>Checks a string being built piece by piece, after each piece (so the builder never holds more than one piece over the cap).</summary>
    public static void CheckBuilder(StringBuilder builder, string what)
    {
        if (builder.Length > MaxStringLength)
            throw new TemplateException(TemplateErrorKind.Limit,
                string.Create(Invariant, $"{what} grows past {MaxStringLength:N0} characters, the most a template may build"));
    }

    /// <summary>Before building a list or tuple of <paramref name="count"/> items.</summary>
    public static void RequireItems(long count, string what)
    {
        CheckItems(count, what);
        if (count > 0) current?.Handle(count);
    }

    static void CheckItems(long count, string what)
    {
        if (count > MaxItems)
            throw new TemplateException(TemplateErrorKind.Limit,
                string.Create(Invariant, $"{what} would hold {count:N0} items; a template may build lists of at most {MaxItems:N0}"));
    }

    /// <summary>A width read from a template that becomes padding (center(999999999), '%0999999999d', zfill): at most the string cap.</summary>
    public static int Width(long width, string what)
    {
        if (width <= 0) return 0;
        CheckLength(width, what);
        return (int)width;
    }
}
