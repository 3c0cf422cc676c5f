#!/usr/bin/env python3
"""Renders real chat templates the way Hugging Face `tokenizer.apply_chat_template` does and writes the expected outputs.

Reference for Hone's chat template interpreter (src/Hone/Tokenization/Templates). Needs only Jinja2 (>= 3.1); no transformers.
The Jinja environment copies transformers' `_compile_jinja_template`: ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True, loopcontrols), `tojson` overridden with json.dumps(ensure_ascii=False, ...), globals `raise_exception` and
`strftime_now` (here with a FIXED clock so the fixture is reproducible). Rendering passes what `render_jinja_template` passes:
messages, tools (None when absent), documents=None, add_generation_prompt, then the special tokens and extra kwargs.

Writes two fixtures (never the templates themselves, only keys, hashes and renderings):
  tests/Hone.Tests/Fixtures/chat-templates/real-templates.json  every template in shared/data/chat-templates x conversations x flags
  tests/Hone.Tests/Fixtures/chat-templates/jinja-snippets.json  small templates probing one language feature each

Usage: /usr/bin/python3 tools/reference/render_chat_templates.py [--shared PATH_TO_shared/data]
"""
import argparse
import datetime
import glob
import hashlib
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2024, 9, 5, 14, 7, 3)
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"


class GenerationBlock(jinja2.ext.Extension):
    """transformers' AssistantTracker without the mask bookkeeping: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, variables):
    """Returns {"output": text} or {"error_type": name, "error": message}."""
    try:
        return {"output": env.from_string(source).render(**variables)}
    except jinja2.exceptions.TemplateSyntaxError:
        raise  # a real template that does not parse is a broken input, not an expected outcome
    except Exception as error:  # the interpreter must raise the same error where Jinja raises
        return {"error_type": type(error).__name__, "error": str(error)}


# ---------------------------------------------------------------------------------------------------------------------
# Conversations (OpenAI-shaped messages, as HF accepts them)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and country, e.g. Paris, France"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "  The unit of temperature  "},
                "days": {"type": "integer", "description": "Forecast days", "minimum": 1, "maximum": 7.5},
                "fields": {"type": "array", "items": {"type": "string"}, "description": "Extra fields to return"},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Recherche sur le web — \"naïve\" search\twith tabs & ünïcödé 🔎",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Query text"},
                "options": {
                    "type": "object",
                    "additionalProperties": {"type": "boolean"},
                    "description": "Flags",
                },
                "mode": {"type": ["string", "integer"], "description": "Search mode"},
            },
            "required": ["query"],
        },
        "return": {"type": "string", "description": "The top result."},
    },
}
# The same tool with a nullable union type: Hermes' json_to_python_type recurses forever on "null" (RecursionError in HF).
NULLABLE_SEARCH_TOOL = json.loads(json.dumps(SEARCH_TOOL))
NULLABLE_SEARCH_TOOL["function"]["parameters"]["properties"]["mode"]["type"] = ["string", "null"]
CALL_ID = "call12345"  # Mistral requires 9 alphanumeric characters

CONVERSATIONS = {
    "system_user": {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello! How are you?"},
        ]
    },
    "multi_turn": {
        "messages": [
            {"role": "system", "content": "  You answer briefly.\n"},
            {"role": "user", "content": "  What's 2+2?\n"},
            {"role": "assistant", "content": "2 + 2 = 4."},
            {"role": "user", "content": "Merci ! En français, s'il vous plaît : « quatre » 🙂"},
        ]
    },
    "no_system": {
        "messages": [
            {"role": "user", "content": "Write a haiku about \"rain\"."},
            {"role": "assistant", "content": "Soft rain on the roof\n\tsilver threads\n\nthe garden drinks"},
            {"role": "user", "content": "<think>hmm</think>Another one, about snow."},
            {"role": "assistant", "content": "<think>Let me think.</think>White hush on the pines."},
        ]
    },
    "single_user": {"messages": [{"role": "user", "content": "Hi"}]},
    "tool_call": {
        "tools": [WEATHER_TOOL, SEARCH_TOOL],
        "messages": [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": CALL_ID,
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": {"location": "Paris, France", "unit": "celsius", "days": 2, "fields": ["humidity"]},
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": CALL_ID,
                "name": "get_current_weather",
                "content": "{\"temperature\": 22.5, \"unit\": \"celsius\"}",
            },
            {"role": "assistant", "content": "It is 22.5 °C in Paris."},
        ],
    },
    "tool_call_string_arguments": {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Tokyo and in Oslo?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": CALL_ID,
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": "{\"location\": \"Tokyo, Japan\"}"},
                    },
                    {
                        "id": "call67890",
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": "{\"location\": \"Oslo, Norway\"}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": CALL_ID, "content": "sunny"},
            {"role": "tool", "tool_call_id": "call67890", "content": "snow"},
        ],
    },
    "parallel_tool_calls": {
        "tools": [WEATHER_TOOL, SEARCH_TOOL],
        "messages": [
            {"role": "system", "content": "You can call several tools at once."},
            {"role": "user", "content": "Weather in Lyon, and search for \"marché\" opening hours?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": CALL_ID,
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": {"location": "Lyon, France", "unit": "celsius"}},
                    },
                    {
                        "id": "call67890",
                        "type": "function",
                        "function": {"name": "search_web", "arguments": {"query": "marché Lyon horaires", "options": {"fresh": True}}},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": CALL_ID, "name": "get_current_weather", "content": "{\"temperature\": 18, \"unit\": \"celsius\"}"},
            {"role": "tool", "tool_call_id": "call67890", "name": "search_web", "content": "Open 7:00-13:30, Tuesday to Sunday."},
            {"role": "assistant", "content": "It is 18 °C in Lyon; the market opens 7:00-13:30, Tuesday to Sunday."},
        ],
    },
    "builtin_tools": {
        "tools": [NULLABLE_SEARCH_TOOL],
        "extra": {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"], "tools_in_user_message": False, "date_string": "01 Jan 2025"},
        "messages": [
            {"role": "system", "content": "Use tools when needed."},
            {"role": "user", "content": "Search the news."},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": CALL_ID, "type": "function", "function": {"name": "brave_search", "arguments": {"query": "news today"}}}
                ],
            },
            {"role": "ipython", "content": {"results": ["a", "b"], "count": 2}},
        ],
    },
}


def template_sources(shared):
    folder = os.path.join(shared, "chat-templates")
    for path in sorted(glob.glob(os.path.join(folder, "llama.cpp", "*.jinja"))):
        with open(path, encoding="utf-8", newline="") as f:
            yield "llama.cpp/" + os.path.basename(path), None, f.read()
    with open(os.path.join(folder, "ollama", "index.json"), encoding="utf-8") as f:
        for index, entry in enumerate(json.load(f)):
            yield f"ollama/index.json#{index}", entry["name"], entry["template"]


def real_template_cases(env, shared):
    cases = []
    for key, family, source in template_sources(shared):
        for conversation_id, conversation in CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                variables = {
                    "messages": conversation["messages"],
                    "tools": conversation.get("tools"),
                    "documents": None,
                    "add_generation_prompt": add_generation_prompt,
                    "bos_token": BOS_TOKEN,
                    "eos_token": EOS_TOKEN,
                    **conversation.get("extra", {}),
                }
                case = {
                    "template": key,
                    "conversation": conversation_id,
                    "add_generation_prompt": add_generation_prompt,
                }
                if family is not None:
                    case["family"] = family
                case["template_sha256"] = hashlib.sha256(source.encode("utf-8")).hexdigest()
                case.update(render(env, source, variables))
                cases.append(case)
    return cases


# ---------------------------------------------------------------------------------------------------------------------
# Snippets: one language feature each, rendered against the same variables

SNIPPET_VARIABLES = {
    "s": "  Héllo, World!  ",
    "word": "hello",
    "emoji": "a🙂b",
    "n": 7,
    "x": 2.5,
    "zero": 0,
    "big": 12345678901234567,
    "items": [3, 1, 2],
    "words": ["b", "A", "c", "a"],
    "empty": [],
    "d": {"b": 1, "a": None, "c": [1, 2], "nested": {"k": "v"}},
    "users": [
        {"name": "ann", "age": 31, "active": True},
        {"name": "Bob", "age": 25, "active": False},
        {"name": "cy", "age": 31, "active": True, "email": "cy@example.com"},
    ],
    "none": None,
    "t": True,
    "f": False,
    "unicode": "naïve ☕ 𝔘",
    "content": "<think>\nplan\n</think>\n\nanswer",
    "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe"}, {"type": "text", "text": "briefly"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "<tool_response>ok</tool_response>"},
        {"role": "user", "content": "thanks"},
    ],
    "enable_thinking": False,
    "quote": "it's \"quoted\"\n\\",
}

SNIPPETS = [
    # whitespace control, trim_blocks, lstrip_blocks
    ("trim_blocks", "{% if t %}\nA\n{% endif %}\nB"),
    ("lstrip_blocks", "x\n    {% if t %}\n    y\n    {% endif %}\nz"),
    ("lstrip_not_variables", "x\n    {{ word }}\n"),
    ("lstrip_after_text_kept", "x  {% if t %}y{% endif %}"),
    ("lstrip_comment", "a\n   {# note #}\nb"),
    ("strip_minus", "a   {%- if t -%}   b   {%- endif -%}   c"),
    ("strip_minus_variable", "a \n {{- word -}} \n b"),
    ("strip_plus", "a\n    {%+ if t %}b{% endif %}"),
    ("strip_plus_end", "{% if t +%}\nb{% endif %}"),
    ("comment_strip", "a  {#- c -#}  b"),
    ("trailing_newline_removed", "a\n"),
    ("two_trailing_newlines", "a\n\n"),
    ("crlf", "a\r\n{% if t %}\r\nb\r\n{% endif %}\r\nc"),
    ("first_line_lstrip", "  {% if t %}a{% endif %}"),
    ("tabs_lstrip", "\t \t{% if t %}a\n\t{% endif %}b"),
    ("raw", "{% raw %}{{ not parsed }}{% endraw %}"),
    # values and formatting
    ("print_none_bool", "{{ none }}|{{ t }}|{{ f }}|{{ undefined_name }}|{{ none is none }}"),
    ("print_floats", "{{ x }}|{{ 1.0 }}|{{ 1e16 }}|{{ 1.5e16 }}|{{ 123456789012345.6 }}|{{ 0.0001 }}|{{ 0.00001 }}|{{ 0.1 + 0.2 }}|{{ -0.0 }}|{{ 1e300 * 1e300 }}|{{ 2.5e-7 }}"),
    ("print_ints", "{{ n }}|{{ -n }}|{{ big }}|{{ 1_000 }}|{{ 0x1F }}|{{ 0o17 }}|{{ 0b101 }}"),
    ("print_list", "{{ items }}|{{ words }}|{{ empty }}|{{ [none, t, 1.5, 'a\\'b', \"q\\\"\"] }}"),
    ("print_dict", "{{ d }}|{{ {} }}|{{ {'a': (1, 2), 3: 'x'} }}"),
    ("print_tuple", "{{ (1,) }}|{{ (1, 'a') }}|{{ () }}"),
    ("print_unicode_repr", "{{ [unicode, quote, '\\t\\x00\\u00e9'] }}"),
    ("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\x41\\u00e9\\U0001F600\\q' }}"),
    ("string_concat_literals", "{{ 'a' \"b\" 'c' }}"),
    # operators
    ("arithmetic", "{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 7 / 2 }}|{{ 6 / 3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 2 ** 0.5 }}|{{ 7.5 // 2 }}|{{ -7.5 % 2 }}"),
    ("arithmetic_precedence", "{{ 2 + 3 * 4 }}|{{ (2 + 3) * 4 }}|{{ -2 ** 2 }}|{{ 2 ** 3 ** 2 }}|{{ 10 - 2 - 3 }}|{{ (1 + 2) ~ (3 + 4) }}|{{ 'a' ~ 2 * 3 }}"),
    ("string_ops", "{{ 'ab' * 3 }}|{{ 3 * 'ab' }}|{{ 'ab' + 'cd' }}|{{ word ~ n ~ none ~ undefined_name }}|{{ [1] + [2] }}|{{ [1] * 2 }}"),
    ("bool_arith", "{{ t + 1 }}|{{ t * 3 }}|{{ 1 == 1.0 }}|{{ t == 1 }}|{{ 'a' == 'a' }}|{{ [1, 2] == [1, 2] }}|{{ d == d }}"),
    ("comparisons", "{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 'a' < 'b' }}|{{ [1, 2] < [1, 3] }}|{{ 2 >= 2.0 }}|{{ none == none }}|{{ none != 0 }}"),
    ("in_operator", "{{ 'ell' in word }}|{{ 2 in items }}|{{ 'b' in d }}|{{ 'z' not in d }}|{{ 5 not in items }}|{{ none in [none] }}"),
    ("logic", "{{ t and 'yes' }}|{{ f or 'no' }}|{{ none or 0 or '' }}|{{ not empty }}|{{ 'x' if t else 'y' }}|{{ 'x' if f else 'y' }}|{{ 'x' if f }}|{{ not none is none }}"),
    ("truthiness", "{% for v in [0, 1, 0.0, '', 'a', [], [0], {}, none, t, f] %}{{ 'T' if v else 'F' }}{% endfor %}"),
    # subscripts and attributes
    ("subscript", "{{ items[0] }}|{{ items[-1] }}|{{ word[1] }}|{{ d['b'] }}|{{ d.b }}|{{ d.nested.k }}|{{ d['nested']['k'] }}|{{ users[1].name }}|{{ items.0 }}"),
    ("slices", "{{ items[1:] }}|{{ items[:-1] }}|{{ items[::-1] }}|{{ word[::2] }}|{{ word[-3:] }}|{{ emoji[1:2] }}|{{ emoji[::-1] }}|{{ items[5:] }}|{{ word[1:4:2] }}|{{ items[-100:100] }}"),
    ("missing_attributes", "[{{ d.zz }}][{{ d['zz'] }}][{{ items[10] }}][{{ word.zz }}][{{ none.zz }}]"),
    ("dict_method_shadowing", "{{ d.items is defined }}|{{ {'items': 1}['items'] }}|{{ {'x': 2}.x }}"),
    # tests
    ("tests_defined", "{{ d is defined }}|{{ zz is defined }}|{{ zz is undefined }}|{{ d.zz is defined }}|{{ d.a is defined }}|{{ d.a is none }}|{{ d.a is not none }}"),
    ("tests_types", "{% for v in [word, n, x, t, none, items, d, (1,), zz] %}{{ v is string }}{{ v is number }}{{ v is integer }}{{ v is float }}{{ v is boolean }}{{ v is mapping }}{{ v is iterable }}{{ v is sequence }}{{ v is none }}/{% endfor %}"),
    ("tests_values", "{{ n is odd }}|{{ n is even }}|{{ 9 is divisibleby 3 }}|{{ 9 is divisibleby(4) }}|{{ t is true }}|{{ 1 is true }}|{{ f is false }}|{{ 'a' is equalto 'a' }}|{{ 2 is eq 2 }}|{{ 2 is ne 3 }}|{{ 1 is lt 2 }}|{{ 3 is gt 2 }}|{{ 2 is ge 2 }}|{{ 2 is le 1 }}|{{ 2 is in items }}|{{ 'x' is lower }}|{{ 'X' is upper }}|{{ none is sameas none }}|{{ 'trim' is filter }}|{{ 'odd' is test }}"),
    ("test_callable", "{{ word.upper is callable }}|{{ word is callable }}|{{ range is callable }}"),
    # filters
    ("filter_trim", "[{{ s|trim }}][{{ '--a--'|trim('-') }}][{{ none|trim }}][{{ zz|trim }}]"),
    ("filter_case", "{{ word|upper }}|{{ 'HeLLo wOrld'|lower }}|{{ 'hello wORLD-foo(bar'|title }}|{{ 'hello World'|capitalize }}|{{ \"they're bill's\"|title }}"),
    ("filter_length", "{{ items|length }}|{{ word|length }}|{{ d|length }}|{{ zz|length }}|{{ emoji|length }}|{{ items|count }}|{{ unicode|length }}"),
    ("filter_default", "{{ zz|default('dflt') }}|{{ none|default('dflt') }}|{{ ''|default('dflt', true) }}|{{ zz|d('d2') }}|{{ d.zz|default(n) }}|{{ zz|default }}"),
    ("filter_first_last", "{{ items|first }}|{{ items|last }}|{{ word|first }}|{{ word|last }}|{{ empty|first }}|{{ d|first }}"),
    ("filter_join", "{{ items|join }}|{{ items|join(', ') }}|{{ users|join('/', attribute='name') }}|{{ [none, 1.5, 'x']|join('-') }}|{{ word|join('.') }}"),
    ("filter_string_int_float", "{{ n|string }}|{{ none|string }}|{{ '42'|int + 1 }}|{{ '4.7'|int }}|{{ 'x'|int }}|{{ 'x'|int(9) }}|{{ 4.7|int }}|{{ '0x1A'|int(0, 16) }}|{{ ' 12 '|int }}|{{ '3.5'|float }}|{{ 'x'|float }}|{{ n|float }}|{{ t|int }}|{{ '1e3'|float }}"),
    ("filter_list", "{{ word|list }}|{{ d|list }}|{{ (1, 2)|list }}|{{ zz|list }}"),
    ("filter_select", "{{ items|select('odd')|list }}|{{ items|reject('odd')|list }}|{{ [0, 1, '', 'a', none]|select|list }}|{{ words|reject('equalto', 'a')|list }}|{{ items|select('gt', 1)|list }}|{{ none|select|list }}"),
    ("filter_selectattr", "{{ users|selectattr('active')|map(attribute='name')|list }}|{{ users|rejectattr('active')|map(attribute='name')|join }}|{{ users|selectattr('age', 'equalto', 31)|list|length }}|{{ users|selectattr('email', 'defined')|map(attribute='name')|first }}|{{ users|map(attribute='email', default='-')|list }}"),
    ("filter_map", "{{ words|map('upper')|list }}|{{ users|map(attribute='age')|list }}|{{ [[1, 2], [3]]|map('length')|list }}|{{ words|map('replace', 'a', 'z')|join }}"),
    ("filter_items", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}|{{ zz|items|list }}|{% for k, v in d.items() %}{{ k }}{% endfor %}|{{ d.keys()|list }}|{{ d.values()|list }}"),
    ("filter_replace", "{{ 'aaa'|replace('a', 'b') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'abc'|replace('', '-') }}|{{ n|replace('7', 'seven') }}"),
    ("filter_unique_sort", "{{ words|unique|list }}|{{ words|unique(case_sensitive=true)|list }}|{{ words|sort }}|{{ words|sort(case_sensitive=true) }}|{{ words|sort(reverse=true) }}|{{ users|sort(attribute='age')|map(attribute='name')|join(',') }}|{{ users|sort(attribute='age,name')|map(attribute='name')|join(',') }}"),
    ("filter_dictsort", "{{ d|dictsort|map('first')|join(',') }}|{% for k, v in {'b': 2, 'A': 1, 'c': 0}|dictsort(by='value', reverse=true) %}{{ k }}{% endfor %}|{{ {'b': 2, 'A': 1}|dictsort(true) }}"),
    ("filter_reverse", "{{ word|reverse }}|{{ items|reverse|list }}|{{ emoji|reverse }}"),
    ("filter_round_abs", "{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.675|round(2) }}|{{ 0.125|round(2) }}|{{ 42.55|round(1, 'floor') }}|{{ 42.51|round(1, 'ceil') }}|{{ 5|round }}|{{ 1234.5|round(-2) }}|{{ -3|abs }}|{{ -2.5|abs }}|{{ -n|abs }}|{{ 7|round(1) }}"),
    ("filter_wordcount", "{{ 'Hello big world, ok?'|wordcount }}|{{ s|wordcount }}|{{ ''|wordcount }}"),
    ("filter_batch", "{{ items|batch(2)|list }}|{{ items|batch(2, 0)|list }}"),
    ("filter_tojson", "{{ d|tojson }}|{{ items|tojson }}|{{ unicode|tojson }}|{{ quote|tojson }}|{{ none|tojson }}|{{ x|tojson }}|{{ {'z': 1, 'a': [t, f]}|tojson(sort_keys=true) }}|{{ (1, 'a')|tojson }}|{{ 1e16|tojson }}|{{ {1: 'a', 2.5: 'b', none: 'c', t: 'd'}|tojson }}"),
    ("filter_tojson_indent", "{{ d|tojson(indent=2) }}\n{{ {'a': [], 'b': {}}|tojson(indent=4) }}\n{{ items|tojson(indent=0) }}\n{{ d|tojson(separators=(',', ':')) }}\n{{ users[0]|tojson(indent='\\t') }}"),
    ("filter_tojson_control_chars", "{{ '\\u0001\\u001f\\u007f\\u2028 \\b\\f\\r'|tojson }}"),
    ("filter_safe_string", "{{ 'a<b'|safe }}|{{ ('x'|safe) is string }}"),
    ("filter_chain_precedence", "{{ 'a' + s|trim + 'b' }}|{{ -n|abs }}|{{ items|length * 2 }}|{{ word|upper|lower|title }}"),
    ("filter_misc", "{{ 'abc'|center(7) }}|{{ '%s-%d'|format('a', 3) }}|{{ items|sum }}|{{ items|min }}|{{ items|max }}|{{ users|sum(attribute='age') }}|{{ 'line1\\nline2'|indent(2) }}|{{ 'line1\\nline2'|indent(2, true) }}|{{ d|attr('zz') }}"),
    # python methods
    ("methods_string", "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ '--a--'.strip('-') }}][{{ word.upper() }}][{{ 'aBc'.lower() }}][{{ \"they're bill's\".title() }}][{{ 'hELLO'.capitalize() }}][{{ word.startswith('he') }}][{{ word.endswith(('x', 'lo')) }}][{{ word.replace('l', 'L') }}][{{ word.replace('l', 'L', 1) }}][{{ word.find('l') }}][{{ word.count('l') }}]"),
    ("methods_split", "{{ 'a,b,,c'.split(',') }}|{{ '  a  b \\n c '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a b c'.rsplit(' ', 1) }}|{{ 'x</think>y</think>z'.split('</think>')[-1] }}|{{ 'l1\\nl2\\r\\nl3'.splitlines() }}|{{ ', '.join(['a', 'b']) }}"),
    ("methods_dict", "{{ d.get('b') }}|{{ d.get('zz') }}|{{ d.get('zz', 5) }}|{{ d.keys()|list }}|{{ d.items()|list|length }}|{{ d.items() }}"),
    ("methods_format", "{{ '{} and {}'.format('a', 1) }}|{{ '{0}{1}{0}'.format('x', 'y') }}|{{ '{name}!'.format(name='hi') }}|{{ '%s is %d' % ('a', 3) }}|{{ '%.2f' % x }}|{{ '%5s|%-5s|' % ('a', 'b') }}|{{ '%r' % word }}|{{ '%%' % () }}"),
    ("methods_predicates", "{{ '123'.isdigit() }}|{{ 'abc'.isalpha() }}|{{ '  '.isspace() }}|{{ 'ab'.islower() }}|{{ 'AB'.isupper() }}|{{ 'a1'.isalnum() }}|{{ 'abc'.removeprefix('a') }}|{{ 'abc'.removesuffix('c') }}"),
    # loops
    ("loop_variables", "{% for i in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
    ("loop_prev_next", "{% for i in items %}[{{ loop.previtem }}|{{ loop.nextitem }}|{{ loop.previtem is defined }}]{% endfor %}"),
    ("loop_cycle_changed_depth", "{% for i in [1, 1, 2] %}{{ loop.cycle('a', 'b') }}{{ loop.changed(i) }}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}"),
    ("loop_else", "{% for i in empty %}x{% else %}empty{% endfor %}|{% for i in zz %}x{% else %}undef{% endfor %}|{% for i in items %}{% else %}no{% endfor %}"),
    ("loop_filter", "{% for i in items if i > 1 %}{{ i }}{{ loop.index }}{{ loop.last }};{% endfor %}"),
    ("loop_break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
    ("loop_unpack", "{% for a, b in [(1, 2), [3, 4], 'xy'] %}{{ a }}{{ b }};{% endfor %}"),
    ("loop_over_dict_and_string", "{% for k in d %}{{ k }},{% endfor %}|{% for c in emoji %}[{{ c }}]{% endfor %}"),
    ("loop_nested", "{% for i in [1, 2] %}{% set outer = loop %}{% for j in 'ab' %}{{ outer.index }}{{ loop.index }}{{ j }} {% endfor %}{% endfor %}"),
    ("loop_range", "{{ range(3)|list }}|{{ range(1, 7, 2)|list }}|{{ range(5, 0, -2)|list }}|{{ range(0)|list }}"),
    # scoping
    ("set_scoping", "{% set x = 1 %}{% for i in items %}{{ x }}{% set x = i * 10 %}{{ x }},{% endfor %}{{ x }}"),
    ("set_in_loop_fresh_each_iteration", "{% for i in items %}{% if loop.first %}{% set y = 1 %}{% endif %}[{{ y }}]{% endfor %}"),
    ("set_in_if_leaks", "{% if t %}{% set y = 3 %}{% endif %}{{ y }}"),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = 1, 2 %}{{ c }}"),
    ("set_block", "{% set body %}Hi {{ word }}!{% endset %}[{{ body }}]{% set up | upper %}x{{ n }}{% endset %}{{ up }}"),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for i in items %}{% set ns.count = ns.count + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }}{{ ns.found }}{{ ns.zz }}"),
    ("namespace_from_dict", "{% set ns = namespace(d, extra=1) %}{{ ns.b }}{{ ns.extra }}"),
    ("override_variable", "{% set items = items[1:] %}{{ items }}{% set word = word|upper %}{{ word }}"),
    ("with_block", "{% with a = 1, b = n %}{{ a + b }}{% endwith %}[{{ a }}]"),
    # macros
    ("macro_basic", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }}|{{ greet('b', '?') }}|{{ greet(name='c', punct='.') }}|{{ greet() }}"),
    ("macro_recursive", "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * fact(k - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}"),
    ("macro_sees_later_globals", "{% macro m() %}{{ later }}{% endmacro %}{% set later = 5 %}{{ m() }}"),
    ("macro_varargs_kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}"),
    ("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ word }}{% endcall %}"),
    ("call_block_args", "{% macro each(xs) %}{% for v in xs %}{{ caller(v) }}{% endfor %}{% endmacro %}{% call(v) each(items) %}[{{ v }}]{% endcall %}"),
    ("filter_block", "{% filter upper %}abc {{ word }}{% endfilter %}"),
    ("generation_block", "a{% generation %}b{{ word }}{% endgeneration %}c"),
    ("print_statement", "{% print word %}"),
    # globals
    ("globals", "{{ dict(a=1, b='x') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %a %A %b %B %j %I %p %y %e %-d %-m') }}|{{ range is defined }}|{{ namespace is defined }}"),
    ("strftime_llama", "{{ strftime_now('%d %b %Y') }}"),
    # idioms of current model templates (Qwen3, Llama 4, Gemma 3, Granite, DeepSeek V3...)
    ("idiom_think_split", "[{{ content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}][{{ content.split('</think>')[-1].lstrip('\\n') }}]"),
    ("idiom_reverse_index", "{% for m in messages[::-1] %}{% set index = (messages|length - 1) - loop.index0 %}{{ index }}{{ m.role[0] }} {% endfor %}"),
    ("idiom_namespace_computed", "{% set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}{% for m in messages[::-1] %}{% set index = (messages|length - 1) - loop.index0 %}{% if ns.multi_step_tool and m.role == 'user' and m.content is string and not (m.content.startswith('<tool_response>') and m.content.endswith('</tool_response>')) %}{% set ns.multi_step_tool = false %}{% set ns.last_query_index = index %}{% endif %}{% endfor %}{{ ns.last_query_index }}"),
    ("idiom_enable_thinking", "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% if zz is defined and zz is false %}no{% endif %}"),
    ("idiom_content_parts", "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% elif m.content is iterable and m.content is not none %}{% for c in m.content %}{% if c.type == 'image' %}<img>{% elif c['type'] == 'text' %}{{ c.text|trim }}{% endif %}{% endfor %}{% endif %};{% endfor %}"),
    ("idiom_select_text_parts", "{{ messages[1].content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\\n') }}"),
    ("idiom_ternary_filter_precedence", "{% for m in messages if m.tool_calls %}{% for c in m.tool_calls %}{{ c.function.arguments if c.function.arguments is string else c.function.arguments | tojson }}{% endfor %}{% endfor %}"),
    ("idiom_tools_indent", "{{ messages[2].tool_calls | tojson(indent=4) }}"),
    ("idiom_messages_stats", "{{ messages | selectattr('role', 'eq', 'user') | list | length }}|{{ messages | map(attribute='role') | unique | list }}|{{ messages | rejectattr('content', 'none') | list | length }}|{% set last = messages | last %}{{ last.role }}|{{ messages[-1]['role'] }}"),
    ("idiom_trailing_commas", "{{ {'a': 1,} }}|{{ [1, 2,] }}|{{ (1, 2,) }}|{{ dict(a=1,) }}"),
    ("idiom_chained_get", "{{ d.get('nested', {}).get('k', 'z') }}|{{ d.get('zz', {}).get('k', 'z') }}|{{ ''.join(['a', 'b']) }}"),
    ("idiom_default_none", "{{ zz | default(none) is none }}|{{ (none or zz) | default('x') }}|{{ raise_exception('x') if false else 'ok' }}"),
    ("idiom_whitespace_mix", "<s>\n{%- for m in messages %}\n    {%- if m.role == 'user' -%}\n        [U]\n    {%- else %}\n        [O]\n    {% endif -%}\n{% endfor %}\n</s>"),
    ("idiom_is_sameas_false", "{{ f is sameas false }}|{{ 0 is sameas false }}|{{ none is sameas none }}"),
    ("idiom_loop_nextitem_role", "{% for m in messages %}{% if not loop.last and loop.nextitem.role == 'tool' %}T{% endif %}{% if loop.previtem and loop.previtem.role != 'tool' %}p{% endif %}{% endfor %}"),
    ("idiom_string_methods_chain", "{{ '  A-b_c  '.strip().lower().replace('-', '_').split('_') }}|{{ 'Hello'[0] | lower }}|{{ 'x' * 3 ~ 'y' }}"),
    ("idiom_macro_namespace", "{% macro count_users(ms) %}{% set ns = namespace(n=0) %}{% for m in ms %}{% if m.role == 'user' %}{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}{{ ns.n }}{% endmacro %}{{ count_users(messages) }}|{{ count_users(messages)|int + 1 }}"),
    ("raw_whitespace", "a\n  {%- raw %} {{ x }} {% endraw -%}\n  b"),
    ("loop_changed_cycle_args", "{% for m in messages %}{{ loop.changed(m.role == 'user') }}{{ loop.cycle('x', 'y', 'z') }}{% endfor %}"),
    ("round_int_negative", "{{ 1250|round(-2) }}|{{ 1350|round(-2) }}|{{ -1250|round(-2) }}|{{ 15|round(-1, 'floor') }}"),
    ("string_methods_surrogates", "{{ emoji.find('b') }}|{{ emoji.index('🙂') }}|{{ emoji.count('🙂') }}|{{ emoji.split('🙂') }}|{{ emoji.upper() }}|{{ emoji.center(7, '*') }}|{{ 'abc'.rfind('') }}|{{ 'abc'.find('', 5) }}"),
    ("split_maxsplit_whitespace", "{{ '  a  b  c '.split(none, 1) }}|{{ '  a  b  c '.rsplit(none, 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}"),
    ("partition_zfill_justify", "{{ 'k=v=w'.partition('=') }}|{{ 'k=v=w'.rpartition('=') }}|{{ '42'.zfill(5) }}|{{ '-42'.zfill(5) }}|{{ 'ab'.ljust(4, '.') }}|{{ 'ab'.rjust(4) }}"),
    ("format_specs", "{{ '{:>5}|{:<5}|{:^6}|{:05d}|{:.3f}|{:+d}|{!r}'.format('a', 'b', 'c', 42, 3.14159, 7, 'q') }}"),
    ("percent_formats", "{{ '%5.1f|%-4d|%x|%X|%o|%c|%s' % (3.14159, 42, 255, 255, 8, 65, none) }}|{{ '%(a)s-%(b)d' % {'a': 'x', 'b': 2} }}"),
    ("json_float_keys_and_nesting", "{{ {'a': {'b': [1.5, {'c': none}]}, 'd': []}|tojson(indent=2) }}|{{ [[], {}]|tojson }}|{{ 'é'|tojson(ensure_ascii=true) }}"),
    ("unique_attribute_and_max", "{{ users|unique(attribute='age')|map(attribute='name')|list }}|{{ users|max(attribute='age') }}|{{ words|min }}|{{ words|max(case_sensitive=true) }}"),
    ("dict_items_repr_and_views", "{{ d.keys() }}|{{ d.values()|list|length }}|{{ 'b' in d.keys() }}|{{ ('b', 1) in d.items() }}"),
    ("range_object", "{{ range(3) }}|{{ range(1, 10, 3) }}|{{ range(5)[1:3] }}|{{ range(5)[-1] }}|{{ range(3)|length }}|{{ 2 in range(3) }}"),
    ("range_slices", "{{ range(10)[::3] }}|{{ range(10)[::-2] }}|{{ range(10)[8:2:-3] }}|{{ range(10)[8:2:-3]|list }}"),
    ("generator_truthiness", "{{ 'T' if items|select('gt', 100) else 'F' }}|{% set g = items|map('string') %}{{ g|list }}{{ g|list }}"),
    # errors: Jinja must raise and the interpreter must raise the same
    ("error_raise_exception", "a{{ raise_exception('Custom failure: ' ~ n) }}"),
    ("error_undefined_add", "{{ zz + 'a' }}"),
    ("error_undefined_attribute_add", "{{ d.zz + 'a' }}"),
    ("error_undefined_chain", "{{ zz.attr }}"),
    ("error_none_attribute_chain", "{{ none.a.b }}"),
    ("error_str_plus_none", "{{ 'a' + none }}"),
    ("error_str_plus_int", "{{ 'a' + 1 }}"),
    ("error_int_plus_str", "{{ 1 + 'a' }}"),
    ("error_none_plus_str", "{{ none + 'a' }}"),
    ("error_list_plus_str", "{{ items + 'a' }}"),
    ("error_iterate_none", "{% for m in none %}{% endfor %}"),
    ("error_iterate_int", "{% for m in n %}{% endfor %}"),
    ("error_length_none", "{{ none|length }}"),
    ("error_length_int", "{{ n|length }}"),
    ("error_items_not_mapping", "{{ items|items|list }}"),
    ("error_division_by_zero", "{{ 1 / 0 }}"),
    ("error_floor_division_by_zero", "{{ 1 // 0 }}"),
    ("error_modulo_by_zero", "{{ 1 % 0 }}"),
    ("error_compare", "{{ 1 < 'a' }}"),
    ("error_in_none", "{{ 'a' in none }}"),
    ("error_in_string_int", "{{ 1 in 'abc' }}"),
    ("error_unsafe_append", "{{ items.append(4) }}"),
    ("error_call_undefined", "{{ zz() }}"),
    ("error_call_undefined_method", "{{ word.zz() }}"),
    ("error_namespace_assign", "{% set v = 1 %}{% set v.a = 2 %}"),
    ("error_tojson_undefined", "{{ zz|tojson }}"),
    ("error_unpack", "{% for a, b in [(1, 2, 3)] %}{% endfor %}"),
    ("error_macro_too_many", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
    ("error_neg_string", "{{ -word }}"),
    ("subscript_none_is_undefined", "[{{ none[0] }}][{{ none[0] is defined }}]"),
    ("error_concat_binds_tighter_than_plus", "{{ 1 + 2 ~ 3 }}"),
    ("error_undefined_subscript", "{{ zz[0] }}"),
    ("error_mul_strings", "{{ 'a' * 'b' }}"),
    ("error_int_of_undefined", "{{ zz|int }}"),
    ("error_range_too_big", "{{ range(1000000)|length }}"),
    ("error_undefined_iterate_attribute", "{% for m in zz.items %}{% endfor %}"),
]


def snippet_cases(env):
    cases = []
    for snippet_id, source in SNIPPETS:
        case = {"id": snippet_id, "template": source}
        case.update(render(env, source, SNIPPET_VARIABLES))
        cases.append(case)
    return cases


def write_json(path, document):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(document, f, ensure_ascii=False, indent=1)
        f.write("\n")


def find_shared_data(start):
    """shared/data in the repository or any folder above it (as tests/Hone.Tests/Infrastructure/SharedData.cs looks)."""
    folder = start
    while True:
        candidate = os.path.join(folder, "shared", "data")
        if os.path.isfile(os.path.join(candidate, "SOURCES.md")):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return os.path.join(start, "shared", "data")
        folder = parent


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("HONE_SHARED_DATA") or find_shared_data(root))
    parser.add_argument("--out", default=os.path.join(root, "tests", "Hone.Tests", "Fixtures", "chat-templates"))
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.shared, "chat-templates")):
        sys.exit(f"no chat-templates folder under {args.shared} (pass --shared)")

    env = make_environment()
    common = {
        "generator": "tools/reference/render_chat_templates.py",
        "jinja2_version": jinja2.__version__,
        "now": FIXED_NOW.isoformat(),
    }
    os.makedirs(args.out, exist_ok=True)
    real = real_template_cases(env, args.shared)
    write_json(
        os.path.join(args.out, "real-templates.json"),
        {**common, "bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "conversations": CONVERSATIONS, "cases": real},
    )
    snippets = snippet_cases(env)
    write_json(os.path.join(args.out, "jinja-snippets.json"), {**common, "variables": SNIPPET_VARIABLES, "cases": snippets})
    errors = sum("error" in c for c in real)
    print(f"{len(real)} template cases ({errors} raise), {len(snippets)} snippets -> {args.out}")


if __name__ == "__main__":
    main()
