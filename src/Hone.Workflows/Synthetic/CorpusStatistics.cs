namespace Hone.Synthetic;

/// <summary>
/// How varied a generated text is. Sentences end at . ! ? or a line break; words are runs of letters (with an inner
/// apostrophe) or digits, lower-cased. Entropies are in bits: unigram H(w), bigram H(w1, w2) over adjacent words in
/// a document, and the conditional H(w2 | w1) = H(w1, w2) − H(w1), how unpredictable the next word is.
/// </summary>
public sealed record CorpusStatistics(
    int Documents, long Bytes, long Sentences, long DistinctSentences, long Words, int DistinctWords,
    double UnigramEntropy, double BigramEntropy)
{
    public double DistinctSentenceRatio => Sentences == 0 ? 0 : (double)DistinctSentences / Sentences;
    public double ConditionalBigramEntropy => BigramEntropy - UnigramEntropy;

    public static CorpusStatistics Measure(IEnumerable<string> documents)
    {
        var sentences = new HashSet<string>(StringComparer.Ordinal);
        var unigrams = new Dictionary<string, long>(StringComparer.Ordinal);
        var bigrams = new Dictionary<(string, string), long>();
        long sentenceCount = 0, words = 0, bytes = 0;
        int documentCount = 0;
        var word = new System.Text.StringBuilder();
        foreach (var document in documents)
        {
            documentCount++;
            bytes += System.Text.Encoding.UTF8.GetByteCount(document);
            int start = 0;
            for (int i = 0; i <= document.Length; i++)
                if (i == document.Length || document[i] is '.' or '!' or '?' or '\n')
                {
                    var sentence = document.AsSpan(start, Math.Min(i + 1, document.Length) - start).Trim();
                    if (sentence.Length > 1) { sentenceCount++; sentences.Add(sentence.ToString()); }
                    start = i + 1;
                }
            string? previous = null;
            for (int i = 0; i <= document.Length; i++)
            {
                char c = i < document.Length ? document[i] : ' ';
                bool inner = c == '\'' && word.Length > 0 && i + 1 < document.Length && char.IsLetter(document[i + 1]);
                if (char.IsLetterOrDigit(c) || inner) { word.Append(char.ToLowerInvariant(c)); continue; }
                if (word.Length == 0) continue;
                string w = word.ToString();
                word.Clear();
                words++;
                unigrams[w] = unigrams.GetValueOrDefault(w) + 1;
                if (previous != null) bigrams[(previous, w)] = bigrams.GetValueOrDefault((previous, w)) + 1;
                previous = w;
            }
        }
        return new CorpusStatistics(documentCount, bytes, sentenceCount, sentences.Count, words, unigrams.Count,
            Entropy(unigrams.Values), Entropy(bigrams.Values));
    }

    static double Entropy(IEnumerable<long> counts)
    {
        var list = counts as ICollection<long> ?? counts.ToList();
        double total = 0;
        foreach (var c in list) total += c;
        double h = 0;
        foreach (var c in list)
        {
            double p = c / total;
            h -= p * Math.Log2(p);
        }
        return h;
    }

    public override string ToString() =>
        $"{Documents:N0} documents, {Bytes:N0} bytes, {Sentences:N0} sentences ({DistinctSentenceRatio:P1} distinct), {Words:N0} words " +
        $"({DistinctWords:N0} distinct), unigram entropy {UnigramEntropy:F2} bits, bigram {BigramEntropy:F2} bits (next word given the previous: {ConditionalBigramEntropy:F2} bits)";
}
