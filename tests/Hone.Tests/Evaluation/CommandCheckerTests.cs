using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>The command checker and its sandbox: pass, fail, timeout (everything it started dies), no network, no
/// writes outside its scratch folder, no view of the user's files or environment, memory and process limits, the
/// refusal where no sandbox can be made, and HumanEval's own example samples.</summary>
public class CommandCheckerTests
{
    /// <summary>The limit of commands that should finish: a hang guard, far beyond a slow run on a loaded machine.</summary>
    static readonly CommandLimits Long = new(TimeSpan.FromMinutes(10));
    static readonly CommandLimits Short = new(TimeSpan.FromSeconds(1));

    /// <summary>Sandboxed where this machine can make the sandbox; elsewhere the behaviour tests run unsandboxed
    /// (explicitly allowed) and the isolation tests skip with the reason.</summary>
    static SandboxPolicy Policy => new(AllowNetwork: !CommandSandbox.Current.SandboxAvailable && !CommandSandbox.Current.NetworkNamespace,
        AllowUnsandboxed: !CommandSandbox.Current.SandboxAvailable);

    static Checkers.Settings Settings => new(Policy.AllowNetwork, Policy.AllowUnsandboxed);

    static void RequireSandbox() =>
        Skip.IfNot(CommandSandbox.Current.SandboxAvailable, $"no sandbox on this machine: {CommandSandbox.Current.SandboxFailure}");

    [Fact]
    public void Exit_code_zero_passes_and_anything_else_fails()
    {
        using var dir = new TempDirectory();
        var pass = CommandSandbox.Run(["sh", "-c", "echo hello; exit 0"], dir.Path, null, Long, Policy);
        Assert.True(pass.Passed, pass.Output);
        Assert.Equal(0, pass.ExitCode);
        Assert.Contains("hello", pass.Output);
        var fail = CommandSandbox.Run(["sh", "-c", "echo oops >&2; exit 3"], dir.Path, null, Long, Policy);
        Assert.False(fail.Passed);
        Assert.Equal(3, fail.ExitCode);
        Assert.False(fail.TimedOut);
        Assert.Contains("oops", fail.Output);
        var missing = CommandSandbox.Run(["sh", "-c", "no-such-program-here"], dir.Path, null, Long, Policy);
        Assert.False(missing.Passed);
    }

    [Fact]
    public void The_command_runs_in_the_given_directory_and_reads_the_given_input()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("expected.txt"), "abc");
        var r = CommandSandbox.Run(["sh", "-c", "test \"$(cat expected.txt)\" = \"$(cat)\""], dir.Path, "abc", Long, Policy);
        Assert.True(r.Passed, r.Output);
        r = CommandSandbox.Run(["sh", "-c", "test \"$(cat expected.txt)\" = \"$(cat)\""], dir.Path, "abd", Long, Policy);
        Assert.False(r.Passed);
        // No stdin given: the input is empty, not the terminal.
        r = CommandSandbox.Run(["sh", "-c", "test -z \"$(cat)\""], dir.Path, null, Long, Policy);
        Assert.True(r.Passed, r.Output);
        // The scratch folder is writable (and is the working directory).
        r = CommandSandbox.Run(["sh", "-c", "echo made > made.txt && test \"$(pwd)\" = \"$1\"", "sh", dir.Path], dir.Path, null, Long, Policy);
        Assert.True(r.Passed, r.Output);
        Assert.Equal("made", File.ReadAllText(dir.File("made.txt")).Trim());
    }

    /// <summary>Processes of this machine (any PID namespace: they are all visible from here) whose command line
    /// holds <paramref name="token"/>, zombies excluded.</summary>
    static List<int> ProcessesWith(string token)
    {
        var found = new List<int>();
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), out int pid) || pid == Environment.ProcessId) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(entry, "cmdline")).Replace('\0', ' ');
                if (!cmdline.Contains(token, StringComparison.Ordinal)) continue;
                var stat = File.ReadAllText(Path.Combine(entry, "stat"));
                if (stat[(stat.LastIndexOf(')') + 2)] != 'Z') found.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return found;
    }

    static void AssertNoneSurvive(string token)
    {
        HangGuard.WaitUntil(() => ProcessesWith(token).Count == 0, 50);
        Assert.True(ProcessesWith(token).Count == 0, $"processes outlived the check by {HangGuard.Limit}: {string.Join(", ", ProcessesWith(token))}");
    }

    [SkippableFact]
    public void A_timeout_kills_the_command_and_everything_it_started()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc");
        using var dir = new TempDirectory();
        string token = "hone-timeout-" + Guid.NewGuid().ToString("N");
        // A background sleeper and a foreground one, each named by the token (bash's exec -a sets argv[0]).
        var r = CommandSandbox.Run(["bash", "-c", $"(exec -a {token} sleep 100) & exec -a {token} sleep 100"], dir.Path, null, Short, Policy);
        Assert.True(r.TimedOut, r.Output);
        Assert.Null(r.ExitCode);
        Assert.False(r.Passed);
        AssertNoneSurvive(token);
    }

    [Fact]
    public void Input_the_command_never_reads_cannot_hold_the_check_past_its_time_limit()
    {
        using var dir = new TempDirectory();
        var r = CommandSandbox.Run(["sleep", "60"], dir.Path, new string('x', 4 << 20), Short, Policy);
        Assert.True(r.TimedOut);
    }

    [SkippableFact]
    public void Background_processes_do_not_outlive_a_finished_command()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc");
        using var dir = new TempDirectory();
        string token = "hone-background-" + Guid.NewGuid().ToString("N");
        var r = CommandSandbox.Run(["bash", "-c", $"(exec -a {token} sleep 100) > /dev/null 2>&1 & exit 0"], dir.Path, null, Long, Policy);
        Assert.True(r.Passed, r.Output);
        AssertNoneSurvive(token);
    }

    [Fact]
    public void Without_network_a_socket_cannot_connect_even_to_a_listener_on_this_machine()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var dir = new TempDirectory();
        string[] connect = ["bash", "-c", $"exec 3<>/dev/tcp/127.0.0.1/{port}"];
        var env = CommandSandbox.Current;
        // Control: with network allowed the same command connects, so a failure below is the sandbox's doing.
        var open = CommandSandbox.Run(connect, dir.Path, null, Long, new SandboxPolicy(AllowNetwork: true, AllowUnsandboxed: !env.SandboxAvailable));
        Assert.True(open.Passed, "the control connection failed: " + open.Output);
        var isolatedPolicy = new SandboxPolicy(AllowNetwork: false, AllowUnsandboxed: !env.SandboxAvailable);
        if (!env.SandboxAvailable && !env.NetworkNamespace)
        {
            // Where no namespace can be made the checker refuses instead of running with network.
            var refused = Assert.Throws<InvalidOperationException>(() => CommandSandbox.Run(connect, dir.Path, null, Long, isolatedPolicy));
            Assert.Contains("--allow-network", refused.Message);
            return;
        }
        var isolated = CommandSandbox.Run(connect, dir.Path, null, Long, isolatedPolicy);
        Assert.False(isolated.Passed, "connected from inside the sandbox");
        Assert.False(isolated.TimedOut);
    }

    [SkippableFact]
    public void Model_written_code_cannot_write_outside_its_scratch_folder()
    {
        RequireSandbox();
        using var scratch = new TempDirectory();
        using var outside = new TempDirectory(); // the test's own temp folder, beside the scratch folder
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string[] targets =
        [
            outside.File("escaped.txt"), Path.Combine(home, "hone-escaped-" + Guid.NewGuid().ToString("N")),
            Path.Combine(Environment.CurrentDirectory, "hone-escaped.txt"), "/usr/hone-escaped", "/etc/hone-escaped", "/hone-escaped",
        ];
        // Each target: try to create it; report any success.
        string[] tryAll = ["sh", "-c", "for t in \"$@\"; do if (echo x > \"$t\") 2>/dev/null; then echo \"WROTE $t\"; fi; done; echo inside > inside.txt", "sh"];
        var r = CommandSandbox.Run([.. tryAll, .. targets], scratch.Path, null, Long, Policy);
        Assert.True(r.Passed, r.Output);
        Assert.DoesNotContain("WROTE", r.Output);
        // The machine's /tmp is not there either: a file written to /tmp lands in the sandbox's own, discarded with it.
        string inTemp = Path.Combine(Path.GetTempPath(), "hone-escaped-" + Guid.NewGuid().ToString("N"));
        Assert.True(CommandSandbox.Run([.. tryAll, inTemp], scratch.Path, null, Long, Policy).Passed);
        foreach (var t in targets.Append(inTemp)) Assert.False(File.Exists(t), $"{t} was created from inside the sandbox");
        Assert.Equal("inside", File.ReadAllText(scratch.File("inside.txt")).Trim()); // control: the scratch folder is writable
    }

    [SkippableFact]
    public void Model_written_code_cannot_read_the_users_files_or_environment()
    {
        RequireSandbox();
        using var scratch = new TempDirectory();
        using var planted = new TempDirectory();
        string secret = "hone-secret-" + Guid.NewGuid().ToString("N");
        string inTemp = planted.File("secret.txt");
        File.WriteAllText(inTemp, secret);
        string homeDir = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".hone-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(homeDir);
        string inHome = Path.Combine(homeDir, "secret.txt");
        File.WriteAllText(inHome, secret);
        Environment.SetEnvironmentVariable("HONE_TEST_SECRET", secret);
        try
        {
            // Control: the same command unsandboxed reads both files and sees the variable.
            string[] read = ["sh", "-c", "cat \"$1\"; cat \"$2\"; env", "sh", inTemp, inHome];
            var leaky = CommandSandbox.Run(read, scratch.Path, null, Long, new SandboxPolicy(AllowNetwork: true, AllowUnsandboxed: true),
                CommandSandbox.Current with { SandboxFailure = "switched off for the control run" });
            Assert.Equal(3, leaky.Output.Split(secret).Length - 1);
            var r = CommandSandbox.Run(read, scratch.Path, null, Long, Policy);
            Assert.DoesNotContain(secret, r.Output);
            // The folders are not even there to list: / holds only the system's folders, /tmp only the scratch folder.
            var listing = CommandSandbox.Run(["sh", "-c", "ls -a / /tmp \"$1\"", "sh", Path.GetDirectoryName(homeDir)!], scratch.Path, null, Long, Policy);
            Assert.DoesNotContain(Path.GetFileName(homeDir), listing.Output);
            Assert.DoesNotContain(Path.GetFileName(planted.Path), listing.Output);
        }
        finally
        {
            Environment.SetEnvironmentVariable("HONE_TEST_SECRET", null);
            Directory.Delete(homeDir, true);
        }
    }

    [SkippableFact]
    public void The_limits_are_set_and_an_allocation_past_the_memory_limit_fails()
    {
        RequireSandbox();
        using var dir = new TempDirectory();
        var limits = new CommandLimits(TimeSpan.FromSeconds(20), 512L << 20);
        // The kernel's own account of the command's limits (soft values).
        var r = CommandSandbox.Run(["cat", "/proc/self/limits"], dir.Path, null, limits, Policy);
        Assert.True(r.Passed, r.Output);
        var soft = r.Output.Split('\n').Where(l => l.StartsWith("Max ", StringComparison.Ordinal))
            .Select(l => System.Text.RegularExpressions.Regex.Split(l.Trim(), @"\s{2,}"))
            .ToDictionary(f => f[0], f => f[1]);
        Assert.Equal((512L << 20).ToString(), soft["Max address space"]);
        Assert.Equal(limits.CpuSeconds.ToString(), soft["Max cpu time"]);
        Assert.Equal(CommandLimits.Processes.ToString(), soft["Max processes"]);
        Assert.Equal(CommandLimits.FileSizeBytes.ToString(), soft["Max file size"]);
        Assert.Equal("0", soft["Max core file size"]);
        // dd's buffer is one allocation of bs bytes: 128 MiB fits in 512 MiB of address space, 1 GiB does not.
        var fits = CommandSandbox.Run(["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"], dir.Path, null, limits, Policy);
        Assert.True(fits.Passed, fits.Output);
        var tooBig = CommandSandbox.Run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1G", "count=1"], dir.Path, null, limits, Policy);
        Assert.False(tooBig.Passed, tooBig.Output);
        Assert.False(tooBig.TimedOut);
        Assert.Contains("memory exhausted", tooBig.Output);
    }

    [SkippableFact]
    public void A_fork_bomb_meets_the_process_limit_and_dies_with_the_check()
    {
        RequireSandbox();
        using var dir = new TempDirectory();
        string token = $"1000.{Random.Shared.Next(100_000_000, 999_999_999)}"; // a sleep length no other process uses
        // More sleepers than the limit allows: dash stops at the first failed fork; all die at the end of the check.
        var r = CommandSandbox.Run(["sh", "-c", $"for i in $(seq {CommandLimits.Processes + 50}); do sleep {token} >/dev/null 2>&1 & done; exit 0"],
            dir.Path, null, new CommandLimits(TimeSpan.FromSeconds(120)), Policy);
        Assert.False(r.TimedOut, r.Output);
        Assert.False(r.Passed, r.Output);
        Assert.Contains("fork", r.Output, StringComparison.OrdinalIgnoreCase);
        AssertNoneSurvive(token);
    }

    [Fact]
    public void Without_a_sandbox_commands_are_refused_unless_explicitly_allowed()
    {
        var missing = SandboxEnvironment.Detect(bubblewrap: "/nonexistent/hone-test/bwrap");
        Assert.False(missing.SandboxAvailable);
        Assert.Contains("bwrap", missing.SandboxFailure);
        using var dir = new TempDirectory();
        var refused = Assert.Throws<InvalidOperationException>(() =>
            CommandSandbox.Run(["true"], dir.Path, null, Long, new SandboxPolicy(), missing));
        Assert.Contains("--allow-unsandboxed-commands", refused.Message);
        Assert.Contains("bubblewrap", refused.Message);
        Assert.Throws<InvalidOperationException>(() => CommandSandbox.EnsureRunnable(new SandboxPolicy(AllowNetwork: true), missing));
        Assert.StartsWith("NOT sandboxed", CommandSandbox.Describe(new SandboxPolicy(AllowUnsandboxed: true), missing));
        if (!missing.NetworkNamespace && !OperatingSystem.IsWindows()) return;
        // Allowed: it runs, with the limits but with the user's files in reach.
        using var outside = new TempDirectory();
        var r = CommandSandbox.Run(["sh", "-c", "echo x > \"$1\"", "sh", outside.File("reached.txt")], dir.Path, null, Long,
            new SandboxPolicy(AllowUnsandboxed: true), missing);
        Assert.True(r.Passed, r.Output);
        Assert.True(File.Exists(outside.File("reached.txt")));
    }

    [Fact]
    public void The_sandbox_is_described_in_eval_help()
    {
        var help = HoneCli.Run("eval", "--help");
        Assert.Equal(0, help.ExitCode);
        var text = System.Text.RegularExpressions.Regex.Replace(help.Stdout, @"\s+", " ");
        foreach (var phrase in new[] { "bubblewrap", "read-only", "scratch folder as the only writable place", "network namespaces",
                     "memory_mb", "--allow-unsandboxed-commands", "--allow-network", "--precision", "exact" })
            Assert.Contains(phrase, text);
    }

    [Fact]
    public void Command_checker_writes_files_fills_templates_and_cleans_up()
    {
        var spec = new CheckerSpec("command", [], Command: ["sh", "-c", "test \"$(cat answer.txt)\" = \"$(cat)\" && test \"$1\" = 7 && pwd > \"$2\" && cat \"$2\"", "sh", "{n}", "{where}"],
            Files: new Dictionary<string, string> { ["answer.txt"] = "{completion}" }, Stdin: "{completion}", TimeoutSeconds: Long.Time.TotalSeconds);
        var record = new JsonObject { ["n"] = 7, ["where"] = "cwd.txt" };
        var passed = Checkers.Check(spec, new CheckInput("x = 1", record, null), Settings);
        Assert.Equal((true, "pass"), (passed.Passed, passed.Outcome));
        var workDir = passed.Output!.Trim();
        Assert.Contains("hone-check-", workDir);
        Assert.False(Directory.Exists(workDir), "the working directory should be removed");
        record["n"] = 8;
        var failed = Checkers.Check(spec, new CheckInput("x = 1", record, null), Settings);
        Assert.Equal((false, "exit_1"), (failed.Passed, failed.Outcome));
    }

    [SkippableFact]
    public void HumanEval_example_samples_pass_three_of_six_as_in_human_eval()
    {
        var problem = JsonNode.Parse(File.ReadLines(SharedData.Require("datasets/humaneval/example_problem.jsonl")).First())!.AsObject();
        var samples = File.ReadLines(SharedData.Require("datasets/humaneval/example_samples.jsonl")).Select(l => (string)JsonNode.Parse(l)!["completion"]!).ToList();
        Skip.If(!HasPython(), "python3 is not installed");
        Assert.True(BuiltinTasks.TryResolve("humaneval", () => SharedData.Root, out var spec, out _));
        var checker = SampledTask.ReadChecker(new TaskSpecReader(spec["checker"]!.AsObject(), "humaneval"));
        var settings = Settings;
        // human-eval's 3 s limit only for the sample that sleeps 10 s (a loaded machine can only make it time out
        // sooner); the others get the hang guard, so a slow Python start cannot turn a pass into a timeout.
        var outcomes = samples.Select(s => Checkers.Check(checker with { TimeoutSeconds = s.Contains("time.sleep(10)") ? 3 : Long.Time.TotalSeconds },
            new CheckInput(s, problem, null), settings).Outcome).ToList();
        // subprocess of a missing program fails, sleep(10) times out, input() hits end of input; the three
        // differently indented `return 1` pass — human-eval's README reports pass@1 = 0.5 for this file.
        Assert.Equal(["exit_1", "timeout", "exit_1", "pass", "pass", "pass"], outcomes);
    }

    [SkippableFact]
    public void HumanEval_canonical_solutions_pass_the_builtin_checker()
    {
        var problems = EvalData.ReadRecords(SharedData.Require("datasets/humaneval/HumanEval.jsonl.gz"));
        Assert.Equal(164, problems.Count);
        Skip.If(!HasPython(), "python3 is not installed");
        Assert.True(BuiltinTasks.TryResolve("humaneval", () => SharedData.Root, out var spec, out _));
        var checker = SampledTask.ReadChecker(new TaskSpecReader(spec["checker"]!.AsObject(), "humaneval")) with { TimeoutSeconds = Long.Time.TotalSeconds };
        var settings = Settings;
        foreach (var problem in problems.Take(8))
        {
            var solution = (string)problem["canonical_solution"]!;
            var ok = Checkers.Check(checker, new CheckInput(solution, problem, null), settings);
            Assert.True(ok.Passed, $"{problem["task_id"]}: {ok.Outcome} {ok.Output}");
            // And a wrong body fails its tests.
            var wrong = Checkers.Check(checker, new CheckInput("    return None\n", problem, null), settings);
            Assert.False(wrong.Passed, $"{problem["task_id"]}: returning None passed");
        }
    }

    static bool HasPython()
    {
        using var dir = new TempDirectory();
        try { return CommandSandbox.Run(["python3", "-c", "pass"], dir.Path, null, Long, Policy).Passed; }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }
}
