using Xunit;
using System.Text.RegularExpressions;

namespace Hone.Tests.Infrastructure;

/// <summary>
/// The library's folders use only folders below them: tensors/kernels → formats → tokenization and chat templates →
/// experts (routing and router losses of mixtures of experts: math the model uses) → model → inference → batching (the batched engine) → transforms → training → evaluation → data tools → agents (the
/// agent benchmark) → synthetic
/// data → synthesis (teacher-made instruction data) → workflows → clients (in-process chat clients) → server (HTTP); the CLI may use all. The assemblies enforce
/// part of it (Hone.Kernels and Hone.Templates reference nothing of Hone; Hone.Workflows, Hone.Clients and Hone.Server
/// sit above Hone.Core); inside each this test reads the sources: a `using Hone.X` or a qualified `X.Name` of a folder
/// above is a violation.
/// </summary>
public sealed class LayeringTests
{
    static readonly string[] Order =
        ["Tensors", "Formats", "Templates", "Tokenization", "Grammars", "ToolCalls", "Experts", "Model", "Inference", "Batching", "Transforms", "Training", "Evaluation", "DataTools", "Agents",
         "Clients", "Synthetic", "Synthesis", "Workflows", "Server"];

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Hone.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Hone.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>The layer of a namespace: its second part, or "Templates" for the chat template engine.</summary>
    static string Layer(string ns) => ns.StartsWith("Hone.Tokenization.Templates", StringComparison.Ordinal) ? "Templates" : ns.Split('.')[1];

    static readonly Regex Namespace = new(@"^namespace (Hone(?:\.\w+)+);", RegexOptions.Multiline);
    static readonly Regex Comments = new(@"//[^\n]*|/\*.*?\*/", RegexOptions.Singleline);
    static readonly Regex Using = new(@"^using (?:static )?(Hone(?:\.\w+)+)", RegexOptions.Multiline);
    static readonly Regex Qualified = new(@"(?<![\w.])(?:Hone\.)?(Tokenization\.Templates|" + string.Join('|', Order) + @")\.[A-Z]\w*");

    public static IEnumerable<(string File, string From, string To, string Text)> References()
    {
        string src = Path.Combine(RepositoryRoot(), "src");
        foreach (var file in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(src, file);
            if (relative.StartsWith("Hone.Cli", StringComparison.Ordinal) || relative.Contains("/obj/") || relative.Contains("/bin/")) continue;
            string text = File.ReadAllText(file);
            var ns = Namespace.Match(text);
            Assert.True(ns.Success, $"{relative}: no file-scoped namespace");
            string from = Layer(ns.Groups[1].Value);
            string code = Namespace.Replace(Comments.Replace(text, ""), "");
            foreach (Match m in Using.Matches(code)) yield return (relative, from, Layer(m.Groups[1].Value), m.Value);
            foreach (Match m in Qualified.Matches(code))
                yield return (relative, from, m.Groups[1].Value == "Tokenization.Templates" ? "Templates" : m.Groups[1].Value, m.Value);
        }
    }

    [Fact]
    public void No_folder_uses_a_folder_above_it()
    {
        var violations = new List<string>();
        int checkedReferences = 0;
        foreach (var (file, from, to, text) in References())
        {
            int a = Array.IndexOf(Order, from), b = Array.IndexOf(Order, to);
            Assert.True(a >= 0, $"{file}: namespace layer '{from}' is not in the layering; add it to LayeringTests.Order");
            Assert.True(b >= 0, $"{file}: '{text}' names layer '{to}', which is not in the layering");
            checkedReferences++;
            if (b > a) violations.Add($"{file}: {from} uses {to} ({text})");
        }
        Assert.True(checkedReferences > 100, $"only {checkedReferences} cross-folder references found: the scan is broken");
        Assert.True(violations.Count == 0, string.Join("\n", violations.Distinct()));
    }

    [Fact]
    public void The_scan_finds_a_reference_upwards()
    {
        var hits = Qualified.Matches("var x = Inference.Sampler.Create(); var y = t.Model.Merges; Hone.Training.Trainer.Run();")
            .Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["Inference", "Training"], hits);
    }
}
