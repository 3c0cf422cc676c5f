using System.Diagnostics;

namespace Hone.Tests.Infrastructure;

/// <summary>Runs the real `hone` executable (built next to the tests) as a child process.</summary>
public static class HoneCli
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
    }

    public static Result Run(params string[] args) => RunWithInput(null, args);

    public static Result RunWithInput(string? stdin, params string[] args) => RunWith(stdin, null, args);

    /// <summary>Run with extra environment variables (a null value removes the variable).</summary>
    public static Result RunWithEnvironment(IReadOnlyDictionary<string, string?> environment, params string[] args) => RunWith(null, environment, args);

    static Result RunWith(string? stdin, IReadOnlyDictionary<string, string?>? environment, string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin != null, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hone.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_TieredPGO"] = "0";
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>()) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        if (stdin != null) { p.StandardInput.Write(stdin); p.StandardInput.Close(); }
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); throw new TimeoutException($"hone {string.Join(' ', args)} timed out"); }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>A temporary directory removed at the end of a test.</summary>
public sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("hone-test-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
