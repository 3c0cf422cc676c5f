namespace Hone.Tokenization.Templates;

// The syntax tree. Nodes are immutable; filters and tests are resolved to their functions when parsed, so rendering does no
// name lookups for them.

internal abstract record Expression(SourcePosition At);

internal sealed record Literal(SourcePosition At, object? Value) : Expression(At);
internal sealed record Variable(SourcePosition At, string Name) : Expression(At);
internal sealed record ListLiteral(SourcePosition At, Expression[] Items) : Expression(At);
internal sealed record TupleLiteral(SourcePosition At, Expression[] Items) : Expression(At);
internal sealed record DictLiteral(SourcePosition At, (Expression Key, Expression Value)[] Pairs) : Expression(At);
/// <summary><c>target.name</c>: attribute first, then item (Jinja's getattr).</summary>
internal sealed record AttributeAccess(SourcePosition At, Expression Target, string Name) : Expression(At);
/// <summary><c>target[index]</c>: item first, then attribute (Jinja's getitem).</summary>
internal sealed record ItemAccess(SourcePosition At, Expression Target, Expression Index) : Expression(At);
internal sealed record SliceAccess(SourcePosition At, Expression Target, Expression? Start, Expression? Stop, Expression? Step) : Expression(At);
internal sealed record CallExpression(SourcePosition At, Expression Callee, ArgumentList Arguments) : Expression(At);
/// <summary><c>value | name(arguments)</c>; <see cref="Value"/> is null inside <c>{% filter %}</c> and <c>{% set x | f %}</c> blocks.</summary>
internal sealed record FilterExpression(SourcePosition At, Expression? Value, string Name, FilterFunction Function, ArgumentList Arguments) : Expression(At);
internal sealed record TestExpression(SourcePosition At, Expression Value, string Name, TestFunction Function, ArgumentList Arguments) : Expression(At);
internal sealed record UnaryExpression(SourcePosition At, UnaryOperator Operator, Expression Operand) : Expression(At);
internal sealed record BinaryExpression(SourcePosition At, BinaryOperator Operator, Expression Left, Expression Right) : Expression(At);
/// <summary><c>a and b</c> / <c>a or b</c>: short-circuit, yields an operand (Python semantics).</summary>
internal sealed record LogicalExpression(SourcePosition At, bool IsAnd, Expression Left, Expression Right) : Expression(At);
internal sealed record ConcatExpression(SourcePosition At, Expression[] Parts) : Expression(At);
/// <summary>A comparison chain, <c>a &lt; b &lt;= c</c>, evaluated like Python's.</summary>
internal sealed record CompareExpression(SourcePosition At, Expression First, (CompareOperator Operator, Expression Operand)[] Rest) : Expression(At);
/// <summary><c>then if condition else otherwise</c>; without <c>else</c> a false condition yields undefined.</summary>
internal sealed record ConditionalExpression(SourcePosition At, Expression Condition, Expression Then, Expression? Otherwise) : Expression(At);

internal enum UnaryOperator { Not, Negate, Plus }
internal enum BinaryOperator { Add, Subtract, Multiply, Divide, FloorDivide, Modulo, Power }
internal enum CompareOperator { Equal, NotEqual, Less, LessOrEqual, Greater, GreaterOrEqual, In, NotIn }

/// <param name="Positional">positional arguments</param>
/// <param name="Named">keyword arguments in source order</param>
/// <param name="Star"><c>*args</c></param>
/// <param name="DoubleStar"><c>**kwargs</c></param>
internal sealed record ArgumentList(Expression[] Positional, (string Name, Expression Value)[] Named, Expression? Star, Expression? DoubleStar)
{
    public static readonly ArgumentList Empty = new([], [], null, null);
}

/// <summary>Where <c>set</c>, <c>for</c> and <c>with</c> store values.</summary>
internal abstract record AssignTarget(SourcePosition At);
internal sealed record NameTarget(SourcePosition At, string Name) : AssignTarget(At);
internal sealed record NamespaceTarget(SourcePosition At, string Namespace, string Attribute) : AssignTarget(At);
internal sealed record TupleTarget(SourcePosition At, AssignTarget[] Items) : AssignTarget(At);

internal abstract record Statement(SourcePosition At);

internal sealed record TextStatement(SourcePosition At, string Text) : Statement(At);
internal sealed record OutputStatement(SourcePosition At, Expression Value) : Statement(At);
internal sealed record IfStatement(SourcePosition At, (Expression Condition, Statement[] Body)[] Branches, Statement[] Otherwise) : Statement(At);
internal sealed record ForStatement(SourcePosition At, AssignTarget Target, Expression Iterable, Expression? Filter, Statement[] Body, Statement[] Otherwise) : Statement(At);
internal sealed record SetStatement(SourcePosition At, AssignTarget Target, Expression Value) : Statement(At);
/// <summary><c>{% set x | filters %}body{% endset %}</c>: the rendered body, filtered, is assigned.</summary>
internal sealed record SetBlockStatement(SourcePosition At, AssignTarget Target, FilterExpression? Filter, Statement[] Body) : Statement(At);
internal sealed record MacroStatement(SourcePosition At, MacroDefinition Macro) : Statement(At);
/// <summary><c>{% call(params) macro(args) %}body{% endcall %}</c>: the body becomes the macro's <c>caller()</c>.</summary>
internal sealed record CallBlockStatement(SourcePosition At, CallExpression Call, MacroDefinition Caller) : Statement(At);
internal sealed record FilterBlockStatement(SourcePosition At, FilterExpression Filter, Statement[] Body) : Statement(At);
internal sealed record WithStatement(SourcePosition At, (AssignTarget Target, Expression Value)[] Assignments, Statement[] Body) : Statement(At);
/// <summary>A body rendered in its own scope: Hugging Face's <c>{% generation %}</c> block.</summary>
internal sealed record ScopedBlockStatement(SourcePosition At, Statement[] Body) : Statement(At);
internal sealed record BreakStatement(SourcePosition At) : Statement(At);
internal sealed record ContinueStatement(SourcePosition At) : Statement(At);

/// <param name="Parameters">parameter names; the last <c>Defaults.Length</c> of them have defaults</param>
/// <param name="UsesVarargs">the body names <c>varargs</c>, so extra positional arguments are collected rather than refused</param>
/// <param name="UsesKwargs">the body names <c>kwargs</c>, so extra keyword arguments are collected rather than refused</param>
/// <param name="UsesCaller">the body names <c>caller</c></param>
internal sealed record MacroDefinition(
    SourcePosition At, string Name, string[] Parameters, Expression[] Defaults, Statement[] Body, bool UsesVarargs, bool UsesKwargs, bool UsesCaller);
