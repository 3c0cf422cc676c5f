using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Hone.Synthetic;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Synthetic;

public class GeneralCorpusTests(ITestOutputHelper output)
{
    const long Size = 1_000_000;
    static readonly Lazy<IReadOnlyList<string>> Corpus = new(() => GeneralCorpus.Generate(7, Size));

    /// <summary>The e-commerce domain's own words: fine-tuning must meet them for the first time.</summary>
    internal static readonly Regex DomainWords = new(
        @"\b(orders?|ordered|refunds?|refunded|track(ing|ed)?|ship(s|ped|ping|ment)?|deliver(y|ed|ies)?|parcels?|packages?|returns?|returned|" +
        @"accounts?|payments?|paid|pay|cancel(led|ed)?|address(es)?|e-?mails?|customers?|purchases?|invoices?|warehouse|couriers?|carriers?|" +
        @"dispatch(ed)?|passwords?|checkout|receipts?|discounts?)\b",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    [Fact]
    public void Is_deterministic_per_seed_and_reaches_the_target_size()
    {
        var again = GeneralCorpus.Generate(7, Size);
        Assert.Equal(Corpus.Value, again);
        Assert.NotEqual(Corpus.Value.Take(20), GeneralCorpus.Generate(8, 20_000).Take(20));
        long bytes = Corpus.Value.Sum(d => (long)Encoding.UTF8.GetByteCount(d) + 1);
        Assert.InRange(bytes, Size, Size + 5_000);
    }

    [Fact]
    public void Text_is_clean_no_template_syntax_blank_lines_or_doubled_spaces()
    {
        foreach (var document in Corpus.Value)
        {
            Assert.DoesNotMatch(@"[{}\[\]|]", document);
            Assert.DoesNotContain("\n\n", document);
            Assert.DoesNotContain("  ", document);
            Assert.DoesNotMatch(@"\b[Aa] [aeiouAEIOU]\w", document.Replace("a one", "", StringComparison.Ordinal));
            Assert.Equal(document.Trim(), document);
            Assert.True(char.IsUpper(document[0]) || document[0] == '"', document);
        }
    }

    [Fact]
    public void Contains_none_of_the_ecommerce_domain_vocabulary()
    {
        var hits = Corpus.Value.SelectMany(d => DomainWords.Matches(d).Select(m => m.Value)).Take(10).ToList();
        Assert.True(hits.Count == 0, "domain words in the general corpus: " + string.Join(", ", hits));
        // …which the e-commerce data is full of, so the list means something.
        var data = EcommerceDataset.Generate(7, 100);
        int domainHits = data.Train.Sum(c => c.Messages.Sum(m => DomainWords.Matches(m.Content).Count));
        Assert.True(domainHits > 500, $"only {domainHits} domain words in 100 conversations");
    }

    [Fact]
    public void Is_varied_and_every_genre_appears()
    {
        var clock = Stopwatch.StartNew();
        var big = GeneralCorpus.Generate(1, 4_000_000);
        double seconds = clock.Elapsed.TotalSeconds;
        var stats = CorpusStatistics.Measure(big);
        output.WriteLine($"4 MB generated in {seconds:F2} s: {stats}");
        Assert.True(stats.DistinctSentenceRatio > 0.5, stats.ToString());
        Assert.True(stats.DistinctSentences > 40_000, stats.ToString());
        Assert.True(stats.DistinctWords > 1_500, stats.ToString());
        Assert.True(stats.ConditionalBigramEntropy > 3.5, stats.ToString());

        // Genre markers: each genre has a form of its own.
        string all = string.Join("\n", Corpus.Value);
        foreach (var marker in new[] { "Dear diary,", "How to make", "was a ", "The final score was", "The temperature will reach", "A baby ", " plus ", "Dear ", ": ", "\" asked ", "journey took", " works at " })
            Assert.Contains(marker, all);
    }

    [Fact]
    public void Sums_comparisons_and_weekdays_are_true()
    {
        int checkedSums = 0, checkedComparisons = 0, checkedDays = 0;
        var sizes = GeneralLexicon.Animals.ToDictionary(a => a.Name, a => a.Size);
        var weekdays = GeneralLexicon.Weekdays;
        foreach (var document in Corpus.Value)
        {
            foreach (Match m in Regex.Matches(document, @"\b([a-z-]+(?: hundred(?: and [a-z-]+)?)?) plus ([a-z-]+) is ([a-z-]+(?: hundred(?: and [a-z-]+)?)?)\."))
            {
                Assert.Equal(Number(m.Groups[1].Value) + Number(m.Groups[2].Value), Number(m.Groups[3].Value));
                checkedSums++;
            }
            foreach (Match m in Regex.Matches(document, @"\b([A-Za-z-]+(?: hundred(?: and [a-z-]+)?)?) (?:apples|pears|oranges|lemons|peaches|plums|bananas) at ([a-z-]+) (?:cents|pence) each\. That's ([a-z-]+(?: hundred(?: and [a-z-]+)?)?) "))
            {
                Assert.Equal(Number(m.Groups[1].Value.ToLowerInvariant()) * Number(m.Groups[2].Value), Number(m.Groups[3].Value));
                checkedSums++;
            }
            foreach (Match m in Regex.Matches(document, @"had ([a-z-]+) \w+\. Then (?:he|she) found ([a-z-]+) more\. Now (?:he|she) has ([a-z-]+)\."))
            {
                Assert.Equal(Number(m.Groups[1].Value) + Number(m.Groups[2].Value), Number(m.Groups[3].Value));
                checkedSums++;
            }
            foreach (Match m in Regex.Matches(document, @"There were ([a-z-]+) \w+, and ([a-z-]+) went away\. Now there are ([a-z-]+) \w+ left\."))
            {
                Assert.Equal(Number(m.Groups[1].Value) - Number(m.Groups[2].Value), Number(m.Groups[3].Value));
                checkedSums++;
            }
            foreach (Match m in Regex.Matches(document, @"\b[Aa]n? ([a-z]+) is (bigger|smaller) than an? ([a-z]+)\."))
            {
                int a = sizes[m.Groups[1].Value], b = sizes[m.Groups[3].Value];
                Assert.True(m.Groups[2].Value == "bigger" ? a > b : a < b, m.Value);
                checkedComparisons++;
            }
            foreach (Match m in Regex.Matches(document, @"The day after (\w+day) is (\w+day)\."))
            {
                Assert.Equal(weekdays[(Array.IndexOf(weekdays, m.Groups[1].Value) + 1) % 7], m.Groups[2].Value);
                checkedDays++;
            }
        }
        output.WriteLine($"checked {checkedSums} sums, {checkedComparisons} size comparisons, {checkedDays} weekday sequences");
        Assert.True(checkedSums > 30 && checkedComparisons > 20 && checkedDays > 10);
    }

    [Fact]
    public void Held_out_split_takes_the_last_documents()
    {
        var (train, heldOut) = GeneralCorpus.Split(Corpus.Value, 0.05);
        Assert.Equal(Corpus.Value.Count, train.Count + heldOut.Count);
        Assert.Equal((int)Math.Round(Corpus.Value.Count * 0.05), heldOut.Count);
        Assert.Equal(Corpus.Value[^1], heldOut[^1]);
        Assert.Equal(Corpus.Value[0], train[0]);
    }

    /// <summary>"forty-six", "one hundred and eighty-four" → 46, 184.</summary>
    internal static int Number(string words)
    {
        int total = 0, current = 0;
        foreach (var part in words.Replace("-", " ", StringComparison.Ordinal).Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == "and") continue;
            if (part == "hundred") { current *= 100; continue; }
            int i = Array.IndexOf(GeneralLexicon.Ones, part);
            if (i >= 0) { current += i; continue; }
            int t = Array.IndexOf(GeneralLexicon.Tens, part);
            if (t >= 2) { current += t * 10; continue; }
            throw new FormatException($"'{part}' in '{words}' is not a number word");
        }
        return total + current;
    }
}
