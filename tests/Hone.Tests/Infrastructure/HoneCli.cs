using System.Diagnostics;
using System.Text;

namespace Hone.Tests.Infrastructure;

/// <summary>
/// Tests never time the machine: on a loaded machine anything can take many times its quiet time. Waits in tests only
/// guard against hangs, so their limit is far beyond any run that is merely slow, and a guard that fires says what
/// it waited for (and, for a child process, what the child printed).
/// </summary>
public static class HangGuard
{
    public static readonly TimeSpan Limit = TimeSpan.FromMinutes(60);

    /// <summary>Polls <paramref name="condition"/> until it holds (true) or the guard runs out (false).</summary>
    public static bool WaitUntil(Func<bool> condition, int pollMilliseconds = 10)
    {
        var until = DateTime.UtcNow + Limit;
        while (!condition())
        {
            if (DateTime.UtcNow > until) return false;
            Thread.Sleep(pollMilliseconds);
        }
        return true;
    }

    /// <summary>Runs <paramref name="work"/> and returns its result, failing (with <paramref name="what"/>) if it has not
    /// finished when the guard runs out.</summary>
    public static T Run<T>(string what, Func<T> work)
    {
        var task = Task.Run(work);
        if (!task.Wait(Limit)) throw new TimeoutException($"{what} had not finished after {Limit.TotalMinutes:F0} minutes (a hang guard, not a time limit)");
        return task.Result;
    }
}

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
        using var child = Start(stdin, environment, args);
        return child.WaitForExit();
    }

    /// <summary>Starts hone with <paramref name="args"/> (stdin closed after <paramref name="stdin"/>, if given); its
    /// output is collected as it comes.</summary>
    public static Child Start(string? stdin, params string[] args) => Start(stdin, null, args);

    /// <summary>As <see cref="Start(string?, string[])"/>, with extra environment variables (a null value removes one).</summary>
    public static Child Start(string? stdin, IReadOnlyDictionary<string, string?>? environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin != null, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hone.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_TieredPGO"] = "0";
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>()) psi.Environment[name] = value;
        return new Child(psi, stdin, $"hone {string.Join(' ', args)}");
    }

    /// <summary>A running hone process and what it has printed so far.</summary>
    public sealed class Child : IDisposable
    {
        readonly Process _process;
        readonly string _description;
        readonly StringBuilder _stdout = new(), _stderr = new();
        readonly Task _pumps;

        internal Child(ProcessStartInfo psi, string? stdin, string description)
        {
            _description = description;
            _process = Process.Start(psi)!;
            _pumps = Task.WhenAll(Pump(_process.StandardOutput, _stdout), Pump(_process.StandardError, _stderr));
            if (stdin != null) { _process.StandardInput.Write(stdin); _process.StandardInput.Close(); }
        }

        static async Task Pump(StreamReader reader, StringBuilder into)
        {
            var buffer = new char[8192];
            int n;
            while ((n = await reader.ReadAsync(buffer)) > 0)
                lock (into) into.Append(buffer, 0, n);
        }

        public int Id => _process.Id;
        public bool HasExited => _process.HasExited;
        public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
        public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

        /// <summary>Waits for the exit and all of the output; past the hang guard the child is killed and the failure
        /// carries what it printed until then.</summary>
        public Result WaitForExit()
        {
            if (!_process.WaitForExit(HangGuard.Limit) || !_pumps.Wait(HangGuard.Limit))
            {
                string stdout = Stdout, stderr = Stderr;
                try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                throw new TimeoutException($"{_description} had not finished after {HangGuard.Limit.TotalMinutes:F0} minutes " +
                    $"(a hang guard, not a time limit) and was killed.\nstdout so far:\n{Tail(stdout)}\nstderr so far:\n{Tail(stderr)}");
            }
            return new Result(_process.ExitCode, Stdout, Stderr);
        }

        static string Tail(string text, int keep = 20_000) =>
            text.Length <= keep ? text : $"[... {text.Length - keep:N0} earlier characters]\n{text[^keep..]}";

        public void Dispose()
        {
            try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            _process.Dispose();
        }
    }
}

/// <summary>A temporary directory removed at the end of a test.</summary>
public sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("hone-test-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
