namespace Hone.Grammars;

/// <summary>A grammar or schema Hone cannot use: a GBNF syntax error (with its line and column), an undefined or
/// left-recursive rule, an unsupported JSON Schema keyword (named), or a grammar that outgrows its limits.</summary>
public sealed class GrammarException(string message) : Exception(message);
