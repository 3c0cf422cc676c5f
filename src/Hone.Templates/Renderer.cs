using System.Runtime.CompilerServices;
using System.Text;

namespace Hone.Tokenization.Templates;

/// <summary>
/// Walks the syntax tree for one render. Scoping follows Jinja: <c>if</c> shares its scope; each loop iteration, macro call,
/// <c>with</c>, block <c>set</c> and <c>filter</c> body gets a fresh child scope, so <c>set</c> inside them does not leak out
/// (which is why templates use <c>namespace()</c>). Errors get the line and column of the innermost node that raised them.
/// </summary>
internal sealed class Renderer(string? templateName, Func<DateTime> clock)
{
    const int MaxMacroDepth = 500; // Python stops near 1000 frames; a recursive macro in Jinja costs a few of them

    enum Flow { Normal, Break, Continue }

    static readonly Dictionary<string, object?> Globals = new(StringComparer.Ordinal)
    {
        ["range"] = new FunctionValue("range", (_, a) => Functions.Range(a)),
        ["dict"] = new FunctionValue("dict", (_, a) => Functions.Dict(a)),
        ["namespace"] = new FunctionValue("namespace", (_, a) => Functions.Namespace(a)),
        ["raise_exception"] = new FunctionValue("raise_exception", (_, a) =>
            throw new TemplateException(TemplateErrorKind.Raised, PythonFormat.Str(a.Bind("raise_exception", ["message"], 1)[0]))),
        ["strftime_now"] = new FunctionValue("strftime_now", (r, a) =>
        {
            var format = a.Bind("strftime_now", ["format"], 1)[0];
            if (!PythonOps.TryGetText(format, out var text)) throw PythonOps.TypeError($"strftime() argument 1 must be str, not {PythonOps.TypeName(format)}");
            return PythonFormat.Strftime(r.Now(), text);
        }),
    };

    int macroDepth;
    int depth; // statements and expressions being executed; past a few dozen each level checks the stack
    const int ShallowDepth = 48;
    readonly RenderBudget budget = new();

    public RenderBudget Budget => budget;

    DateTime Now() => clock();
    object? blockInput; // what a FilterExpression without a value filters: the rendered body of {% filter %} / {% set x | f %}

    public string Render(Statement[] body, Scope root)
    {
        using var entered = budget.Enter();
        var output = new StringBuilder();
        Execute(body, root, output);
        return output.ToString();
    }

    /// <summary>Deep nesting (statements, expressions, or values nested inside values) is a RecursionError, never a stack overflow.</summary>
    static TemplateException TooDeep() => new(TemplateErrorKind.Recursion, "maximum recursion depth exceeded");

    Flow Execute(Statement[] body, Scope scope, StringBuilder output)
    {
        foreach (var statement in body)
        {
            var flow = Execute(statement, scope, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    Flow Execute(Statement statement, Scope scope, StringBuilder output)
    {
        try
        {
            if (++depth > ShallowDepth) RuntimeHelpers.EnsureSufficientExecutionStack();
            budget.Step();
            switch (statement)
            {
                case TextStatement text:
                    budget.Write(output, text.Text);
                    return Flow.Normal;
                case OutputStatement print:
                    budget.Write(output, PythonFormat.Str(Evaluate(print.Value, scope)));
                    return Flow.Normal;
                case IfStatement branches:
                    foreach (var (condition, body) in branches.Branches)
                        if (PythonOps.IsTrue(Evaluate(condition, scope))) return Execute(body, scope, output);
                    return Execute(branches.Otherwise, scope, output);
                case ForStatement loop:
                    ExecuteFor(loop, scope, output);
                    return Flow.Normal;
                case SetStatement set:
                    Assign(set.Target, Evaluate(set.Value, scope), scope);
                    return Flow.Normal;
                case SetBlockStatement setBlock:
                    Assign(setBlock.Target, RenderFiltered(setBlock.Body, setBlock.Filter, scope), scope);
                    return Flow.Normal;
                case MacroStatement macro:
                    scope.Set(macro.Macro.Name, new MacroValue(macro.Macro, scope));
                    return Flow.Normal;
                case CallBlockStatement call:
                    var caller = new MacroValue(call.Caller, scope);
                    budget.Write(output, PythonFormat.Str(Call(call.Call, scope, caller)));
                    return Flow.Normal;
                case FilterBlockStatement filter:
                    budget.Write(output, PythonFormat.Str(RenderFiltered(filter.Body, filter.Filter, scope)));
                    return Flow.Normal;
                case WithStatement with:
                    var inner = new Scope(scope);
                    var values = with.Assignments.Select(a => Evaluate(a.Value, scope)).ToList();
                    for (var i = 0; i < values.Count; i++) Assign(with.Assignments[i].Target, values[i], inner);
                    return Execute(with.Body, inner, output);
                case ScopedBlockStatement block:
                    Execute(block.Body, new Scope(scope), output);
                    return Flow.Normal;
                case BreakStatement:
                    return Flow.Break;
                case ContinueStatement:
                    return Flow.Continue;
            }
            throw new InvalidOperationException($"unknown statement {statement.GetType().Name}");
        }
        catch (TemplateException error) when (!error.HasLocation)
        {
            error.SetLocation(templateName, statement.At);
            throw;
        }
        catch (InsufficientExecutionStackException)
        {
            var error = TooDeep();
            error.SetLocation(templateName, statement.At);
            throw error;
        }
        finally
        {
            depth--;
        }
    }

    void ExecuteFor(ForStatement loop, Scope scope, StringBuilder output)
    {
        var items = PythonOps.ToList(Evaluate(loop.Iterable, scope));
        if (loop.Filter != null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                budget.Step();
                var filterScope = new Scope(scope);
                Assign(loop.Target, item, filterScope);
                if (PythonOps.IsTrue(Evaluate(loop.Filter, filterScope))) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0)
        {
            Execute(loop.Otherwise, new Scope(scope), output);
            return;
        }
        var context = new LoopValue(items);
        for (var i = 0; i < items.Count; i++)
        {
            budget.Step();
            context.Index0 = i;
            var iteration = new Scope(scope);
            Assign(loop.Target, items[i], iteration);
            iteration.Set("loop", context);
            if (Execute(loop.Body, iteration, output) == Flow.Break) break;
        }
    }

    string RenderFiltered(Statement[] body, FilterExpression? filter, Scope scope)
    {
        var captured = new StringBuilder();
        Execute(body, new Scope(scope), captured);
        if (filter == null) return captured.ToString();
        var saved = blockInput;
        blockInput = captured.ToString();
        try { return PythonFormat.Str(Evaluate(filter, scope)); }
        finally { blockInput = saved; }
    }

    void Assign(AssignTarget target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameTarget name:
                scope.Set(name.Name, value);
                break;
            case NamespaceTarget attribute:
                if (Lookup(attribute.Namespace, scope) is not NamespaceValue ns)
                    throw new TemplateException(TemplateErrorKind.Runtime, "cannot assign attribute on non-namespace object");
                ns.Attributes[attribute.Attribute] = value;
                break;
            case TupleTarget tuple:
                if (!PythonOps.IsIterable(value) || value is LoopValue) throw PythonOps.TypeError($"cannot unpack non-iterable {PythonOps.TypeName(value)} object");
                var items = PythonOps.ToList(value);
                if (items.Count > tuple.Items.Length) throw new TemplateException(TemplateErrorKind.Value, $"too many values to unpack (expected {tuple.Items.Length})");
                if (items.Count < tuple.Items.Length) throw new TemplateException(TemplateErrorKind.Value, $"not enough values to unpack (expected {tuple.Items.Length}, got {items.Count})");
                for (var i = 0; i < items.Count; i++) Assign(tuple.Items[i], items[i], scope);
                break;
        }
    }

    static object? Lookup(string name, Scope scope) =>
        scope.TryGet(name, out var value) ? value : Globals.TryGetValue(name, out var global) ? global : UndefinedValue.Named(name);

    // ------------------------------------------------------------------------------------------------------------ values

    object? Evaluate(Expression expression, Scope scope)
    {
        try
        {
            if (++depth > ShallowDepth) RuntimeHelpers.EnsureSufficientExecutionStack();
            budget.Step();
            var value = EvaluateNode(expression, scope);
            budget.HandleValue(value);
            return value;
        }
        catch (TemplateException error) when (!error.HasLocation)
        {
            error.SetLocation(templateName, expression.At);
            throw;
        }
        catch (InsufficientExecutionStackException)
        {
            var error = TooDeep();
            error.SetLocation(templateName, expression.At);
            throw error;
        }
        finally
        {
            depth--;
        }
    }

    object? EvaluateNode(Expression expression, Scope scope)
    {
        switch (expression)
        {
            case Literal literal: return literal.Value;
            case Variable variable: return Lookup(variable.Name, scope);
            case AttributeAccess access: return PythonOps.GetAttribute(Evaluate(access.Target, scope), access.Name);
            case ItemAccess access: return PythonOps.GetItem(Evaluate(access.Target, scope), Evaluate(access.Index, scope));
            case SliceAccess slice:
                return PythonOps.Slice(Evaluate(slice.Target, scope), EvaluateOptional(slice.Start, scope), EvaluateOptional(slice.Stop, scope), EvaluateOptional(slice.Step, scope));
            case CallExpression call: return Call(call, scope, null);
            case FilterExpression filter:
                var input = filter.Value == null ? blockInput : Evaluate(filter.Value, scope);
                return filter.Function(input, EvaluateArguments(filter.Arguments, scope));
            case TestExpression test: return test.Function(Evaluate(test.Value, scope), EvaluateArguments(test.Arguments, scope));
            case CompareExpression compare: return EvaluateCompare(compare, scope);
            case BinaryExpression binary: return PythonOps.Binary(binary.Operator, Evaluate(binary.Left, scope), Evaluate(binary.Right, scope));
            case LogicalExpression logical:
                var left = Evaluate(logical.Left, scope);
                return PythonOps.IsTrue(left) == logical.IsAnd ? Evaluate(logical.Right, scope) : left;
            case UnaryExpression unary:
                var operand = Evaluate(unary.Operand, scope);
                return unary.Operator == UnaryOperator.Not ? !PythonOps.IsTrue(operand) : PythonOps.Negate(operand, unary.Operator == UnaryOperator.Negate);
            case ConcatExpression concat:
                var text = new StringBuilder();
                foreach (var part in concat.Parts)
                {
                    text.Append(PythonFormat.Str(Evaluate(part, scope)));
                    RenderBudget.CheckBuilder(text, "a '~' concatenation");
                }
                return text.ToString();
            case ConditionalExpression conditional:
                if (PythonOps.IsTrue(Evaluate(conditional.Condition, scope))) return Evaluate(conditional.Then, scope);
                return conditional.Otherwise != null ? Evaluate(conditional.Otherwise, scope)
                    : UndefinedValue.WithHint($"the inline if-expression on line {conditional.At.Line} evaluated to false and no else section was defined.");
            case ListLiteral list:
                var items = new List<object?>(list.Items.Length);
                foreach (var item in list.Items) items.Add(Evaluate(item, scope));
                return items;
            case TupleLiteral tuple:
                var elements = new object?[tuple.Items.Length];
                for (var i = 0; i < elements.Length; i++) elements[i] = Evaluate(tuple.Items[i], scope);
                return new TupleValue(elements);
            case DictLiteral dict:
                var result = new DictValue(dict.Pairs.Length);
                foreach (var (key, value) in dict.Pairs) result.Set(Evaluate(key, scope), Evaluate(value, scope));
                return result;
        }
        throw new InvalidOperationException($"unknown expression {expression.GetType().Name}");
    }

    object? EvaluateOptional(Expression? expression, Scope scope) => expression == null ? null : Evaluate(expression, scope);

    bool EvaluateCompare(CompareExpression compare, Scope scope)
    {
        var left = Evaluate(compare.First, scope);
        foreach (var (op, operand) in compare.Rest)
        {
            var right = Evaluate(operand, scope);
            var holds = op switch
            {
                CompareOperator.Equal => PythonOps.AreEqual(left, right),
                CompareOperator.NotEqual => !PythonOps.AreEqual(left, right),
                CompareOperator.In => PythonOps.Contains(right, left),
                CompareOperator.NotIn => !PythonOps.Contains(right, left),
                _ => PythonOps.Compare(left, right, op),
            };
            if (!holds) return false;
            left = right;
        }
        return true;
    }

    CallArguments EvaluateArguments(ArgumentList arguments, Scope scope)
    {
        if (arguments == ArgumentList.Empty) return CallArguments.None;
        var positional = new List<object?>(arguments.Positional.Length);
        foreach (var argument in arguments.Positional) positional.Add(Evaluate(argument, scope));
        if (arguments.Star != null) positional.AddRange(PythonOps.Iterate(Evaluate(arguments.Star, scope)));
        var named = new List<KeyValuePair<string, object?>>(arguments.Named.Length);
        foreach (var (name, value) in arguments.Named) named.Add(new(name, Evaluate(value, scope)));
        if (arguments.DoubleStar != null)
        {
            if (Evaluate(arguments.DoubleStar, scope) is not DictValue extra) throw PythonOps.TypeError("argument after ** must be a mapping");
            foreach (var (key, value) in extra.Items)
                named.Add(new(key as string ?? throw PythonOps.TypeError("keywords must be strings"), value));
        }
        return new CallArguments(positional, named);
    }

    object? Call(CallExpression call, Scope scope, MacroValue? caller)
    {
        var callee = Evaluate(call.Callee, scope);
        var arguments = EvaluateArguments(call.Arguments, scope);
        if (caller != null) arguments = new CallArguments(arguments.Positional, [.. arguments.Named, new("caller", caller)]);
        return callee switch
        {
            MacroValue macro => CallMacro(macro, arguments),
            FunctionValue function => function.Invoke(this, arguments),
            BoundMethodValue method => Methods.Call(method, arguments),
            UndefinedValue undefined => throw undefined.Error(),
            _ => throw PythonOps.TypeError($"'{PythonOps.TypeName(callee)}' object is not callable"),
        };
    }

    /// <summary>Jinja's Macro.__call__: positional, then keyword, then defaults; extra arguments only if the body names varargs/kwargs.</summary>
    string CallMacro(MacroValue macro, CallArguments arguments)
    {
        var definition = macro.Definition;
        if (++macroDepth > MaxMacroDepth) { macroDepth--; throw new TemplateException(TemplateErrorKind.Recursion, "maximum recursion depth exceeded"); }
        try
        {
            RuntimeHelpers.EnsureSufficientExecutionStack();
            var scope = new Scope(macro.Closure);
            var named = arguments.Named.ToList();
            var parameters = definition.Parameters;
            var firstDefault = parameters.Length - definition.Defaults.Length;
            for (var i = 0; i < parameters.Length; i++)
            {
                object? value;
                var at = named.FindIndex(n => n.Key == parameters[i]);
                if (i < arguments.Positional.Count) value = arguments.Positional[i];
                else if (at >= 0) { value = named[at].Value; named.RemoveAt(at); }
                else if (i >= firstDefault) value = Evaluate(definition.Defaults[i - firstDefault], scope);
                else value = UndefinedValue.WithHint($"parameter '{parameters[i]}' was not provided");
                scope.Set(parameters[i], value);
            }
            if (definition.UsesCaller && !parameters.Contains("caller"))
            {
                var at = named.FindIndex(n => n.Key == "caller");
                scope.Set("caller", at >= 0 ? named[at].Value : UndefinedValue.WithHint("No caller defined"));
                if (at >= 0) named.RemoveAt(at);
            }
            if (definition.UsesKwargs)
            {
                var kwargs = new DictValue();
                foreach (var (key, value) in named) kwargs.Set(key, value);
                scope.Set("kwargs", kwargs);
            }
            else if (named.Count > 0)
                throw PythonOps.TypeError(named[0].Key == "caller"
                    ? $"macro '{definition.Name}' was invoked with two values for the special caller argument. This is most likely a bug."
                    : $"macro '{definition.Name}' takes no keyword argument '{named[0].Key}'");
            if (definition.UsesVarargs) scope.Set("varargs", new TupleValue([.. arguments.Positional.Skip(parameters.Length)]));
            else if (arguments.Positional.Count > parameters.Length)
                throw PythonOps.TypeError($"macro '{definition.Name}' takes not more than {parameters.Length} argument(s)");
            var output = new StringBuilder();
            Execute(definition.Body, scope, output);
            return output.ToString();
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateException(TemplateErrorKind.Recursion, "maximum recursion depth exceeded");
        }
        finally
        {
            macroDepth--;
        }
    }
}

/// <summary>The global functions Jinja's sandbox provides (range, dict, namespace).</summary>
internal static class Functions
{
    const long MaxRange = 100000; // jinja2.sandbox.MAX_RANGE

    public static RangeValue Range(CallArguments arguments)
    {
        if (arguments.Named.Count > 0) throw PythonOps.TypeError("range() takes no keyword arguments");
        var bounds = arguments.Positional.Select(v => PythonOps.TryGetInteger(v, out var i) ? i
            : throw PythonOps.TypeError($"'{PythonOps.TypeName(v)}' object cannot be interpreted as an integer")).ToArray();
        var range = bounds.Length switch
        {
            1 => new RangeValue(0, bounds[0], 1),
            2 => new RangeValue(bounds[0], bounds[1], 1),
            3 => bounds[2] != 0 ? new RangeValue(bounds[0], bounds[1], bounds[2]) : throw new TemplateException(TemplateErrorKind.Value, "range() arg 3 must not be zero"),
            0 => throw PythonOps.TypeError("range expected at least 1 argument, got 0"),
            _ => throw PythonOps.TypeError($"range expected at most 3 arguments, got {bounds.Length}"),
        };
        if (range.Count > MaxRange) throw new TemplateException(TemplateErrorKind.Overflow, $"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxRange}).");
        return range;
    }

    /// <summary>dict(mapping_or_pairs, **kwargs), the way Python builds one.</summary>
    public static DictValue Dict(CallArguments arguments)
    {
        if (arguments.Positional.Count > 1) throw PythonOps.TypeError($"dict expected at most 1 argument, got {arguments.Positional.Count}");
        var result = new DictValue();
        if (arguments.Positional.Count == 1) Fill(result, arguments.Positional[0]);
        foreach (var (key, value) in arguments.Named) result.Set(key, value);
        return result;
    }

    static void Fill(DictValue result, object? source)
    {
        if (source is DictValue dict)
        {
            foreach (var (key, value) in dict.Items) result.Set(key, value);
            return;
        }
        var index = 0;
        foreach (var pair in PythonOps.Iterate(source))
        {
            var items = PythonOps.IsIterable(pair) ? PythonOps.ToList(pair)
                : throw PythonOps.TypeError($"cannot convert dictionary update sequence element #{index} to a sequence");
            if (items.Count != 2) throw new TemplateException(TemplateErrorKind.Value, $"dictionary update sequence element #{index} has length {items.Count}; 2 is required");
            result.Set(items[0], items[1]);
            index++;
        }
    }

    public static NamespaceValue Namespace(CallArguments arguments)
    {
        var ns = new NamespaceValue();
        foreach (var (key, value) in Dict(arguments).Items)
            ns.Attributes[key as string ?? throw PythonOps.TypeError("namespace attribute names must be strings")] = value;
        return ns;
    }
}
