using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>The command checker and its sandbox: pass, fail, timeout (the whole process group dies), no network,
/// and HumanEval's own example samples.</summary>
public class CommandCheckerTests
{
    /// <summary>The time limit of commands that should finish: a hang guard, far beyond a slow run on a loaded machine.</summary>
    static readonly TimeSpan Long = TimeSpan.FromMinutes(10);

    /// <summary>Commands that must be stopped by a 1-second limit sleep this long: a check that waited for them instead
    /// would outlast the hang guard.</summary>
    const string Forever = "7200";

    /// <summary>Isolated where this machine can isolate; the tests that need isolation check for it themselves.</summary>
    static bool Isolate => CommandSandbox.NetworkIsolationAvailable;

    [Fact]
    public void Exit_code_zero_passes_and_anything_else_fails()
    {
        using var dir = new TempDirectory();
        var pass = CommandSandbox.Run(["sh", "-c", "echo hello; exit 0"], dir.Path, null, Long, Isolate);
        Assert.True(pass.Passed);
        Assert.Equal(0, pass.ExitCode);
        Assert.Contains("hello", pass.Output);
        var fail = CommandSandbox.Run(["sh", "-c", "echo oops >&2; exit 3"], dir.Path, null, Long, Isolate);
        Assert.False(fail.Passed);
        Assert.Equal(3, fail.ExitCode);
        Assert.False(fail.TimedOut);
        Assert.Contains("oops", fail.Output);
        var missing = CommandSandbox.Run(["sh", "-c", "no-such-program-here"], dir.Path, null, Long, Isolate);
        Assert.False(missing.Passed);
    }

    [Fact]
    public void The_command_runs_in_the_given_directory_and_reads_the_given_input()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("expected.txt"), "abc");
        var r = CommandSandbox.Run(["sh", "-c", "test \"$(cat expected.txt)\" = \"$(cat)\""], dir.Path, "abc", Long, Isolate);
        Assert.True(r.Passed, r.Output);
        r = CommandSandbox.Run(["sh", "-c", "test \"$(cat expected.txt)\" = \"$(cat)\""], dir.Path, "abd", Long, Isolate);
        Assert.False(r.Passed);
        // No stdin given: the input is empty, not the terminal.
        r = CommandSandbox.Run(["sh", "-c", "test -z \"$(cat)\""], dir.Path, null, Long, Isolate);
        Assert.True(r.Passed, r.Output);
    }

    static bool Alive(int pid)
    {
        var stat = $"/proc/{pid}/stat";
        if (!File.Exists(stat)) return false;
        try
        {
            var text = File.ReadAllText(stat);
            return text[(text.LastIndexOf(')') + 2)] != 'Z'; // a zombie is dead, only not yet reaped
        }
        catch (IOException) { return false; }
    }

    static void AssertDies(int pid) =>
        Assert.True(HangGuard.WaitUntil(() => !Alive(pid), 50), $"process {pid} outlived the check by {HangGuard.Limit}");

    [SkippableFact]
    public void A_timeout_kills_the_command_and_everything_it_started()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc");
        using var dir = new TempDirectory();
        // The background sleep keeps the output pipe open: the check must not wait for it.
        var r = HangGuard.Run("a check with a 1 s limit",
            () => CommandSandbox.Run(["sh", "-c", $"sleep {Forever} & echo $! > child.pid; sleep {Forever}"], dir.Path, null, TimeSpan.FromSeconds(1), Isolate));
        Assert.True(r.TimedOut);
        Assert.Null(r.ExitCode);
        Assert.False(r.Passed);
        AssertDies(int.Parse(File.ReadAllText(dir.File("child.pid")).Trim()));
    }

    [Fact]
    public void Input_the_command_never_reads_cannot_hold_the_check_past_its_time_limit()
    {
        using var dir = new TempDirectory();
        var r = HangGuard.Run("a check with a 1 s limit whose input is never read",
            () => CommandSandbox.Run(["sleep", Forever], dir.Path, new string('x', 4 << 20), TimeSpan.FromSeconds(1), Isolate));
        Assert.True(r.TimedOut);
    }

    static int ProcessGroupOf(string stat) => int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[2]);

    [SkippableFact]
    public void The_command_leads_its_own_process_group()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc");
        using var dir = new TempDirectory();
        // The shell reports its pid and its process group (field 5 of /proc/self/stat): equal means the group it
        // leads is what a timeout kills, and it is not ours.
        var r = CommandSandbox.Run(["sh", "-c", "echo $$; cat /proc/$$/stat"], dir.Path, null, Long, Isolate);
        Assert.True(r.Passed, r.Output);
        var lines = r.Output.Split('\n');
        Assert.Equal(int.Parse(lines[0]), ProcessGroupOf(lines[1]));
        Assert.NotEqual(ProcessGroupOf(File.ReadAllText("/proc/self/stat")), ProcessGroupOf(lines[1]));
    }

    [SkippableFact]
    public void Background_processes_do_not_outlive_a_finished_command()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc");
        using var dir = new TempDirectory();
        var r = CommandSandbox.Run(["sh", "-c", "sleep 100 > /dev/null 2>&1 & echo $! > child.pid; exit 0"], dir.Path, null, Long, Isolate);
        Assert.True(r.Passed);
        AssertDies(int.Parse(File.ReadAllText(dir.File("child.pid")).Trim()));
    }

    [Fact]
    public void Without_network_a_socket_cannot_connect_even_to_a_listener_on_this_machine()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var dir = new TempDirectory();
        string[] connect = ["bash", "-c", $"exec 3<>/dev/tcp/127.0.0.1/{port}"];
        // Control: with network allowed the same command connects, so a failure below is the sandbox's doing.
        var open = CommandSandbox.Run(connect, dir.Path, null, Long, isolateNetwork: false);
        Assert.True(open.Passed, "the control connection failed: " + open.Output);
        if (!CommandSandbox.NetworkIsolationAvailable)
        {
            // Where no namespace can be made the checker refuses instead of running with network.
            var refused = Assert.Throws<InvalidOperationException>(() => CommandSandbox.Run(connect, dir.Path, null, Long, isolateNetwork: true));
            Assert.Contains("--allow-network", refused.Message);
            return;
        }
        var isolated = CommandSandbox.Run(connect, dir.Path, null, Long, isolateNetwork: true);
        Assert.False(isolated.Passed, "connected from inside the sandbox");
        Assert.False(isolated.TimedOut);
    }

    [Fact]
    public void Command_checker_writes_files_fills_templates_and_cleans_up()
    {
        var spec = new CheckerSpec("command", [], Command: ["sh", "-c", "test \"$(cat answer.txt)\" = \"$(cat)\" && test \"$1\" = 7 && pwd > \"$2\"", "sh", "{n}", "{where}"],
            Files: new Dictionary<string, string> { ["answer.txt"] = "{completion}" }, Stdin: "{completion}", TimeoutSeconds: Long.TotalSeconds);
        using var dir = new TempDirectory();
        var record = new JsonObject { ["n"] = 7, ["where"] = dir.File("cwd.txt") };
        var settings = new Checkers.Settings(AllowNetwork: !CommandSandbox.NetworkIsolationAvailable);
        var passed = Checkers.Check(spec, new CheckInput("x = 1", record, null), settings);
        Assert.Equal((true, "pass"), (passed.Passed, passed.Outcome));
        var workDir = File.ReadAllText(dir.File("cwd.txt")).Trim();
        Assert.Contains("hone-check-", workDir);
        Assert.False(Directory.Exists(workDir), "the working directory should be removed");
        record["n"] = 8;
        var failed = Checkers.Check(spec, new CheckInput("x = 1", record, null), settings);
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
        var settings = new Checkers.Settings(AllowNetwork: !CommandSandbox.NetworkIsolationAvailable);
        // human-eval's 3 s limit only for the sample that sleeps 10 s (a loaded machine can only make it time out
        // sooner); the others get the hang guard, so a slow Python start cannot turn a pass into a timeout.
        var outcomes = samples.Select(s => Checkers.Check(checker with { TimeoutSeconds = s.Contains("time.sleep(10)") ? 3 : Long.TotalSeconds },
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
        var checker = SampledTask.ReadChecker(new TaskSpecReader(spec["checker"]!.AsObject(), "humaneval")) with { TimeoutSeconds = Long.TotalSeconds };
        var settings = new Checkers.Settings(AllowNetwork: !CommandSandbox.NetworkIsolationAvailable);
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
        try { return CommandSandbox.Run(["python3", "-c", "pass"], dir.Path, null, Long, isolateNetwork: false).Passed; }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }
}
