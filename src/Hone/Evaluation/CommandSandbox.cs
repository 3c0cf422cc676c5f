using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Hone.Evaluation;

/// <param name="ExitCode">null when the command was killed for running past its time limit</param>
/// <param name="Output">the first 4 KiB of stdout and stderr together (for diagnosing a checker)</param>
public sealed record CommandOutcome(int? ExitCode, bool TimedOut, string Output, double Seconds)
{
    public bool Passed => ExitCode == 0 && !TimedOut;
}

/// <summary>
/// Runs an untrusted command (model-written code under test) in a working directory with a time limit, in its own
/// process group (setsid) so a timeout kills everything it started, and — unless the caller allows network — in a
/// new network namespace (`unshare -rn`: an unprivileged user namespace with only a downed loopback). Where the
/// namespace cannot be made, running without network isolation needs an explicit allowance: never silently.
/// </summary>
public static partial class CommandSandbox
{
    const int OutputLimit = 4096;

    static readonly Lazy<bool> IsolationProbe = new(() => Probe("unshare", "-rn", "true"));
    static readonly Lazy<bool> SetsidProbe = new(() => Probe("setsid", "true"));

    /// <summary>Whether `unshare -rn` works on this machine (user namespaces allowed, util-linux present).</summary>
    public static bool NetworkIsolationAvailable => !OperatingSystem.IsWindows() && IsolationProbe.Value;

    public const string IsolationDescription = "unshare -rn (new user and network namespace: no interfaces but a downed loopback)";

    /// <param name="isolateNetwork">true: run inside a new network namespace, failing if one cannot be made;
    /// false: run with the machine's network (only when the user allowed it)</param>
    public static CommandOutcome Run(IReadOnlyList<string> command, string workingDirectory, string? stdin, TimeSpan timeout, bool isolateNetwork)
    {
        if (command.Count == 0) throw new ArgumentException("the command is empty");
        if (isolateNetwork && !NetworkIsolationAvailable)
            throw new InvalidOperationException("cannot isolate the checker command from the network here (`unshare -rn` does not work); " +
                                                "pass --allow-network to run it with network access");
        var argv = new List<string>();
        bool ownGroup = !OperatingSystem.IsWindows() && SetsidProbe.Value;
        // setsid execs in place when its caller is not a group leader (our child is not), so the command's pid is its
        // process group id; --wait keeps the exit status right should it ever have to fork.
        if (ownGroup) argv.AddRange(["setsid", "--wait"]);
        if (isolateNetwork) argv.AddRange(["unshare", "-rn", "--"]);
        argv.AddRange(command);
        var psi = new ProcessStartInfo(argv[0])
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {argv[0]}");
        var output = new BoundedText(OutputLimit);
        var readOut = Drain(p.StandardOutput.BaseStream, output);
        var readErr = Drain(p.StandardError.BaseStream, output);
        // Written on the side: a command that never reads would otherwise block us past its time limit.
        var writeIn = Task.Run(() =>
        {
            try
            {
                if (stdin != null) p.StandardInput.Write(stdin);
                p.StandardInput.Close();
            }
            catch (IOException) { } // the command exited without reading its input
        });

        bool exited = p.WaitForExit(timeout);
        // Whether it finished or not, nothing it started may outlive the check.
        KillGroup(p, ownGroup);
        if (!exited) p.WaitForExit();
        Task.WaitAll([readOut, readErr, writeIn], TimeSpan.FromSeconds(5));
        return new CommandOutcome(exited ? p.ExitCode : null, !exited, output.ToString(), clock.Elapsed.TotalSeconds);
    }

    static void KillGroup(Process p, bool ownGroup)
    {
        if (ownGroup) _ = Kill(-p.Id, 9); // SIGKILL to the whole group; ESRCH when it is already gone
        try { if (!p.HasExited) p.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    static bool Probe(string file, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi);
            if (p == null) return false;
            if (!p.WaitForExit(TimeSpan.FromSeconds(10))) { p.Kill(true); return false; }
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; } // not installed
    }

    static async Task Drain(Stream stream, BoundedText into)
    {
        var buffer = new byte[8192];
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer).ConfigureAwait(false)) > 0) into.Append(buffer.AsSpan(0, n));
        }
        catch (IOException) { }
        catch (ObjectDisposedException) { }
    }

    /// <summary>Keeps the first bytes of a stream (the rest is read and dropped so the child never blocks).</summary>
    sealed class BoundedText(int limit)
    {
        readonly MemoryStream _bytes = new();
        public void Append(ReadOnlySpan<byte> data)
        {
            lock (_bytes)
            {
                int room = limit - (int)_bytes.Length;
                if (room > 0) _bytes.Write(data[..Math.Min(room, data.Length)]);
            }
        }
        public override string ToString() { lock (_bytes) return Encoding.UTF8.GetString(_bytes.GetBuffer(), 0, (int)_bytes.Length); }
    }
}
