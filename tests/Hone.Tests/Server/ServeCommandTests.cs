using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>`hone serve` as a process: it listens, says where and whether a key is needed, loads, answers; bad
/// arguments and a model that cannot be loaded end it with one error line.</summary>
public class ServeCommandTests
{
    static Uri WaitForReady(HoneCli.Child child)
    {
        Assert.True(HangGuard.WaitUntil(() => child.Stderr.Contains("ready:") || child.HasExited, 50), $"no ready line:\n{child.Stderr}");
        Assert.False(child.HasExited, child.Stderr);
        var match = Regex.Match(child.Stderr, @"listening on (http://127\.0\.0\.1:\d+/)");
        Assert.True(match.Success, child.Stderr);
        return new Uri(match.Groups[1].Value);
    }

    [Fact]
    public async Task Serve_listens_on_loopback_loads_and_requires_the_key_from_a_file()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("key"), "file-key-123\n");
        using var child = HoneCli.Start(null, "serve", TinyChatModel.Path, "--port", "0", "--parallel", "2", "--api-key-file", dir.File("key"));
        var address = WaitForReady(child);
        Assert.DoesNotContain("no API key", child.Stderr);
        using var http = new HttpClient { BaseAddress = address, Timeout = HangGuard.Limit };
        Assert.Equal(200, (int)(await http.GetAsync("/health")).StatusCode);
        Assert.Equal(401, (int)(await http.GetAsync("/v1/models")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "file-key-123");
        var models = await http.GetAsync("/v1/models");
        Assert.Equal(200, (int)models.StatusCode);
        Assert.Contains(Path.GetFileName(TinyChatModel.Path), await models.Content.ReadAsStringAsync());
    }

    [Fact]
    public void Without_a_key_serve_says_it_listens_on_loopback_only()
    {
        using var child = HoneCli.Start(null, "serve", TinyChatModel.Path, "--port", "0");
        WaitForReady(child);
        Assert.Contains("no API key set, so only this machine can connect", child.Stderr);
    }

    [Fact]
    public void Bad_arguments_and_a_model_that_cannot_load_end_serve_with_one_error_line()
    {
        using var dir = new TempDirectory();
        var badAdapter = HoneCli.Run("serve", TinyChatModel.Path, "--port", "0", "--adapter", "no-equals-sign");
        Assert.Equal(1, badAdapter.ExitCode);
        Assert.Contains("expected NAME=PATH", badAdapter.Stderr);
        var badName = HoneCli.Run("serve", TinyChatModel.Path, "--port", "0", "--adapter", $"../x={dir.Path}");
        Assert.Equal(1, badName.ExitCode);
        Assert.Contains("--adapter ../x", badName.Stderr);
        var missing = HoneCli.Run("serve", dir.File("no-such-model"), "--port", "0");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("could not be loaded", missing.Stderr);
        Assert.Contains("error:", missing.Stderr);
        var badPort = HoneCli.Run("serve", TinyChatModel.Path, "--port", "70000");
        Assert.NotEqual(0, badPort.ExitCode);
        Assert.Contains("--port", badPort.Stderr);
    }
}
