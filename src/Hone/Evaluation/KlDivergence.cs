using System.Buffers.Binary;
using Hone.Formats;
using Hone.Model;

namespace Hone.Evaluation;

/// <summary>
/// A base file of token distributions, in llama-perplexity's --kl-divergence-base layout (little-endian), so that a
/// file written by either tool is read by the other:
/// <code>
/// "_logits_"                      8 bytes
/// n_ctx, n_vocab, n_chunk         int32 each
/// tokens                          int32 × n_chunk·n_ctx (the tokenized text, BOS first where the tokenizer adds one;
///                                 chunk starts are NOT yet replaced by BOS)
/// per chunk, per scored position  (n_ctx − 1 − n_ctx/2 positions: n_ctx/2 .. n_ctx−2, each predicting the next token)
///   scale, min_log_prob           float32 each
///   q[n_vocab]                    uint16, log p(i) ≈ scale·q[i] + min_log_prob; padded with a zero uint16 to an even count
/// </code>
/// Log-probabilities more than 16 nats under the most likely token's are stored as q = 0 (they are ignored, as in
/// llama.cpp, when the divergence is computed).
/// </summary>
public sealed class KlBaseFile
{
    public const string Magic = "_logits_";
    public const int HeaderBytes = 8 + 3 * 4;
    /// <summary>Log-probabilities this far (nats) under the top one are not stored.</summary>
    public const float Floor = 16f;

    public string Path { get; }
    public int Context { get; }
    public int VocabSize { get; }
    public int Chunks { get; }
    /// <summary>n_chunk·n_ctx tokens, as recorded.</summary>
    public int[] Tokens { get; }

    /// <summary>Positions scored per chunk: Context/2 .. Context−2.</summary>
    public int ScoredPerChunk => ScoredPerChunkFor(Context);
    /// <summary>uint16 values per scored position: 4 (two floats) + the vocabulary, rounded up to even.</summary>
    public int RecordLength => RecordLengthFor(VocabSize);
    public long ScoredPositions => (long)Chunks * ScoredPerChunk;

    public static int ScoredPerChunkFor(int context) => context - 1 - context / 2;
    public static int RecordLengthFor(int vocab) => checked(2 * ((vocab + 1) / 2) + 4);

    /// <summary>The exact length a file with this header has.</summary>
    public static long ExpectedLength(int context, int vocab, int chunks) => checked(
        HeaderBytes + 4L * context * chunks + (long)chunks * ScoredPerChunkFor(context) * RecordLengthFor(vocab) * 2);

    KlBaseFile(string path, int context, int vocab, int chunks, int[] tokens)
    {
        Path = path; Context = context; VocabSize = vocab; Chunks = chunks; Tokens = tokens;
    }

    /// <summary>Reads and checks the header and tokens; the file's length must be exactly what they imply.</summary>
    public static KlBaseFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long length = stream.Length;
        Span<byte> header = stackalloc byte[HeaderBytes];
        if (length < HeaderBytes || stream.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false) < HeaderBytes)
            throw new DataFormatException(path, 0, $"not a KL-divergence base file: {length} bytes, shorter than its {HeaderBytes}-byte header");
        if (!header[..8].SequenceEqual("_logits_"u8))
            throw new DataFormatException(path, 0, "not a KL-divergence base file (llama-perplexity --kl-divergence-base layout): it does not start with \"_logits_\"");
        int context = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        int vocab = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        int chunks = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
        if (context < 3 || context > 1 << 24) throw new DataFormatException(path, 0, $"context {context} in the header is out of range (3 .. {1 << 24})");
        if (vocab < 1 || vocab > 1 << 24) throw new DataFormatException(path, 0, $"vocabulary size {vocab} in the header is out of range (1 .. {1 << 24})");
        if (chunks < 1 || (long)chunks * context > int.MaxValue / 4) throw new DataFormatException(path, 0, $"chunk count {chunks} in the header is out of range");
        long expected = ExpectedLength(context, vocab, chunks);
        if (length != expected)
            throw new DataFormatException(path, 0, $"{length} bytes, but its header (ctx {context}, vocabulary {vocab}, {chunks} chunks) implies {expected}: " +
                                                   (length < expected ? "the file is truncated" : "it has trailing data"));
        var tokens = new int[checked(chunks * context)];
        var bytes = new byte[tokens.Length * 4];
        stream.ReadExactly(bytes);
        for (int i = 0; i < tokens.Length; i++)
        {
            tokens[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4 * i));
            if (tokens[i] < 0 || tokens[i] >= vocab)
                throw new DataFormatException(path, 0, $"token {i} is {tokens[i]}, outside the recorded vocabulary of {vocab}");
        }
        return new KlBaseFile(path, context, vocab, chunks, tokens);
    }

    /// <summary>Streams the stored records, one scored position at a time, in scoring order.</summary>
    public RecordReader Records() => new(this);

    public sealed class RecordReader : IDisposable
    {
        readonly FileStream _stream;
        readonly byte[] _bytes;
        readonly KlBaseFile _file;
        long _read;

        internal RecordReader(KlBaseFile file)
        {
            _file = file;
            _stream = new FileStream(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            if (_stream.Length != ExpectedLength(file.Context, file.VocabSize, file.Chunks))
                throw new DataFormatException(file.Path, 0, "the file changed while it was being read");
            _stream.Position = HeaderBytes + 4L * file.Tokens.Length;
            _bytes = new byte[file.RecordLength * 2];
        }

        /// <summary>The next record: scale, min_log_prob and the vocabulary's q values.</summary>
        public (float Scale, float MinLogProb, ReadOnlyMemory<byte> Q) Next()
        {
            if (_read >= _file.ScoredPositions) throw new InvalidOperationException($"{_file.Path}: all {_read} records were read");
            if (_stream.ReadAtLeast(_bytes, _bytes.Length, throwOnEndOfStream: false) < _bytes.Length)
                throw new DataFormatException(_file.Path, 0, $"the file ended in record {_read} of {_file.ScoredPositions}");
            _read++;
            return (BinaryPrimitives.ReadSingleLittleEndian(_bytes), BinaryPrimitives.ReadSingleLittleEndian(_bytes.AsSpan(4)),
                _bytes.AsMemory(8, _file.VocabSize * 2));
        }

        public void Dispose() => _stream.Dispose();
    }

    /// <summary>One position's compact record from its logits: the log-probabilities within <see cref="Floor"/> nats of
    /// the top one, quantized to 16 bits between the floor and the top (round to nearest, ties to even).</summary>
    public static void Encode(ReadOnlySpan<float> logits, Span<byte> record)
    {
        int v = logits.Length;
        float max = logits[0], min = logits[0];
        for (int i = 1; i < v; i++) { max = Math.Max(max, logits[i]); min = Math.Min(min, logits[i]); }
        min = Math.Max(min, max - Floor);
        double sum = 0;
        for (int i = 0; i < v; i++) sum += MathF.Exp(logits[i] - max);
        float logSumExp = (float)Math.Log(sum);
        float minLogProb = min - max - logSumExp;
        float scale = (max - min) / 65535f;
        BinaryPrimitives.WriteSingleLittleEndian(record, scale);
        BinaryPrimitives.WriteSingleLittleEndian(record[4..], minLogProb);
        var q = record[8..];
        q.Clear();
        if (scale == 0) return;
        float inverse = 1 / scale;
        for (int i = 0; i < v; i++)
        {
            ushort value = logits[i] > min ? (ushort)Math.Clamp(MathF.Round(inverse * (logits[i] - min), MidpointRounding.ToEven), 0f, 65535f) : (ushort)0;
            BinaryPrimitives.WriteUInt16LittleEndian(q[(2 * i)..], value);
        }
    }

    /// <summary>Writes a base file: the header and tokens at once, then one record per scored position; nothing appears
    /// under the final name until <see cref="Writer.Commit"/>.</summary>
    public sealed class Writer : IDisposable
    {
        readonly PendingFile _file;
        readonly byte[] _record;
        readonly int _vocab;
        readonly long _expected;
        long _written;

        public Writer(string path, int context, int vocab, int chunks, ReadOnlySpan<int> tokens)
        {
            if (tokens.Length != checked(context * chunks)) throw new ArgumentException($"{tokens.Length} tokens for {chunks} chunks of {context}");
            _vocab = vocab;
            _expected = (long)chunks * ScoredPerChunkFor(context);
            _record = new byte[RecordLengthFor(vocab) * 2];
            _file = AtomicFile.Begin(path);
            var header = new byte[HeaderBytes + 4 * tokens.Length];
            "_logits_"u8.CopyTo(header);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), context);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), vocab);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(16), chunks);
            for (int i = 0; i < tokens.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(HeaderBytes + 4 * i), tokens[i]);
            _file.Stream.Write(header);
        }

        public void Add(ReadOnlySpan<float> logits)
        {
            if (logits.Length != _vocab) throw new ArgumentException($"{logits.Length} logits for a vocabulary of {_vocab}");
            Encode(logits, _record);
            _file.Stream.Write(_record);
            _written++;
        }

        public void Commit()
        {
            if (_written != _expected) throw new InvalidOperationException($"{_file.Path}: {_written} of {_expected} records written");
            _file.Commit();
        }

        public void Dispose() => _file.Dispose();
    }
}

/// <param name="Count">scored positions</param>
/// <param name="LnPplCorrelation">correlation of the quantized and base per-token ln-probabilities' means</param>
public sealed record KlDivergenceResult(
    long Count, int Context, int Chunks,
    double Ppl, double PplUncertainty, double PplBase, double PplBaseUncertainty, double LnPplCorrelation,
    double LnPplRatio, double LnPplRatioUncertainty, double PplRatio, double PplRatioUncertainty, double PplDifference, double PplDifferenceUncertainty,
    double KldMean, double KldUncertainty, KlDivergenceResult.Distribution Kld,
    double DeltaPMean, double DeltaPUncertainty, KlDivergenceResult.Distribution DeltaP, double DeltaPRms, double DeltaPRmsUncertainty,
    double SameTop, double SameTopUncertainty)
{
    /// <summary>Order statistics, llama.cpp's way: percentile q interpolates linearly at q·(n−1) of the sorted values;
    /// the median is the middle value or the mean of the two middle ones.</summary>
    public sealed record Distribution(double Max, double P999, double P99, double P95, double P90, double P75, double Median,
        double P25, double P10, double P5, double P1, double P01, double Min)
    {
        public static Distribution Of(double[] values)
        {
            var s = (double[])values.Clone();
            Array.Sort(s);
            int n = s.Length;
            double P(double f)
            {
                if (f <= 0) return s[0];
                if (f >= 1) return s[^1];
                double p = f * (n - 1);
                int i = (int)p;
                p -= i;
                return (1 - p) * s[i] + p * s[Math.Min(i + 1, n - 1)];
            }
            double median = n % 2 == 0 ? 0.5 * (s[n / 2] + s[n / 2 - 1]) : s[n / 2];
            return new(s[^1], P(0.999), P(0.99), P(0.95), P(0.90), P(0.75), median, P(0.25), P(0.10), P(0.05), P(0.01), P(0.001), s[0]);
        }
    }
}

/// <summary>
/// The KL-divergence report, as llama-perplexity's --kl-divergence: a first run on the full-precision model records its
/// token distributions at the positions the llama.cpp protocol scores (<see cref="SaveBase"/>); a second run on a
/// compressed model scores the same tokens and compares (<see cref="Compare"/>). KL(base ‖ model) per position sums
/// p_base·(ln p_base − ln p_model) over the tokens the base file stores (within 16 nats of the top one).
/// </summary>
public static class KlDivergence
{
    /// <summary>Scores <paramref name="tokens"/> under the llama.cpp protocol (perplexity as usual) and writes the base
    /// file at <paramref name="path"/>.</summary>
    /// <param name="tokens">the text's tokens WITHOUT a leading BOS (see <see cref="Perplexity.Compute"/>)</param>
    public static PerplexityResult SaveBase(LlamaModel model, IReadOnlyList<int> tokens, int? bos, Func<int, int, long> spanBytes,
        int context, int? chunks, string path, Action<int, int>? progress = null)
    {
        var options = new PerplexityOptions(context, PerplexityProtocol.LlamaCpp, Chunks: chunks);
        var all = new List<int>(tokens.Count + 1);
        if (bos is int b) all.Add(b);
        all.AddRange(tokens);
        int n = all.Count / context;
        if (chunks is int most) n = Math.Min(n, most);
        if (n < 1 || (chunks == null && n < 2)) // Compute says why
            return Perplexity.Compute(model, tokens, bos, spanBytes, options, progress);
        using var writer = new KlBaseFile.Writer(path, context, model.Config.VocabSize, n, all.GetRange(0, n * context).ToArray());
        var result = Perplexity.Compute(model, tokens, bos, spanBytes, options, progress, (logits, _) => writer.Add(logits));
        writer.Commit();
        return result;
    }

    /// <summary>Checks that <paramref name="file"/> fits <paramref name="model"/>; the error names the file and what differs.</summary>
    public static void CheckFits(KlBaseFile file, LlamaModel model)
    {
        if (file.VocabSize != model.Config.VocabSize)
            throw new DataFormatException(file.Path, 0, $"recorded with a vocabulary of {file.VocabSize} tokens, but the model has {model.Config.VocabSize}: a base file compares models with the same vocabulary");
        if (file.Context > model.MaxContext)
            throw new DataFormatException(file.Path, 0, $"recorded with a context of {file.Context} tokens, more than the model's {model.MaxContext}");
    }

    /// <summary>Runs <paramref name="model"/> on the base file's tokens (chunks of its context, each chunk's first token
    /// replaced by <paramref name="bos"/> when the tokenizer adds one) and compares its distributions with the stored ones.</summary>
    public static KlDivergenceResult Compare(LlamaModel model, KlBaseFile file, int? bos, Func<int, int, long> spanBytes,
        Action<int, int>? progress = null)
    {
        CheckFits(file, model);
        // Perplexity.Compute places BOS itself: with a BOS the recorded first token (BOS, or whatever stood there) is
        // replaced by it anyway, so it is left out.
        var tokens = bos != null ? file.Tokens.AsSpan(1).ToArray() : file.Tokens;
        long total = file.ScoredPositions;
        var kld = new double[total];
        var pDiff = new double[total];
        double sumNll = 0, sumNll2 = 0, sumBase = 0, sumBase2 = 0, sumCross = 0, sumKld = 0, sumKld2 = 0, sumP = 0, sumP2 = 0, sumP4 = 0;
        long sameTop = 0, i = 0;
        using var records = file.Records();
        Perplexity.Compute(model, tokens, bos, spanBytes, new PerplexityOptions(file.Context, PerplexityProtocol.LlamaCpp, Chunks: file.Chunks), progress,
            (logits, target) =>
            {
                var (scale, minLogProb, q) = records.Next();
                var r = Position(logits, target, scale, minLogProb, q.Span);
                sumNll += r.Nll; sumNll2 += r.Nll * r.Nll;
                sumBase += r.NllBase; sumBase2 += r.NllBase * r.NllBase;
                sumCross += r.Nll * r.NllBase;
                sumKld += r.Kld; sumKld2 += r.Kld * r.Kld;
                double d2 = r.DeltaP * r.DeltaP;
                sumP += r.DeltaP; sumP2 += d2; sumP4 += d2 * d2;
                if (r.SameTop) sameTop++;
                kld[i] = r.Kld;
                pDiff[i] = r.DeltaP;
                i++;
            });
        if (i != total) throw new InvalidOperationException($"{file.Path}: scored {i} positions, the file holds {total}");

        long n = total;
        (double Mean, double Unc) MeanAndUncertainty(double sum, double sum2)
        {
            double f = sum / n, df = sum2 / n - f * f;
            return (f, df > 0 && n > 10 ? Math.Sqrt(df / (n - 1)) : 0);
        }
        double covariance = n < 10 ? 0 : (sumCross / n - sumNll / n * (sumBase / n)) / (n - 1);
        var lnPpl = MeanAndUncertainty(sumNll, sumNll2);
        var lnBase = MeanAndUncertainty(sumBase, sumBase2);
        double ppl = Math.Exp(lnPpl.Mean), pplUnc = ppl * lnPpl.Unc;
        double pplBase = Math.Exp(lnBase.Mean), pplBaseUnc = pplBase * lnBase.Unc;
        double correlation = covariance / (lnPpl.Unc * lnBase.Unc);
        double lnRatio = lnPpl.Mean - lnBase.Mean;
        double lnRatioUnc = Math.Sqrt(Math.Max(0, lnPpl.Unc * lnPpl.Unc + lnBase.Unc * lnBase.Unc - 2 * covariance));
        double ratio = Math.Exp(lnRatio);
        double pplCov = ppl * pplBase * covariance;
        double diffUnc = Math.Sqrt(Math.Max(0, pplUnc * pplUnc + pplBaseUnc * pplBaseUnc - 2 * pplCov));
        var k = MeanAndUncertainty(sumKld, sumKld2);
        var dp = MeanAndUncertainty(sumP, sumP2);
        var mse = MeanAndUncertainty(sumP2, sumP4);
        double rms = Math.Sqrt(mse.Mean);
        double top = (double)sameTop / n;
        return new KlDivergenceResult(n, file.Context, file.Chunks, ppl, pplUnc, pplBase, pplBaseUnc, correlation,
            lnRatio, lnRatioUnc, ratio, ratio * lnRatioUnc, ppl - pplBase, diffUnc,
            k.Mean, k.Unc, KlDivergenceResult.Distribution.Of(kld),
            dp.Mean, dp.Unc, KlDivergenceResult.Distribution.Of(pDiff), rms, rms > 0 ? 0.5 / rms * mse.Unc : 0,
            top, n > 1 ? Math.Sqrt(top * (1 - top) / (n - 1)) : 0);
    }

    /// <summary>One position: the model's NLL of the target, the base's (from the record), KL(base ‖ model) over the
    /// stored tokens, Δp = p_model(target) − p_base(target), and whether both put the same token on top (the first
    /// maximum in each).</summary>
    public static (double Nll, double NllBase, double Kld, double DeltaP, bool SameTop) Position(ReadOnlySpan<float> logits, int target,
        float scale, float minLogProb, ReadOnlySpan<byte> q)
    {
        int v = logits.Length;
        float max = logits[0];
        int top = 0;
        for (int j = 1; j < v; j++) if (logits[j] > max) { max = logits[j]; top = j; }
        double sum = 0;
        for (int j = 0; j < v; j++) sum += Math.Exp(logits[j] - max);
        double logNorm = max + Math.Log(sum); // ln p_model(j) = logits[j] − logNorm
        double nll = logNorm - logits[target];
        double nllBase = -((double)scale * Q(q, target) + minLogProb);
        double kl = 0;
        int topBase = 0;
        int qTop = -1;
        for (int j = 0; j < v; j++)
        {
            int qj = Q(q, j);
            if (qj > qTop) { qTop = qj; topBase = j; }
            double logBase = (double)scale * qj + minLogProb;
            if (logBase > -KlBaseFile.Floor) kl += Math.Exp(logBase) * (logBase - (logits[j] - logNorm));
        }
        return (nll, nllBase, kl, Math.Exp(-nll) - Math.Exp(-nllBase), top == topBase);

        static int Q(ReadOnlySpan<byte> q, int j) => BinaryPrimitives.ReadUInt16LittleEndian(q[(2 * j)..]);
    }
}
