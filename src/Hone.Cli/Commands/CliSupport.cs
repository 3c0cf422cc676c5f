using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Hone.Formats;
using Hone.Tensors;

namespace Hone.Cli.Commands;

/// <summary>Shared options and the error boundary: every failure becomes one line on stderr and a non-zero exit.</summary>
internal static class CliSupport
{
    public static Option<int> Threads() => new("--threads", "-t")
    {
        Description = "worker threads (0 = one per core)",
        DefaultValueFactory = _ => 0,
    };

    public static Option<bool> Json() => new("--json") { Description = "print the result as JSON" };

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static TensorType? ParseType(string? name) => name == null ? null : TensorTypes.Parse(name);

    /// <summary>Run a command body; known failures print "error: ..." and exit 1, never a stack dump
    /// (set HONE_DEBUG=1 to see one).</summary>
    public static int Guard(Func<int> body)
    {
        try { return body(); }
        catch (Exception e) when (e is ModelFormatException or DataFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
                                    or NotSupportedException or InvalidOperationException or IOException or UnauthorizedAccessException
                                    or JsonException or FormatException or DataFormatException
                                    or Tokenization.Templates.TemplateException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            if (Environment.GetEnvironmentVariable("HONE_DEBUG") == "1") Console.Error.WriteLine(e);
            return 1;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: unexpected {e.GetType().Name}: {e.Message} (set HONE_DEBUG=1 for details and please report it)");
            if (Environment.GetEnvironmentVariable("HONE_DEBUG") == "1") Console.Error.WriteLine(e);
            return 2;
        }
    }

    /// <summary>A token source that Ctrl-C cancels (once; a second Ctrl-C ends the process as usual).</summary>
    public static CancellationTokenSource CancelOnCtrlC()
    {
        var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler? handler = null;
        handler = (_, e) =>
        {
            if (cts.IsCancellationRequested) return;
            e.Cancel = true;
            try { cts.Cancel(); } catch (ObjectDisposedException) { }
            Console.CancelKeyPress -= handler;
        };
        Console.CancelKeyPress += handler;
        cts.Token.Register(() => Console.CancelKeyPress -= handler);
        return cts;
    }

    /// <summary>A done/total progress reporter on stderr: redrawn in place on a terminal, silent when redirected.</summary>
    public static Action<int, int> Progress(string what)
    {
        if (Console.IsErrorRedirected) return (_, _) => { };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        return (done, total) =>
        {
            double eta = done == 0 ? 0 : clock.Elapsed.TotalSeconds / done * (total - done);
            Console.Error.Write($"\r{what} [{Bar(done, total, 30)}] {done}/{total}  ETA {eta:F0}s   ");
            if (done == total) Console.Error.WriteLine();
        };
    }

    public static string Bar(long done, long total, int width)
    {
        int filled = total <= 0 ? width : (int)Math.Round(width * Math.Clamp((double)done / total, 0, 1));
        return new string('=', filled) + (filled < width ? ">" + new string(' ', width - filled - 1) : "");
    }

    public static string Bytes(long b) => b switch
    {
        >= 1L << 30 => $"{b / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{b / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{b / 1024.0:F1} KiB",
        _ => $"{b} B",
    };
}
