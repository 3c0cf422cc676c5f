using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Tokenization.Templates;
using Xunit;

namespace Hone.Tests.Templates;

/// <summary>
/// The interpreter's own behaviour: whitespace rules, scoping, value formatting, error locations, the public API. Most language
/// semantics are also checked against real Jinja in the snippet fixture (ChatTemplateFixtureTests); these cover what a fixture
/// cannot (locations, options, input conversion) and pin the rules a reader most needs.
/// </summary>
public class ChatTemplateTests
{
    static string Render(string source, object? variables = null)
    {
        var values = variables switch
        {
            null => new Dictionary<string, object?>(),
            IReadOnlyDictionary<string, object?> d => d,
            _ => JsonSerializer.SerializeToNode(variables)!.AsObject().ToDictionary(p => p.Key, p => (object?)p.Value?.DeepClone()),
        };
        return ChatTemplate.Parse(source, "test").Render(values);
    }

    static T Fails<T>(string source, object? variables = null) where T : TemplateException => Assert.Throws<T>(() => Render(source, variables));

    // ------------------------------------------------------------------------------------------------------- whitespace

    [Fact]
    public void Block_tags_eat_their_newline_and_indentation_but_expressions_do_not()
    {
        var template = "<list>\n  {% for x in items %}\n    {{ x }}\n  {% endfor %}\n</list>\n";
        Assert.Equal("<list>\n    a\n    b\n</list>", Render(template, new { items = new[] { "a", "b" } }));
    }

    [Fact]
    public void Minus_strips_all_whitespace_on_its_side_and_plus_keeps_the_indentation()
    {
        Assert.Equal("[x]", Render("[  \n {{- 'x' -}} \n\n ]"));
        Assert.Equal("a\n  b", Render("a\n  {%+ if true %}b{% endif %}"));
        Assert.Equal("ab", Render("a {#- comment -#} b"));
    }

    [Fact]
    public void Newlines_are_normalized_and_one_trailing_newline_is_dropped()
    {
        Assert.Equal("a\nb\n", Render("a\r\nb\r\n\r\n"));
    }

    // ------------------------------------------------------------------------------------------------ loops and scoping

    [Fact]
    public void Loop_variables_describe_the_position()
    {
        var text = Render("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first|int }}{{ loop.last|int }}{{ loop.length }} {% endfor %}");
        Assert.Equal("103103 212003 321013 ", text);
    }

    [Fact]
    public void Set_inside_a_loop_does_not_leak_so_templates_use_a_namespace()
    {
        const string template = "{% set count = 0 %}{% set ns = namespace(count=0) %}" +
                                "{% for m in messages %}{% set count = count + 1 %}{% set ns.count = ns.count + 1 %}{% endfor %}{{ count }}/{{ ns.count }}";
        Assert.Equal("0/3", Render(template, new { messages = new[] { 1, 2, 3 } }));
    }

    [Fact]
    public void Break_continue_else_and_unpacking_work_in_loops()
    {
        Assert.Equal("0,2,3", Render("{% for i in range(10) %}{% if i == 1 %}{% continue %}{% elif i > 3 %}{% break %}{% endif %}{{ i }}{{ ',' if i < 3 }}{% endfor %}"));
        Assert.Equal("none", Render("{% for x in [] %}{{ x }}{% else %}none{% endfor %}"));
        Assert.Equal("a=1;b=2;", Render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"));
    }

    [Fact]
    public void Macros_take_defaults_and_keywords_and_may_recurse()
    {
        const string template = "{% macro type_name(spec) %}{% if spec.type == 'array' %}list[{{ type_name(spec['items']) }}]{% else %}{{ spec.type }}{% endif %}{% endmacro %}" +
                                "{{ type_name({'type': 'array', 'items': {'type': 'array', 'items': {'type': 'int'}}}) }}";
        Assert.Equal("list[list[int]]", Render(template));
        Assert.Equal("<b>hi</b>", Render("{% macro tag(body, name='b') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}{{ tag(body='hi') }}"));
    }

    // ------------------------------------------------------------------------------------------------- python semantics

    [Fact]
    public void Values_print_as_python_prints_them()
    {
        var text = Render("{{ none }} {{ true }} {{ 1.0 }} {{ 1e16 }} {{ 0.1 + 0.2 }} {{ 7 // -2 }} {{ -7 % 3 }} {{ [1, 'a', none] }} {{ {'k': (1,)} }} {{ missing }}|");
        Assert.Equal("None True 1.0 1e+16 0.30000000000000004 -4 2 [1, 'a', None] {'k': (1,)} |", text);
    }

    [Fact]
    public void Tojson_is_python_json_dumps_with_non_ascii_kept()
    {
        var variables = new Dictionary<string, object?> { ["tool"] = JsonNode.Parse("""{"name": "café", "args": {"n": 1.50, "list": [true, null]}}""") };
        Assert.Equal("""{"name": "café", "args": {"n": 1.5, "list": [true, null]}}""", Render("{{ tool | tojson }}", variables));
        Assert.Equal("{\n  \"n\": 1.5,\n  \"list\": [\n    true,\n    null\n  ]\n}", Render("{{ tool.args | tojson(indent=2) }}", variables));
        Assert.Equal("""{"args":{"list":[true,null],"n":1.5},"name":"café"}""", Render("{{ tool | tojson(separators=(',', ':'), sort_keys=true) }}", variables));
    }

    [Fact]
    public void Undefined_prints_empty_and_is_false_but_fails_when_used()
    {
        Assert.Equal("[][False][0]", Render("[{{ nothing }}][{{ nothing is defined }}][{{ nothing | length }}]"));
        var error = Fails<TemplateException>("{{ message.content + '!' }}", new { message = new { role = "user" } });
        Assert.Equal(TemplateErrorKind.Undefined, error.Kind);
        Assert.Equal("'dict object' has no attribute 'content'", error.Reason);
    }

    [Fact]
    public void Strings_are_indexed_by_code_point_like_python()
    {
        Assert.Equal("3|🙂|b🙂a", Render("{{ s | length }}|{{ s[1] }}|{{ s[::-1] }}", new { s = "a🙂b" }));
    }

    [Fact]
    public void Lists_and_dicts_cannot_be_mutated_as_in_the_sandbox()
    {
        var error = Fails<TemplateException>("{{ items.append(4) }}", new { items = new[] { 1 } });
        Assert.Equal(TemplateErrorKind.Security, error.Kind);
        Assert.Equal("access to attribute 'append' of 'list' object is unsafe.", error.Reason);
    }

    // ----------------------------------------------------------------------------------------------- errors and locations

    [Fact]
    public void Syntax_errors_name_line_and_column()
    {
        var error = Fails<TemplateSyntaxException>("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}");
        Assert.Equal((3, 10), (error.Line, error.Column));
        Assert.Contains("line 3, column 10", error.Message);
        Assert.Contains("template 'test'", error.Message);
    }

    [Fact]
    public void Unknown_filters_tests_and_tags_are_syntax_errors_where_they_appear()
    {
        var filter = Fails<TemplateSyntaxException>("\n  {{ x | shout }}");
        Assert.Equal(("No filter named 'shout'.", 2, 10), (filter.Reason, filter.Line, filter.Column));
        var test = Fails<TemplateSyntaxException>("{% if x is loud %}{% endif %}");
        Assert.Equal(("No test named 'loud'.", 1), (test.Reason, test.Line));
        var tag = Fails<TemplateSyntaxException>("{% for x in y %}\n{% frobnicate %}{% endfor %}");
        Assert.Equal(2, tag.Line);
        Assert.StartsWith("Encountered unknown tag 'frobnicate'. Jinja was looking for the following tags: 'endfor' or 'else'.", tag.Reason);
        var include = Fails<TemplateSyntaxException>("{% include 'other.jinja' %}");
        Assert.Contains("'include' tag is not supported", include.Reason);
        var unclosed = Fails<TemplateSyntaxException>("{% for x in y %}{{ x }}");
        Assert.Equal("Unexpected end of template. Jinja was looking for the following tags: 'endfor' or 'else'. The innermost block that needs to be closed is 'for'.", unclosed.Reason);
    }

    [Fact]
    public void Runtime_errors_name_the_line_of_the_failing_expression()
    {
        const string template = "{% for m in messages %}\n{% if m.role == 'system' %}\n{{ raise_exception('System role not supported') }}\n{% endif %}\n{% endfor %}";
        var raised = Fails<TemplateException>(template, new { messages = new[] { new { role = "system" } } });
        Assert.Equal((TemplateErrorKind.Raised, "System role not supported", 3), (raised.Kind, raised.Reason, raised.Line));
        Assert.Equal("System role not supported (template 'test', line 3, column 4)", raised.Message);

        var type = Fails<TemplateException>("x\n{{ 'a' ~ ('<b>' + m.content) }}", new { m = new { content = (string?)null } });
        Assert.Equal((TemplateErrorKind.Type, "can only concatenate str (not \"NoneType\") to str", 2, 11), (type.Kind, type.Reason, type.Line, type.Column));
        Assert.Equal("TypeError", type.PythonExceptionName);
    }

    [Fact]
    public void Endless_macro_recursion_is_a_recursion_error_not_a_crash()
    {
        var error = Fails<TemplateException>("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}");
        Assert.Equal((TemplateErrorKind.Recursion, "maximum recursion depth exceeded"), (error.Kind, error.Reason));
    }

    [Fact]
    public void Absurdly_deep_nesting_is_a_syntax_error_not_a_stack_overflow()
    {
        var source = "{{ " + new string('(', 100_000) + "1" + new string(')', 100_000) + " }}";
        Assert.Equal("the template nests too deeply", Assert.Throws<TemplateSyntaxException>(() => ChatTemplate.Parse(source)).Reason);
    }

    [Fact]
    public void Python_features_without_an_implementation_fail_instead_of_rendering_something_else()
    {
        Assert.Equal(TemplateErrorKind.Unsupported, Fails<TemplateException>("{{ 'a'.encode() }}").Kind);
        Assert.Equal(TemplateErrorKind.Unsupported, Fails<TemplateException>("{{ [1, 2]|select('odd') }}").Kind); // Python prints a generator's address
    }

    // ------------------------------------------------------------------------------------------------------------ API

    static readonly string ChatMl =
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    static JsonArray Conversation(params (string Role, string Content)[] messages) =>
        new([.. messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content })]);

    [Fact]
    public void Apply_passes_what_hugging_face_passes()
    {
        const string probe = "{{ bos_token }}|{{ eos_token is defined }}|{{ tools is none }}|{{ documents is none }}|{{ add_generation_prompt }}|{{ messages | length }}|{{ date_string }}";
        var template = ChatTemplate.Parse(probe);
        var options = new ChatTemplateOptions { BosToken = "<s>", AddGenerationPrompt = true, Extra = new Dictionary<string, object?> { ["date_string"] = "1 Jan" } };
        Assert.Equal("<s>|False|True|True|True|1|1 Jan", template.Apply(Conversation(("user", "hi")), options));
        var tools = new ChatTemplateOptions { Tools = [new JsonObject { ["type"] = "function" }] };
        Assert.Equal("|False|False|True|False|1|", template.Apply(Conversation(("user", "hi")), tools));
        Assert.Throws<ArgumentException>(() => template.Apply([], new ChatTemplateOptions { Extra = new Dictionary<string, object?> { ["messages"] = 1 } }));
    }

    [Fact]
    public void Strftime_now_reads_the_injected_clock()
    {
        var template = ChatTemplate.Parse("Today Date: {{ strftime_now('%d %b %Y') }}");
        var options = new ChatTemplateOptions { Clock = () => new DateTime(2024, 7, 26, 9, 30, 0) };
        Assert.Equal("Today Date: 26 Jul 2024", template.Apply([], options));
    }

    [Fact]
    public void Continue_final_message_leaves_the_last_turn_open()
    {
        var template = ChatTemplate.Parse(ChatMl);
        var conversation = Conversation(("user", "Write JSON"), ("assistant", "Sure: "));
        var open = template.Apply(conversation, new ChatTemplateOptions { ContinueFinalMessage = true });
        Assert.Equal("<|im_start|>user\nWrite JSON<|im_end|>\n<|im_start|>assistant\nSure: ", open);
        var trimming = ChatTemplate.Parse("{% for m in messages %}[{{ m.content | trim }}]{% endfor %}");
        Assert.Equal("[Write JSON][Sure:", trimming.Apply(conversation, new ChatTemplateOptions { ContinueFinalMessage = true }));
        Assert.Throws<ArgumentException>(() => template.Apply(conversation, new ChatTemplateOptions { ContinueFinalMessage = true, AddGenerationPrompt = true }));
    }

    [Fact]
    public void Render_accepts_clr_values_and_json_elements()
    {
        var variables = new Dictionary<string, object?>
        {
            ["n"] = 3,
            ["f"] = 0.1f,
            ["names"] = new List<string> { "a", "b" },
            ["map"] = new Dictionary<string, int> { ["x"] = 1 },
            ["element"] = JsonDocument.Parse("""{"int": 2, "float": 2.0, "big": 1e3}""").RootElement,
        };
        Assert.Equal("3 0.1 a,b 1 2 2.0 1000.0", Render("{{ n }} {{ f }} {{ names|join(',') }} {{ map.x }} {{ element.int }} {{ element.float }} {{ element.big }}", variables));
        Assert.Throws<ArgumentException>(() => Render("{{ x }}", new Dictionary<string, object?> { ["x"] = new Uri("http://example.com") }));
    }

    [Fact]
    public void A_parsed_template_renders_concurrently()
    {
        var template = ChatTemplate.Parse(ChatMl);
        var conversation = Conversation(("system", "s"), ("user", "u"));
        var expected = template.Apply(conversation);
        var results = Enumerable.Range(0, 64).AsParallel().Select(_ => template.Apply(conversation)).ToList();
        Assert.All(results, r => Assert.Equal(expected, r));
    }

    [Fact]
    public void Twenty_messages_render_through_namespace_loop_filters_and_tojson()
    {
        // A template with the usual moving parts: namespace, loop variables, filters, tojson of tool calls.
        const string template = """
            {%- set ns = namespace(system='') %}
            {%- for m in messages if m.role == 'system' %}{% set ns.system = m.content | trim %}{% endfor %}
            {{- bos_token }}{% if ns.system %}<|system|>{{ ns.system }}<|end|>{% endif %}
            {%- for m in messages %}
                {%- if m.role == 'assistant' and m.tool_calls is defined %}
                    {{- '<|assistant|>' }}{% for call in m.tool_calls %}{{ call.function | tojson }}{% if not loop.last %},{% endif %}{% endfor %}<|end|>
                {%- elif m.role != 'system' %}
                    {{- '<|' ~ m.role ~ '|>' + m.content | trim + '<|end|>' }}
                {%- endif %}
            {%- endfor %}
            {%- if add_generation_prompt %}<|assistant|>{% endif %}
            """;
        var parsed = ChatTemplate.Parse(template);
        var messages = new JsonArray { new JsonObject { ["role"] = "system", ["content"] = " Be brief. " } };
        for (var i = 0; i < 19; i++)
        {
            messages.Add(i % 3 == 2
                ? new JsonObject { ["role"] = "assistant", ["content"] = null, ["tool_calls"] = new JsonArray(new JsonObject { ["function"] = new JsonObject { ["name"] = "f", ["arguments"] = new JsonObject { ["q"] = i } } }) }
                : new JsonObject { ["role"] = i % 3 == 0 ? "user" : "assistant", ["content"] = $"message number {i} with some text in it" });
        }
        var options = new ChatTemplateOptions { BosToken = "<s>", AddGenerationPrompt = true };
        var rendered = parsed.Apply(messages, options);
        var expected = new System.Text.StringBuilder("<s><|system|>Be brief.<|end|>");
        for (var i = 0; i < 19; i++)
            expected.Append(i % 3 == 2 ? $"<|assistant|>{{\"name\": \"f\", \"arguments\": {{\"q\": {i}}}}}<|end|>"
                : $"<|{(i % 3 == 0 ? "user" : "assistant")}|>message number {i} with some text in it<|end|>");
        Assert.Equal(expected.Append("<|assistant|>").ToString(), rendered);
        // Rendered again (the parsed template is reused per conversation), the same text.
        Assert.Equal(rendered, parsed.Apply(messages, options));
    }
}
