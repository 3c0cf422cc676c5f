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

/// <summary>Resource limits of one checker command.</summary>
/// <param name="Time">wall-clock limit: past it the command and everything it started are killed; CPU time is
/// limited to this rounded up plus one second (RLIMIT_CPU)</param>
/// <param name="MemoryBytes">address space of each process (RLIMIT_AS): allocations past it fail</param>
public sealed record CommandLimits(TimeSpan Time, long MemoryBytes = CommandLimits.DefaultMemoryBytes)
{
    public const long DefaultMemoryBytes = 2L << 30;
    /// <summary>Largest file a process may write (RLIMIT_FSIZE).</summary>
    public const long FileSizeBytes = 256L << 20;
    /// <summary>Processes and threads (RLIMIT_NPROC; counted in the sandbox's own user namespace).</summary>
    public const int Processes = 256;
    /// <summary>Size of each of the private /tmp and /dev/shm (memory-backed tmpfs).</summary>
    public const long TemporaryBytes = 64L << 20;

    public long CpuSeconds => (long)Math.Ceiling(Time.TotalSeconds) + 1;
}

/// <summary>What the user allowed: network access, and running where no sandbox can be made.</summary>
public sealed record SandboxPolicy(bool AllowNetwork = false, bool AllowUnsandboxed = false);

/// <summary>What this machine offers: whether the bubblewrap sandbox works, and the fallbacks.</summary>
/// <param name="Bubblewrap">the bwrap program (HONE_BWRAP, or bwrap on PATH)</param>
/// <param name="SandboxFailure">null when the sandbox works here; otherwise why not</param>
/// <param name="DropToNobody">running as root: the sandbox runs as uid/gid 65534 (setpriv), never as root</param>
/// <param name="NetworkNamespace">`unshare -rn` works (the unsandboxed fallback's network isolation)</param>
/// <param name="OwnProcessGroup">setsid exists: a timeout kills the command's whole process group</param>
/// <param name="Prlimit">prlimit exists: the unsandboxed fallback can still set the resource limits</param>
public sealed record SandboxEnvironment(string Bubblewrap, string? SandboxFailure, bool DropToNobody, bool NetworkNamespace,
    bool OwnProcessGroup, bool Prlimit)
{
    public bool SandboxAvailable => SandboxFailure == null;

    /// <summary>Probe this machine (each tool is run once: `true` inside the full sandbox, with the limits).</summary>
    public static SandboxEnvironment Detect(string? bubblewrap = null)
    {
        bubblewrap ??= Environment.GetEnvironmentVariable("HONE_BWRAP") is { Length: > 0 } b ? b : "bwrap";
        if (OperatingSystem.IsWindows())
            return new SandboxEnvironment(bubblewrap, "Windows has no user namespaces (the sandbox needs Linux)", false, false, false, false);
        bool root = Environment.IsPrivilegedProcess;
        bool setsid = CommandSandbox.Probe(["setsid", "true"]).Ok;
        bool prlimit = CommandSandbox.Probe(["prlimit", "true"]).Ok;
        bool unshare = CommandSandbox.Probe(["unshare", "-rn", "true"]).Ok;
        string? failure;
        if (OperatingSystem.IsMacOS()) failure = "macOS has no user namespaces (the sandbox needs Linux)";
        else if (root && !CommandSandbox.Probe(["setpriv", "--version"]).Ok) failure = "running as root needs setpriv (util-linux) to drop to an unprivileged user";
        else
        {
            var env = new SandboxEnvironment(bubblewrap, null, root, unshare, setsid, prlimit);
            using var scratch = new ScratchProbe();
            var (ok, output) = CommandSandbox.Probe(CommandSandbox.SandboxedArgv(env, ["true"], scratch.Path,
                new CommandLimits(TimeSpan.FromSeconds(10)), new SandboxPolicy()));
            failure = ok ? null : output.Length > 0 ? $"`{bubblewrap}` failed: {output.Trim().ReplaceLineEndings(" ")}" : $"`{bubblewrap}` is not installed";
        }
        return new SandboxEnvironment(bubblewrap, failure, root, unshare, setsid, prlimit);
    }

    sealed class ScratchProbe : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("hone-check-probe-").FullName;
        public ScratchProbe() { if (Environment.IsPrivilegedProcess) CommandSandbox.GiveToNobody(Path); }
        public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
    }
}

/// <summary>
/// Runs an untrusted command (model-written code under test) in a bubblewrap sandbox:
/// <list type="bullet">
/// <item>files: a fresh read-only root holding only /usr, /etc (and the /bin, /sbin, /lib* links or directories)
/// read-only, a private /proc and minimal read-only /dev, private memory-backed /tmp and /dev/shm (64 MiB each), and the
/// checker's scratch folder (its working directory) as the one writable place on disk (256 MiB per file). Home
/// directories, the machine's /tmp, /work, /mnt, /opt, /srv, /var and everything else are not there. The environment is
/// cleared (PATH, HOME = the scratch folder, TMPDIR=/tmp, LANG).</item>
/// <item>privileges: new user, PID, IPC, UTS and cgroup namespaces, all capabilities dropped, no further user
/// namespaces, a new session (no terminal to type into); run by root, the command runs as uid/gid 65534.</item>
/// <item>network: a new network namespace with only a loopback, unless the user allowed network.</item>
/// <item>limits: wall time (the whole process group and PID namespace are killed), CPU time, address space, file size,
/// processes; no core dumps.</item>
/// </list>
/// Where the sandbox cannot be made (bwrap missing, user namespaces forbidden, not Linux), commands are refused unless
/// the user allows running them unsandboxed: then only the limits, the own process group and (unless network is
/// allowed, and when `unshare -rn` works) a network namespace apply. Never silently.
/// </summary>
public static partial class CommandSandbox
{
    const int OutputLimit = 4096;
    const int Nobody = 65534;

    static readonly Lazy<SandboxEnvironment> Machine = new(() => SandboxEnvironment.Detect());

    /// <summary>What this machine offers (probed once per process).</summary>
    public static SandboxEnvironment Current => Machine.Value;

    /// <summary>For `hone eval --help`: exactly what is isolated, and the flags.</summary>
    public const string HelpText =
        "Command checkers (sampled tasks) run model-written code in a bubblewrap sandbox (Debian/Ubuntu package bubblewrap): " +
        "a fresh read-only root with only /usr and /etc (and the /bin, /sbin, /lib links), a private /proc and /dev, private " +
        "64 MiB /tmp and /dev/shm in memory, and the checker's scratch folder as the only writable place on disk; no home, /tmp, " +
        "/work, /opt or other files of the machine (programs come from /usr: a python3 under your home is not there); " +
        "a cleared environment; new user, PID, IPC, UTS, cgroup and network namespaces (only a loopback; --allow-network shares " +
        "the network); no capabilities, no nested user namespaces, run as uid 65534 when hone runs as root; limits: the checker's " +
        "timeout_seconds (wall, then everything is killed), CPU time, memory_mb of address space (default 2048), 256 MiB per file, " +
        "256 processes. Where no sandbox can be made, command tasks are refused unless --allow-unsandboxed-commands " +
        "(then only the limits and a network namespace apply). HONE_BWRAP names the bwrap program.";

    /// <summary>What isolates the commands under <paramref name="policy"/> here, for the results' protocol.</summary>
    public static string Describe(SandboxPolicy policy, SandboxEnvironment? environment = null)
    {
        var env = environment ?? Current;
        string network = policy.AllowNetwork ? "network allowed (--allow-network)" : "no network (own network namespace, loopback only)";
        if (env.SandboxAvailable)
            return "bubblewrap sandbox: read-only root with /usr and /etc, private /proc, /dev, /tmp and /dev/shm, writable scratch folder only, cleared environment, " +
                   $"new user/PID/IPC/UTS/cgroup namespaces, no capabilities{(env.DropToNobody ? ", uid 65534" : "")}; {network}; " +
                   "limits: wall and CPU time, address space, file size, processes";
        var parts = new List<string> { $"NOT sandboxed (--allow-unsandboxed-commands; {env.SandboxFailure}): the command could read and change the user's files" };
        parts.Add(policy.AllowNetwork ? "network allowed (--allow-network)" : "no network (unshare -rn)");
        parts.Add(env.Prlimit ? "limits: wall and CPU time, address space, file size, processes" : "limits: wall time only (prlimit missing)");
        return string.Join("; ", parts);
    }

    /// <summary>Throws, naming what is missing and the flag that overrides it, when commands may not run here under
    /// <paramref name="policy"/>. Checked before a task generates anything.</summary>
    public static void EnsureRunnable(SandboxPolicy policy, SandboxEnvironment? environment = null)
    {
        var env = environment ?? Current;
        if (env.SandboxAvailable) return;
        if (!policy.AllowUnsandboxed)
            throw new InvalidOperationException(
                $"the command checker runs model-written code and no sandbox can be made here: {env.SandboxFailure}. " +
                "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) where user namespaces are allowed, " +
                "or pass --allow-unsandboxed-commands to run it with access to your files");
        if (!policy.AllowNetwork && !env.NetworkNamespace)
            throw new InvalidOperationException("the command checker runs model-written code and must not have network access, " +
                                                "but `unshare -rn` does not work here; pass --allow-network to run it anyway");
    }

    /// <summary>Run <paramref name="command"/> in <paramref name="workingDirectory"/> (its scratch folder, the only
    /// place it may write) with <paramref name="stdin"/> as input, under <paramref name="limits"/>.</summary>
    public static CommandOutcome Run(IReadOnlyList<string> command, string workingDirectory, string? stdin, CommandLimits limits,
        SandboxPolicy policy, SandboxEnvironment? environment = null)
    {
        if (command.Count == 0) throw new ArgumentException("the command is empty");
        var env = environment ?? Current;
        EnsureRunnable(policy, env);
        string directory = Path.GetFullPath(workingDirectory);
        if (env.SandboxAvailable && env.DropToNobody) GiveToNobody(directory);
        var argv = env.SandboxAvailable ? SandboxedArgv(env, command, directory, limits, policy) : UnsandboxedArgv(env, command, limits, policy);
        return Execute(argv, directory, stdin, limits.Time, env.OwnProcessGroup);
    }

    /// <summary>setsid → [setpriv to 65534] → bwrap (namespaces, mounts, cleared environment) → prlimit → the command.</summary>
    internal static List<string> SandboxedArgv(SandboxEnvironment env, IReadOnlyList<string> command, string directory, CommandLimits limits,
        SandboxPolicy policy)
    {
        var argv = new List<string>();
        // setsid execs in place when its caller is not a group leader (our child is not), so the command's pid is its
        // process group id; --wait keeps the exit status right should it ever have to fork.
        if (env.OwnProcessGroup) argv.AddRange(["setsid", "--wait"]);
        if (env.DropToNobody) argv.AddRange(["setpriv", $"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", "--"]);
        argv.AddRange([env.Bubblewrap, "--unshare-all", "--unshare-user", "--disable-userns"]);
        if (policy.AllowNetwork) argv.Add("--share-net");
        argv.AddRange(["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]);
        foreach (var top in new[] { "bin", "sbin", "lib", "lib32", "lib64", "libx32" })
        {
            var info = new DirectoryInfo("/" + top);
            if (info.LinkTarget is string target) argv.AddRange(["--symlink", target, "/" + top]);
            else if (info.Exists) argv.AddRange(["--ro-bind", "/" + top, "/" + top]);
        }
        string temporary = CommandLimits.TemporaryBytes.ToString(System.Globalization.CultureInfo.InvariantCulture);
        argv.AddRange(["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--size", temporary, "--tmpfs", "/dev/shm",
            "--size", temporary, "--tmpfs", "/tmp", "--bind", directory, directory, "--chdir", directory,
            // bwrap's root and /dev are memory-backed and writable by the sandbox: made read-only once everything is mounted.
            "--remount-ro", "/dev", "--remount-ro", "/",
            "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "--setenv", "HOME", directory, "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8", "--"]);
        argv.AddRange(Limits(limits));
        argv.AddRange(command);
        return argv;
    }

    static List<string> UnsandboxedArgv(SandboxEnvironment env, IReadOnlyList<string> command, CommandLimits limits, SandboxPolicy policy)
    {
        var argv = new List<string>();
        if (env.OwnProcessGroup) argv.AddRange(["setsid", "--wait"]);
        if (!policy.AllowNetwork) argv.AddRange(["unshare", "-rn", "--"]);
        if (env.Prlimit) argv.AddRange(Limits(limits));
        argv.AddRange(command);
        return argv;
    }

    static string[] Limits(CommandLimits limits)
    {
        var c = System.Globalization.CultureInfo.InvariantCulture;
        long cpu = limits.CpuSeconds;
        return ["prlimit", $"--as={limits.MemoryBytes.ToString(c)}", $"--cpu={cpu.ToString(c)}:{(cpu + 1).ToString(c)}",
            $"--fsize={CommandLimits.FileSizeBytes.ToString(c)}", $"--nproc={CommandLimits.Processes.ToString(c)}", "--core=0", "--"];
    }

    static CommandOutcome Execute(List<string> argv, string workingDirectory, string? stdin, TimeSpan timeout, bool ownGroup)
    {
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
        // Whether it finished or not, nothing it started may outlive the check: the group dies, and with bwrap's
        // monitor gone its PID namespace (--die-with-parent) and everything in it die too.
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

    /// <summary>Hand the scratch folder and what the checker wrote into it to uid/gid 65534 (the sandbox's user when
    /// hone runs as root).</summary>
    internal static void GiveToNobody(string directory)
    {
        Own(directory);
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories)) Own(entry);

        static void Own(string path)
        {
            if (Lchown(path, Nobody, Nobody) != 0)
                throw new IOException($"{path}: cannot hand the checker's scratch folder to uid {Nobody} (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Lchown(string path, int owner, int group);

    /// <summary>Run a probe command (10 s at most); Ok when it exits 0, with what it printed.</summary>
    internal static (bool Ok, string Output) Probe(IReadOnlyList<string> argv)
    {
        try
        {
            var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi);
            if (p == null) return (false, "");
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromSeconds(10))) { p.Kill(true); return (false, "timed out"); }
            string text = stderr.Result + stdout.Result;
            return (p.ExitCode == 0, text.Length > 300 ? text[..300] : text);
        }
        catch (System.ComponentModel.Win32Exception) { return (false, ""); } // not installed
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
