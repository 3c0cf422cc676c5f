namespace Hone.Tokenization.Templates;

/// <summary>What went wrong, one value per Python exception class that Jinja raises in the same situation.</summary>
public enum TemplateErrorKind
{
    /// <summary>TemplateSyntaxError: the source does not parse, or names an unknown filter, test or tag.</summary>
    Syntax,
    /// <summary>TemplateError: the template called <c>raise_exception(message)</c>.</summary>
    Raised,
    /// <summary>UndefinedError: an undefined value was used beyond printing, testing or iterating it.</summary>
    Undefined,
    /// <summary>TypeError: an operation on values of the wrong type.</summary>
    Type,
    /// <summary>ValueError: right type, wrong value (unpacking, bad format string).</summary>
    Value,
    /// <summary>ZeroDivisionError.</summary>
    ZeroDivision,
    /// <summary>SecurityError: the sandbox refused (mutating a list or dict, private attributes).</summary>
    Security,
    /// <summary>OverflowError: a range larger than the sandbox allows, or an integer beyond 64 bits.</summary>
    Overflow,
    /// <summary>TemplateRuntimeError: a template statement misused (assigning an attribute of a non-namespace).</summary>
    Runtime,
    /// <summary>RecursionError: macros recursed too deep.</summary>
    Recursion,
    /// <summary>The template uses a Jinja or Python feature this interpreter does not implement.</summary>
    Unsupported,
    /// <summary>The render ran past a limit of <see cref="RenderBudget"/> (steps, size of a string, a list or the output); Jinja would run on.</summary>
    Limit,
}

/// <summary>
/// A template failed to parse or to render. <see cref="Reason"/> is the bare message, worded like Jinja's (so it can be compared
/// with what Hugging Face raises); <see cref="Exception.Message"/> adds the template name, line and column.
/// </summary>
public class TemplateException : Exception
{
    internal TemplateException(TemplateErrorKind kind, string reason) : base(reason)
    {
        Kind = kind;
        Reason = reason;
    }

    public TemplateErrorKind Kind { get; }

    /// <summary>The message without location, as <c>str(error)</c> gives it in Python.</summary>
    public string Reason { get; }

    public string? TemplateName { get; private set; }

    /// <summary>1-based line in the template source; 0 when the error is not tied to a place.</summary>
    public int Line { get; private set; }

    /// <summary>1-based column in the template source; 0 when unknown.</summary>
    public int Column { get; private set; }

    /// <summary>The Python exception class Jinja raises for the same failure.</summary>
    public string PythonExceptionName => Kind switch
    {
        TemplateErrorKind.Syntax => "TemplateSyntaxError",
        TemplateErrorKind.Raised => "TemplateError",
        TemplateErrorKind.Undefined => "UndefinedError",
        TemplateErrorKind.Type => "TypeError",
        TemplateErrorKind.Value => "ValueError",
        TemplateErrorKind.ZeroDivision => "ZeroDivisionError",
        TemplateErrorKind.Security => "SecurityError",
        TemplateErrorKind.Overflow => "OverflowError",
        TemplateErrorKind.Runtime => "TemplateRuntimeError",
        TemplateErrorKind.Recursion => "RecursionError",
        TemplateErrorKind.Limit => "OverflowError", // what the sandbox raises for its own limit (MAX_RANGE)
        _ => "NotImplementedError",
    };

    public override string Message
    {
        get
        {
            if (Line == 0) return TemplateName == null ? Reason : $"{Reason} (template '{TemplateName}')";
            var where = TemplateName == null ? $"line {Line}, column {Column}" : $"template '{TemplateName}', line {Line}, column {Column}";
            return $"{Reason} ({where})";
        }
    }

    internal bool HasLocation => Line > 0;

    /// <summary>Errors are raised deep in value helpers that do not know where they are; the innermost node that sees one fills this in.</summary>
    internal void SetLocation(string? templateName, SourcePosition position)
    {
        TemplateName = templateName;
        Line = position.Line;
        Column = position.Column;
    }
}

/// <summary>The template does not parse, or uses a filter, test or tag that does not exist (or that this interpreter does not implement).</summary>
public sealed class TemplateSyntaxException : TemplateException
{
    internal TemplateSyntaxException(string reason, string? templateName, SourcePosition position) : base(TemplateErrorKind.Syntax, reason)
        => SetLocation(templateName, position);
}

/// <summary>A 1-based line and column in a template source.</summary>
internal readonly record struct SourcePosition(int Line, int Column)
{
    public override string ToString() => $"{Line}:{Column}";
}
