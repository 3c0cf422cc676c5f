using System.Runtime.CompilerServices;
using System.Text;

namespace Hone.Clients;

/// <summary>
/// Reads a text/event-stream body as OpenAI-compatible servers send it: the data of each event (its "data:" lines
/// joined by '\n', one leading space dropped), in order. Comment lines (":") and other fields (event, id, retry) are
/// skipped; an event ends at a blank line or at the end of the stream; "\n", "\r\n" and "\r" all end lines.
/// </summary>
public static class ServerSentEvents
{
    /// <summary>The longest line accepted: a server that never ends a line must not grow memory without bound.</summary>
    public const int MaxLineChars = 16 << 20;

    public static async IAsyncEnumerable<string> ReadDataAsync(Stream stream, [EnumeratorCancellation] CancellationToken cancel = default)
    {
        using var reader = new StreamReader(stream, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: false);
        var lines = new LineReader(reader);
        var data = new StringBuilder();
        bool hasData = false;
        while (true)
        {
            string? line = await lines.ReadAsync(cancel).ConfigureAwait(false);
            if (line == null || line.Length == 0)
            {
                if (hasData) yield return data.ToString();
                data.Clear();
                hasData = false;
                if (line == null) yield break;
                continue;
            }
            if (line[0] == ':') continue;
            int colon = line.IndexOf(':');
            string field = colon < 0 ? line : line[..colon];
            if (field != "data") continue;
            string value = colon < 0 ? "" : line[(colon + 1)..];
            if (value.StartsWith(' ')) value = value[1..];
            if (hasData) data.Append('\n');
            data.Append(value);
            hasData = true;
        }
    }

    /// <summary>Lines ended by "\n", "\r\n" or "\r", at most <see cref="MaxLineChars"/> long, read in blocks (a "\r" at
    /// the end of one block and a "\n" at the start of the next are one line end).</summary>
    sealed class LineReader(StreamReader reader)
    {
        readonly char[] _buffer = new char[8192];
        int _start, _end;
        bool _skipNewline;
        readonly StringBuilder _line = new();

        public async ValueTask<string?> ReadAsync(CancellationToken cancel)
        {
            _line.Clear();
            while (true)
            {
                if (_start == _end)
                {
                    _start = 0;
                    _end = await reader.ReadAsync(_buffer.AsMemory(), cancel).ConfigureAwait(false);
                    if (_end == 0) return _line.Length > 0 ? _line.ToString() : null;
                }
                if (_skipNewline)
                {
                    _skipNewline = false;
                    if (_buffer[_start] == '\n') { _start++; continue; }
                }
                var span = _buffer.AsSpan(_start, _end - _start);
                int stop = span.IndexOfAny('\r', '\n');
                if (stop < 0)
                {
                    Append(span);
                    _start = _end;
                    continue;
                }
                Append(span[..stop]);
                _skipNewline = span[stop] == '\r';
                _start += stop + 1;
                return _line.ToString();
            }
        }

        void Append(ReadOnlySpan<char> chars)
        {
            if (_line.Length + chars.Length > MaxLineChars) throw new InvalidDataException($"a server-sent event line is longer than {MaxLineChars} characters");
            _line.Append(chars);
        }
    }
}
