using System.Runtime.CompilerServices;

namespace Hone.Tokenization.Templates;

/// <summary>
/// Recursive-descent parser with Jinja's grammar and precedence (parser.py): condexpr &lt; or &lt; and &lt; not &lt; compare &lt;
/// + - &lt; ~ &lt; * / // % &lt; ** &lt; unary minus &lt; postfix (. [] ()) and filters/tests. Unknown filters, tests and tags fail here,
/// with their line and column, rather than at render time.
/// </summary>
internal sealed class Parser
{
    static readonly HashSet<string> UnsupportedTags = ["block", "extends", "include", "import", "from", "autoescape", "do", "trans"];

    readonly List<Token> tokens;
    readonly string? name;
    readonly List<string> openTags = [];
    readonly List<string[]> endTagStack = [];
    int index;
    int loopDepth;
    HashSet<string>? referencedNames; // inside a macro body: which names it mentions (varargs, kwargs, caller)

    Parser(List<Token> tokens, string? name)
    {
        this.tokens = tokens;
        this.name = name;
    }

    public static Statement[] Parse(string source, string? name)
    {
        var parser = new Parser(Lexer.Tokenize(source, name), name);
        try
        {
            var body = parser.Subparse(null);
            if (parser.Current.Kind != TokenKind.End) throw parser.Error($"unexpected {Describe(parser.Current)}", parser.Current);
            return body;
        }
        catch (InsufficientExecutionStackException)
        {
            throw parser.Error("the template nests too deeply", parser.Current);
        }
    }

    Token Current => tokens[index];
    Token Peek => tokens[Math.Min(index + 1, tokens.Count - 1)];
    Token Advance() => tokens[index++];

    TemplateSyntaxException Error(string reason, Token at) => new(reason, name, at.Position);
    TemplateSyntaxException Error(string reason, SourcePosition at) => new(reason, name, at);

    static string Describe(Token token) => token.Kind switch
    {
        TokenKind.Name or TokenKind.Operator => $"'{token.Text}'",
        TokenKind.String => "string",
        TokenKind.Integer => "integer",
        TokenKind.Float => "float",
        TokenKind.VariableEnd => "end of print statement",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VariableBegin => "begin of print statement",
        TokenKind.BlockBegin => "begin of statement block",
        TokenKind.Text => "template data / text",
        _ => "end of template",
    };

    static string Describe(TokenKind kind) => Describe(new Token(kind, "", null, default));

    Token Expect(TokenKind kind)
    {
        if (Current.Kind != kind) throw Error($"expected token '{Describe(kind).Trim('\'')}', got {Describe(Current)}", Current);
        return Advance();
    }

    Token ExpectOperator(string op)
    {
        if (!Current.IsOperator(op)) throw Error($"expected token '{op}', got {Describe(Current)}", Current);
        return Advance();
    }

    Token ExpectName(string? word = null)
    {
        if (Current.Kind != TokenKind.Name || (word != null && Current.Text != word))
            throw Error($"expected token '{word ?? "name"}', got {Describe(Current)}", Current);
        return Advance();
    }

    bool SkipOperator(string op)
    {
        if (!Current.IsOperator(op)) return false;
        index++;
        return true;
    }

    bool SkipName(string word)
    {
        if (!Current.IsName(word)) return false;
        index++;
        return true;
    }

    // ---------------------------------------------------------------------------------------------------------- statements

    Statement[] Subparse(string[]? endTags)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        var body = new List<Statement>();
        if (endTags != null) endTagStack.Add(endTags);
        try
        {
            while (Current.Kind != TokenKind.End)
            {
                var token = Current;
                switch (token.Kind)
                {
                    case TokenKind.Text:
                        body.Add(new TextStatement(token.Position, token.Text));
                        Advance();
                        break;
                    case TokenKind.VariableBegin:
                        Advance();
                        body.Add(new OutputStatement(token.Position, ParseTuple(withConditional: true)));
                        Expect(TokenKind.VariableEnd);
                        break;
                    case TokenKind.BlockBegin:
                        Advance();
                        if (endTags != null && Current.Kind == TokenKind.Name && endTags.Contains(Current.Text)) return [.. body];
                        body.AddRange(ParseStatement());
                        Expect(TokenKind.BlockEnd);
                        break;
                    default:
                        throw Error($"unexpected {Describe(token)}", token);
                }
            }
            return [.. body];
        }
        finally
        {
            if (endTags != null) endTagStack.RemoveAt(endTagStack.Count - 1);
        }
    }

    /// <summary>The body of a block statement up to one of <paramref name="endTags"/>; leaves the end tag's name as the current token.</summary>
    Statement[] ParseBody(params string[] endTags)
    {
        SkipOperator(":");
        Expect(TokenKind.BlockEnd);
        var body = Subparse(endTags);
        if (Current.Kind == TokenKind.End) throw UnexpectedEnd(endTags);
        return body;
    }

    Statement[] ParseBodyAndDropEnd(string endTag)
    {
        var body = ParseBody(endTag);
        Advance();
        return body;
    }

    TemplateSyntaxException UnexpectedEnd(string[] endTags) => UnknownTag(null, endTags, Current);

    /// <summary>Jinja's wording for an unknown tag or a premature end of template, naming what it was looking for.</summary>
    TemplateSyntaxException UnknownTag(string? tag, string[]? currentEnd, Token at)
    {
        var stack = new List<string[]>(endTagStack);
        if (currentEnd != null && (stack.Count == 0 || stack[^1] != currentEnd)) stack.Add(currentEnd);
        var message = new List<string> { tag == null ? "Unexpected end of template." : $"Encountered unknown tag '{tag}'." };
        if (stack.Count > 0)
        {
            var looking = string.Join(" or ", stack[^1].Select(t => $"'{t}'"));
            if (tag != null && stack.Any(s => s.Contains(tag)))
                message.Add($"You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for {looking}.");
            else message.Add($"Jinja was looking for the following tags: {looking}.");
        }
        if (openTags.Count > 0) message.Add($"The innermost block that needs to be closed is '{openTags[^1]}'.");
        return Error(string.Join(" ", message), at);
    }

    IEnumerable<Statement> ParseStatement()
    {
        var token = Current;
        if (token.Kind != TokenKind.Name) throw Error("tag name expected", token);
        if (UnsupportedTags.Contains(token.Text))
            throw Error($"the '{token.Text}' tag is not supported (a chat template is a single self-contained template)", token);
        openTags.Add(token.Text);
        var known = true;
        try
        {
            switch (token.Text)
            {
                case "if": return [ParseIf()];
                case "for": return [ParseFor()];
                case "set": return [ParseSet()];
                case "macro": return [ParseMacro()];
                case "call": return [ParseCallBlock()];
                case "filter": return [ParseFilterBlock()];
                case "with": return [ParseWith()];
                case "print": return ParsePrint();
                case "generation":
                    Advance();
                    return [new ScopedBlockStatement(token.Position, ParseBodyAndDropEnd("endgeneration"))];
                case "break" or "continue":
                    Advance();
                    if (loopDepth == 0) throw Error($"'{token.Text}' outside of a loop", token);
                    return [token.Text == "break" ? new BreakStatement(token.Position) : new ContinueStatement(token.Position)];
            }
            openTags.RemoveAt(openTags.Count - 1);
            known = false;
            throw UnknownTag(token.Text, null, token);
        }
        finally
        {
            if (known) openTags.RemoveAt(openTags.Count - 1);
        }
    }

    IfStatement ParseIf()
    {
        var at = Advance().Position;
        var branches = new List<(Expression, Statement[])>();
        while (true)
        {
            var condition = ParseTuple(withConditional: false);
            var body = ParseBody("elif", "else", "endif");
            branches.Add((condition, body));
            var end = Advance();
            if (end.Text == "elif") continue;
            var otherwise = end.Text == "else" ? ParseBodyAndDropEnd("endif") : [];
            return new IfStatement(at, [.. branches], otherwise);
        }
    }

    ForStatement ParseFor()
    {
        var at = Advance().Position;
        var target = ParseAssignTarget(withTuple: true, withNamespace: false, extraEnd: "in");
        ExpectName("in");
        var iterable = ParseTuple(withConditional: false, extraEnd: "recursive");
        Expression? filter = SkipName("if") ? ParseExpression() : null;
        if (Current.IsName("recursive")) throw Error("recursive for loops are not supported", Current);
        loopDepth++;
        var body = ParseBody("endfor", "else");
        loopDepth--;
        var otherwise = Advance().Text == "else" ? ParseBodyAndDropEnd("endfor") : [];
        return new ForStatement(at, target, iterable, filter, body, otherwise);
    }

    Statement ParseSet()
    {
        var at = Advance().Position;
        var target = ParseAssignTarget(withTuple: true, withNamespace: true);
        if (SkipOperator("=")) return new SetStatement(at, target, ParseTuple(withConditional: true));
        var filter = ParseFilterChain(null, startInline: false);
        return new SetBlockStatement(at, target, filter, ParseBodyAndDropEnd("endset"));
    }

    MacroStatement ParseMacro()
    {
        var at = Advance().Position;
        var macroName = ExpectName().Text;
        return new MacroStatement(at, ParseMacroDefinition(at, macroName, "endmacro"));
    }

    CallBlockStatement ParseCallBlock()
    {
        var at = Advance().Position;
        var outerNames = referencedNames;
        referencedNames = [];
        var (parameters, defaults) = Current.IsOperator("(") ? ParseSignature() : ([], []);
        var callerNames = referencedNames;
        referencedNames = outerNames;
        var call = ParseExpression() as CallExpression ?? throw Error("expected call", at);
        var caller = ParseMacroDefinition(at, "caller", parameters, defaults, callerNames, "endcall");
        return new CallBlockStatement(at, call, caller);
    }

    MacroDefinition ParseMacroDefinition(SourcePosition at, string macroName, string endTag)
    {
        var outerNames = referencedNames;
        referencedNames = [];
        var (parameters, defaults) = ParseSignature();
        var names = referencedNames;
        referencedNames = outerNames;
        return ParseMacroDefinition(at, macroName, parameters, defaults, names, endTag);
    }

    MacroDefinition ParseMacroDefinition(SourcePosition at, string macroName, string[] parameters, Expression[] defaults, HashSet<string> names, string endTag)
    {
        var outerNames = referencedNames;
        var outerLoopDepth = loopDepth;
        referencedNames = names;
        loopDepth = 0; // break/continue cannot cross a macro boundary
        var body = ParseBodyAndDropEnd(endTag);
        loopDepth = outerLoopDepth;
        referencedNames = outerNames;
        outerNames?.UnionWith(names);
        return new MacroDefinition(at, macroName, parameters, defaults, body,
            names.Contains("varargs"), names.Contains("kwargs"), names.Contains("caller"));
    }

    (string[] Parameters, Expression[] Defaults) ParseSignature()
    {
        ExpectOperator("(");
        var parameters = new List<string>();
        var defaults = new List<Expression>();
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0) ExpectOperator(",");
            var parameter = ExpectName();
            if (SkipOperator("=")) defaults.Add(ParseExpression());
            else if (defaults.Count > 0) throw Error("non-default argument follows default argument", parameter);
            parameters.Add(parameter.Text);
        }
        ExpectOperator(")");
        return ([.. parameters], [.. defaults]);
    }

    FilterBlockStatement ParseFilterBlock()
    {
        var at = Advance().Position;
        var filter = ParseFilterChain(null, startInline: true)!;
        return new FilterBlockStatement(at, filter, ParseBodyAndDropEnd("endfilter"));
    }

    WithStatement ParseWith()
    {
        var at = Advance().Position;
        var assignments = new List<(AssignTarget, Expression)>();
        while (Current.Kind != TokenKind.BlockEnd)
        {
            if (assignments.Count > 0) ExpectOperator(",");
            var target = ParseAssignTarget(withTuple: true, withNamespace: false);
            ExpectOperator("=");
            assignments.Add((target, ParseExpression()));
        }
        return new WithStatement(at, [.. assignments], ParseBodyAndDropEnd("endwith"));
    }

    List<Statement> ParsePrint()
    {
        Advance();
        var outputs = new List<Statement>();
        while (Current.Kind != TokenKind.BlockEnd)
        {
            if (outputs.Count > 0) ExpectOperator(",");
            var value = ParseExpression();
            outputs.Add(new OutputStatement(value.At, value));
        }
        return outputs;
    }

    AssignTarget ParseAssignTarget(bool withTuple, bool withNamespace, string? extraEnd = null)
    {
        if (withNamespace && Current.Kind == TokenKind.Name && Peek.IsOperator("."))
        {
            var ns = Advance();
            Advance();
            return new NamespaceTarget(ns.Position, ns.Text, ExpectName().Text);
        }
        var expression = withTuple ? ParseTuple(withConditional: true, simplified: true, extraEnd: extraEnd) : ParsePrimary();
        return ToTarget(expression);
    }

    AssignTarget ToTarget(Expression expression) => expression switch
    {
        Variable v when v.Name is "true" or "false" or "none" or "True" or "False" or "None" => throw Error($"can't assign to '{v.Name}'", v.At),
        Variable v => new NameTarget(v.At, v.Name),
        TupleLiteral t => new TupleTarget(t.At, [.. t.Items.Select(ToTarget)]),
        _ => throw Error($"can't assign to '{expression.GetType().Name.ToLowerInvariant()}'", expression.At),
    };

    // --------------------------------------------------------------------------------------------------------- expressions

    Expression ParseExpression(bool withConditional = true)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack(); // absurd nesting becomes a syntax error, not a stack overflow
        return withConditional ? ParseConditional() : ParseOr();
    }

    Expression ParseConditional()
    {
        var at = Current.Position;
        var result = ParseOr();
        while (SkipName("if"))
        {
            var condition = ParseOr();
            Expression? otherwise = SkipName("else") ? ParseConditional() : null;
            result = new ConditionalExpression(at, condition, result, otherwise);
            at = Current.Position;
        }
        return result;
    }

    Expression ParseOr()
    {
        var at = Current.Position;
        var left = ParseAnd();
        while (SkipName("or")) { left = new LogicalExpression(at, false, left, ParseAnd()); at = Current.Position; }
        return left;
    }

    Expression ParseAnd()
    {
        var at = Current.Position;
        var left = ParseNot();
        while (SkipName("and")) { left = new LogicalExpression(at, true, left, ParseNot()); at = Current.Position; }
        return left;
    }

    Expression ParseNot()
    {
        if (Current.IsName("not"))
        {
            var at = Advance().Position;
            return new UnaryExpression(at, UnaryOperator.Not, ParseNot());
        }
        return ParseCompare();
    }

    Expression ParseCompare()
    {
        var at = Current.Position;
        var first = ParseMath1();
        var rest = new List<(CompareOperator, Expression)>();
        while (true)
        {
            CompareOperator op;
            if (Current.Kind == TokenKind.Operator && Current.Text is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                op = Current.Text switch
                {
                    "==" => CompareOperator.Equal, "!=" => CompareOperator.NotEqual, "<" => CompareOperator.Less,
                    "<=" => CompareOperator.LessOrEqual, ">" => CompareOperator.Greater, _ => CompareOperator.GreaterOrEqual,
                };
                Advance();
            }
            else if (Current.IsName("in")) { Advance(); op = CompareOperator.In; }
            else if (Current.IsName("not") && Peek.IsName("in")) { index += 2; op = CompareOperator.NotIn; }
            else break;
            rest.Add((op, ParseMath1()));
        }
        return rest.Count == 0 ? first : new CompareExpression(at, first, [.. rest]);
    }

    Expression ParseMath1()
    {
        var at = Current.Position;
        var left = ParseConcat();
        while (Current.Kind == TokenKind.Operator && Current.Text is "+" or "-")
        {
            var op = Advance().Text == "+" ? BinaryOperator.Add : BinaryOperator.Subtract;
            left = new BinaryExpression(at, op, left, ParseConcat());
            at = Current.Position;
        }
        return left;
    }

    Expression ParseConcat()
    {
        var at = Current.Position;
        var first = ParseMath2();
        if (!Current.IsOperator("~")) return first;
        var parts = new List<Expression> { first };
        while (SkipOperator("~")) parts.Add(ParseMath2());
        return new ConcatExpression(at, [.. parts]);
    }

    Expression ParseMath2()
    {
        var at = Current.Position;
        var left = ParsePower();
        while (Current.Kind == TokenKind.Operator && Current.Text is "*" or "/" or "//" or "%")
        {
            var op = Advance().Text switch
            {
                "*" => BinaryOperator.Multiply, "/" => BinaryOperator.Divide, "//" => BinaryOperator.FloorDivide, _ => BinaryOperator.Modulo,
            };
            left = new BinaryExpression(at, op, left, ParsePower());
            at = Current.Position;
        }
        return left;
    }

    Expression ParsePower()
    {
        var at = Current.Position;
        var left = ParseUnary(withFilter: true);
        while (SkipOperator("**")) { left = new BinaryExpression(at, BinaryOperator.Power, left, ParseUnary(withFilter: true)); at = Current.Position; }
        return left;
    }

    Expression ParseUnary(bool withFilter)
    {
        var at = Current.Position;
        Expression node;
        if (SkipOperator("-")) node = new UnaryExpression(at, UnaryOperator.Negate, ParseUnary(withFilter: false));
        else if (SkipOperator("+")) node = new UnaryExpression(at, UnaryOperator.Plus, ParseUnary(withFilter: false));
        else node = ParsePrimary();
        node = ParsePostfix(node);
        return withFilter ? ParseFilterTestCall(node) : node;
    }

    Expression ParsePrimary()
    {
        var token = Current;
        switch (token.Kind)
        {
            case TokenKind.Name:
                Advance();
                switch (token.Text)
                {
                    case "true" or "True": return new Literal(token.Position, true);
                    case "false" or "False": return new Literal(token.Position, false);
                    case "none" or "None": return new Literal(token.Position, null);
                }
                referencedNames?.Add(token.Text);
                return new Variable(token.Position, token.Text);
            case TokenKind.String:
                Advance();
                var text = (string)token.Value!;
                while (Current.Kind == TokenKind.String) text += (string)Advance().Value!;
                return new Literal(token.Position, text);
            case TokenKind.Integer or TokenKind.Float:
                Advance();
                return new Literal(token.Position, token.Value);
            case TokenKind.Operator when token.Text == "(":
                Advance();
                var inner = ParseTuple(withConditional: true, explicitParentheses: true);
                ExpectOperator(")");
                return inner;
            case TokenKind.Operator when token.Text == "[":
                return ParseList();
            case TokenKind.Operator when token.Text == "{":
                return ParseDict();
        }
        throw Error($"unexpected {Describe(token)}", token);
    }

    /// <summary>Comma-separated expressions; a tuple when there is a comma. <paramref name="simplified"/> allows only primaries (assignment targets).</summary>
    Expression ParseTuple(bool withConditional, bool simplified = false, string? extraEnd = null, bool explicitParentheses = false)
    {
        var at = Current.Position;
        var items = new List<Expression>();
        var isTuple = false;
        while (true)
        {
            if (items.Count > 0) ExpectOperator(",");
            if (IsTupleEnd(extraEnd)) break;
            items.Add(simplified ? ParsePrimary() : ParseExpression(withConditional));
            if (Current.IsOperator(",")) isTuple = true;
            else break;
        }
        if (!isTuple)
        {
            if (items.Count > 0) return items[0];
            if (!explicitParentheses) throw Error($"Expected an expression, got {Describe(Current)}", Current);
        }
        return new TupleLiteral(at, [.. items]);
    }

    bool IsTupleEnd(string? extraEnd) =>
        Current.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd || Current.IsOperator(")") || (extraEnd != null && Current.IsName(extraEnd));

    ListLiteral ParseList()
    {
        var at = ExpectOperator("[").Position;
        var items = new List<Expression>();
        while (!Current.IsOperator("]"))
        {
            if (items.Count > 0) ExpectOperator(",");
            if (Current.IsOperator("]")) break;
            items.Add(ParseExpression());
        }
        ExpectOperator("]");
        return new ListLiteral(at, [.. items]);
    }

    DictLiteral ParseDict()
    {
        var at = ExpectOperator("{").Position;
        var pairs = new List<(Expression, Expression)>();
        while (!Current.IsOperator("}"))
        {
            if (pairs.Count > 0) ExpectOperator(",");
            if (Current.IsOperator("}")) break;
            var key = ParseExpression();
            ExpectOperator(":");
            pairs.Add((key, ParseExpression()));
        }
        ExpectOperator("}");
        return new DictLiteral(at, [.. pairs]);
    }

    Expression ParsePostfix(Expression node)
    {
        while (true)
        {
            if (Current.IsOperator(".") || Current.IsOperator("[")) node = ParseSubscript(node);
            else if (Current.IsOperator("(")) node = ParseCall(node);
            else return node;
        }
    }

    Expression ParseFilterTestCall(Expression node)
    {
        while (true)
        {
            if (Current.IsOperator("|")) node = ParseFilterChain(node, startInline: false)!;
            else if (Current.IsName("is")) node = ParseTest(node);
            else if (Current.IsOperator("(")) node = ParseCall(node);
            else return node;
        }
    }

    Expression ParseSubscript(Expression node)
    {
        var token = Advance();
        if (token.Text == ".")
        {
            var attribute = Advance();
            if (attribute.Kind == TokenKind.Name) return new AttributeAccess(token.Position, node, attribute.Text);
            if (attribute.Kind != TokenKind.Integer) throw Error("expected name or number", attribute);
            return new ItemAccess(token.Position, node, new Literal(attribute.Position, attribute.Value));
        }
        var arguments = new List<Expression>();
        while (!Current.IsOperator("]"))
        {
            if (arguments.Count > 0) ExpectOperator(",");
            arguments.Add(ParseSubscribed(node, token.Position));
        }
        ExpectOperator("]");
        if (arguments.Count == 1 && arguments[0] is SliceAccess slice) return slice;
        if (arguments.Any(a => a is SliceAccess)) throw Error("extended slices are not supported", token);
        if (arguments.Count == 1) return new ItemAccess(token.Position, node, arguments[0]);
        return new ItemAccess(token.Position, node, new TupleLiteral(token.Position, [.. arguments]));
    }

    /// <summary>One subscript: an expression, or a slice <c>start:stop:step</c> (returned as a SliceAccess on <paramref name="target"/>).</summary>
    Expression ParseSubscribed(Expression target, SourcePosition at)
    {
        Expression? start = null;
        if (!Current.IsOperator(":"))
        {
            start = ParseExpression();
            if (!Current.IsOperator(":")) return start;
        }
        Advance();
        Expression? stop = Current.IsOperator(":") || Current.IsOperator("]") || Current.IsOperator(",") ? null : ParseExpression();
        Expression? step = null;
        if (SkipOperator(":") && !Current.IsOperator("]") && !Current.IsOperator(",")) step = ParseExpression();
        return new SliceAccess(at, target, start, stop, step);
    }

    CallExpression ParseCall(Expression callee) => new(callee.At, callee, ParseCallArguments()); // errors point at what is called

    ArgumentList ParseCallArguments()
    {
        var open = ExpectOperator("(");
        var positional = new List<Expression>();
        var named = new List<(string, Expression)>();
        Expression? star = null, doubleStar = null;
        var requireComma = false;
        while (!Current.IsOperator(")"))
        {
            if (requireComma)
            {
                ExpectOperator(",");
                if (Current.IsOperator(")")) break;
            }
            if (SkipOperator("*"))
            {
                if (star != null || doubleStar != null) throw Error("invalid syntax for function call expression", open);
                star = ParseExpression();
            }
            else if (SkipOperator("**"))
            {
                if (doubleStar != null) throw Error("invalid syntax for function call expression", open);
                doubleStar = ParseExpression();
            }
            else if (Current.Kind == TokenKind.Name && Peek.IsOperator("="))
            {
                if (doubleStar != null) throw Error("invalid syntax for function call expression", open);
                var key = Advance().Text;
                Advance();
                named.Add((key, ParseExpression()));
            }
            else
            {
                if (star != null || doubleStar != null || named.Count > 0) throw Error("invalid syntax for function call expression", open);
                positional.Add(ParseExpression());
            }
            requireComma = true;
        }
        ExpectOperator(")");
        return new ArgumentList([.. positional], [.. named], star, doubleStar);
    }

    /// <summary><c>| name(args) | name2 ...</c>; with <paramref name="startInline"/> the first filter has no leading pipe (filter blocks).</summary>
    FilterExpression? ParseFilterChain(Expression? node, bool startInline)
    {
        FilterExpression? result = null;
        while (Current.IsOperator("|") || startInline)
        {
            if (!startInline) Advance();
            var nameToken = ExpectName();
            var filterName = nameToken.Text;
            while (SkipOperator(".")) filterName += "." + ExpectName().Text;
            var arguments = Current.IsOperator("(") ? ParseCallArguments() : ArgumentList.Empty;
            var function = Filters.Find(filterName) ?? throw Error($"No filter named '{filterName}'.", nameToken);
            result = new FilterExpression(nameToken.Position, result ?? node, filterName, function, arguments);
            startInline = false;
        }
        return result;
    }

    Expression ParseTest(Expression node)
    {
        var at = Advance().Position;
        var negated = SkipName("not");
        var nameToken = ExpectName();
        var testName = nameToken.Text;
        while (SkipOperator(".")) testName += "." + ExpectName().Text;
        ArgumentList arguments;
        if (Current.IsOperator("(")) arguments = ParseCallArguments();
        else if ((Current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                  || Current.IsOperator("(") || Current.IsOperator("[") || Current.IsOperator("{"))
                 && !Current.IsName("else") && !Current.IsName("or") && !Current.IsName("and"))
        {
            if (Current.IsName("is")) throw Error("You cannot chain multiple tests with is", Current);
            arguments = new ArgumentList([ParsePostfix(ParsePrimary())], [], null, null);
        }
        else arguments = ArgumentList.Empty;
        var function = Tests.Find(testName) ?? throw Error($"No test named '{testName}'.", nameToken);
        Expression test = new TestExpression(at, node, testName, function, arguments);
        return negated ? new UnaryExpression(at, UnaryOperator.Not, test) : test;
    }
}
