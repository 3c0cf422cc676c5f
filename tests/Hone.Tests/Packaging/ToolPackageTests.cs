using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Packaging;

/// <summary>
/// The `hone` dotnet tool as the README installs it: src/Hone.Cli packed into a nupkg, installed with
/// `dotnet tool install --source DIR` (that folder replaces every configured source, so nothing is fetched), and run.
/// </summary>
public sealed class ToolPackageTests
{
    const string PackageId = "Hone";
    const string Version = "0.1.0";

    /// <summary>A hang guard only: a pack or an install that has not finished by then is stuck, not slow.</summary>
    static TimeSpan HangGuard => Infrastructure.HangGuard.Limit; // the suite's one hang guard: generous, never a time limit

    [SkippableFact]
    public void Packed_tool_installs_from_a_local_folder_and_runs()
    {
        string repo = RepositoryRoot() ?? throw new SkipException("not run from a checkout (no Hone.sln above the test binaries)");
        string project = Path.Combine(repo, "src", "Hone.Cli", "Hone.Cli.csproj");
        using var dir = new TempDirectory();
        string packDir = dir.File("pack"), toolDir = dir.File("tool");
        // An empty package cache: a cached Hone 0.1.0 from an earlier pack must not stand in for this one, and the
        // user's cache stays untouched.
        var environment = new Dictionary<string, string>
        {
            ["NUGET_PACKAGES"] = dir.File("packages"), ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1", ["DOTNET_NOLOGO"] = "1",
            ["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1",
        };

        // The tests' own build of the tool (same configuration), so packing compiles nothing and restores nothing.
        var pack = Run("dotnet", ["pack", project, "-c", Configuration, "--no-build", "-o", packDir], dir.Path, environment);
        Assert.True(pack.ExitCode == 0, pack.ToString());
        string nupkg = Assert.Single(Directory.GetFiles(packDir, "*.nupkg"));
        Assert.Equal($"{PackageId}.{Version}.nupkg", Path.GetFileName(nupkg));
        CheckPackage(nupkg);

        var install = Run("dotnet", ["tool", "install", PackageId, "--version", Version, "--tool-path", toolDir, "--source", packDir],
            dir.Path, environment);
        Assert.True(install.ExitCode == 0, install.ToString());
        Assert.Contains("hone", install.Stdout);

        string hone = Path.Combine(toolDir, OperatingSystem.IsWindows() ? "hone.exe" : "hone");
        Assert.True(File.Exists(hone), $"the install put no {hone}: {install}");
        // The tool's shim looks for the runtime where this one runs (a dotnet outside the default places included).
        environment["DOTNET_ROOT"] = RuntimeRoot();

        var help = Run(hone, ["--help"], dir.Path, environment);
        Assert.True(help.ExitCode == 0, help.ToString());
        foreach (var command in new[] { "quickstart", "train", "generate", "chat", "eval", "merge-adapter", "convert", "synth" })
            Assert.Contains(command, help.Stdout);

        var version = Run(hone, ["--version"], dir.Path, environment);
        Assert.True(version.ExitCode == 0, version.ToString());
        Assert.StartsWith(Version, version.Stdout.Trim());

        // A command that runs the library end to end: generate a small corpus and train a tokenizer on it.
        string tokenizerDir = dir.File("tokenizer");
        var synth = Run(hone, ["synth", "tokenizer", "--out", tokenizerDir, "--size", "100K", "--vocab", "400", "--json"], dir.Path, environment);
        Assert.True(synth.ExitCode == 0, synth.ToString());
        var report = JsonNode.Parse(synth.Stdout)!;
        Assert.Equal(400, (int)report["vocab_size"]!);
        Assert.True(File.Exists(Path.Combine(tokenizerDir, "tokenizer.json")), synth.ToString());

        var bad = Run(hone, ["inspect", dir.File("no-such-model")], dir.Path, environment);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("no-such-model", bad.Stderr);
    }

    /// <summary>The package's manifest: a dotnet tool named hone, MIT by expression, the README packed and named.</summary>
    static void CheckPackage(string nupkg)
    {
        using var zip = ZipFile.OpenRead(nupkg);
        var nuspecEntry = Assert.Single(zip.Entries, e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        XDocument nuspec;
        using (var stream = nuspecEntry.Open()) nuspec = XDocument.Load(stream);
        var metadata = nuspec.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
        string? Field(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value;
        Assert.Equal(PackageId, Field("id"));
        Assert.Equal(Version, Field("version"));
        Assert.Equal("MIT", Field("license"));
        Assert.Equal("expression", metadata.Elements().Single(e => e.Name.LocalName == "license").Attribute("type")?.Value);
        Assert.Equal("README.md", Field("readme"));
        Assert.False(string.IsNullOrWhiteSpace(Field("description")));
        Assert.False(string.IsNullOrWhiteSpace(Field("authors")));
        Assert.Contains(metadata.Descendants(), e => e.Name.LocalName == "packageType" && e.Attribute("name")?.Value == "DotnetTool");
        var readme = Assert.Single(zip.Entries, e => e.FullName == "README.md");
        using var reader = new StreamReader(readme.Open(), Encoding.UTF8);
        Assert.StartsWith("# Hone", reader.ReadToEnd());
        Assert.Contains(zip.Entries, e => e.FullName.EndsWith("/hone.dll", StringComparison.Ordinal) && e.FullName.StartsWith("tools/", StringComparison.Ordinal));
    }

    static string Configuration =>
        typeof(ToolPackageTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

    static string? RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Hone.sln")) && File.Exists(Path.Combine(d.FullName, "src", "Hone.Cli", "Hone.Cli.csproj")))
                return d.FullName;
        return null;
    }

    /// <summary>The dotnet root of the running runtime: …/shared/Microsoft.NETCore.App/VERSION/System.Private.CoreLib.dll.</summary>
    static string RuntimeRoot() =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "..", "..", ".."));

    /// <summary>Runs a child to its end; past <see cref="HangGuard"/> it is killed and the test fails with what it printed.</summary>
    static HoneCli.Result Run(string file, string[] args, string workingDirectory, IReadOnlyDictionary<string, string> environment)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (stdout) stdout.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(HangGuard))
        {
            p.Kill(true);
            p.WaitForExit();
            string printed;
            lock (stdout) lock (stderr) printed = $"stdout: {stdout}\nstderr: {stderr}";
            Assert.Fail($"{file} {string.Join(' ', args)} still running after {HangGuard.TotalMinutes} minutes (hang guard); it printed:\n{printed}");
        }
        p.WaitForExit(); // drains the asynchronous readers
        lock (stdout) lock (stderr) return new HoneCli.Result(p.ExitCode, stdout.ToString(), stderr.ToString());
    }
}
