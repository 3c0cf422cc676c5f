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
        catch (Exception e) when (e is ModelFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
                                    or NotSupportedException or InvalidOperationException or IOException or UnauthorizedAccessException
                                    or JsonException or FormatException or Data.DataFormatException)
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

    public static string Bytes(long b) => b switch
    {
        >= 1L << 30 => $"{b / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{b / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{b / 1024.0:F1} KiB",
        _ => $"{b} B",
    };
}
