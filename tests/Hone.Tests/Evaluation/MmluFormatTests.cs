using Hone.Evaluation;
using Hone.Inference;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>
/// MMLU as lm-evaluation-harness builds it, with the expected strings written out by hand from lm-eval's mmlu
/// template: description "The following are multiple choice questions (with answers) about {subject}.\n\n",
/// doc_to_text "{{question.strip()}}\nA. {{choices[0]}}\nB. ...\nAnswer:", choices "A".."D", target delimiter " ",
/// few-shot delimiter "\n\n"; and the continuation tokenization (joint encoding, suffix after the context).
/// </summary>
public class MmluFormatTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.gguf";

    static MultipleChoiceTaskDefinition Definition(string subject) => new(
        SharedData.Require($"datasets/mmlu/test/{subject}_test.csv"), "mmlu", subject.Replace('_', ' '),
        FewshotData: SharedData.Require($"datasets/mmlu/dev/{subject}_dev.csv"), FewshotSampler: "first_n");

    [SkippableFact]
    public void Csv_reader_handles_quotes_commas_and_line_breaks_like_python_csv()
    {
        // Row counts from Python's csv module; every row has question, four choices and the answer.
        foreach (var (file, rows) in new[] { ("test/clinical_knowledge_test.csv", 265), ("test/college_medicine_test.csv", 173),
                     ("test/professional_accounting_test.csv", 282), ("dev/clinical_knowledge_dev.csv", 5), ("val/college_medicine_val.csv", 22) })
        {
            var questions = EvalData.ReadMmluCsv(SharedData.Require("datasets/mmlu/" + file));
            Assert.Equal(rows, questions.Count);
            Assert.All(questions, q => Assert.Equal(4, q.Choices.Count));
        }
        var medicine = EvalData.ReadMmluCsv(SharedData.Require("datasets/mmlu/test/college_medicine_test.csv"));
        Assert.Equal("Which of the following statements identifies a chemically based sensory system?\nI. Gustatory system\nII. Auditory system\nIII. Olfactory system",
            medicine[2].Question);
        Assert.Equal(["I only", "II only", "III only", "I and III only"], medicine[2].Choices);
        Assert.Equal(3, medicine[2].Answer);
    }

    [Fact]
    public void Csv_reader_edge_cases()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("q.csv"), "\"Say \"\"hi\"\", then, go\",a,\"b,c\",,d,b\r\nplain,1,2,3,4,D\n\n");
        var q = EvalData.ReadMmluCsv(dir.File("q.csv"));
        Assert.Equal(2, q.Count);
        Assert.Equal("Say \"hi\", then, go", q[0].Question);
        Assert.Equal(["a", "b,c", "", "d"], q[0].Choices);
        Assert.Equal(1, q[0].Answer);
        Assert.Equal(3, q[1].Answer);
        File.WriteAllText(dir.File("bad.csv"), "q,a,b,c,d,E\n");
        Assert.Contains("not one of the letters A..D", Assert.Throws<FormatException>(() => EvalData.ReadMmluCsv(dir.File("bad.csv"))).Message);
    }

    [Fact]
    public void Jsonl_questions_take_the_answer_as_an_index_or_a_letter()
    {
        using var dir = new TempDirectory();
        File.WriteAllLines(dir.File("q.jsonl"), [
            """{"question": "2+2?", "choices": ["3", "4"], "answer": 1}""",
            """{"question": "Sky?", "choices": ["blue", "green", "red"], "answer": "a"}""",
            "",
            """{"question": "Sea?", "choices": ["wet", "dry"], "answer": "B"}""",
        ]);
        var q = EvalData.ReadChoiceRecords(dir.File("q.jsonl"));
        Assert.Equal([1, 0, 1], q.Select(x => x.Answer));
        Assert.Equal(["blue", "green", "red"], q[1].Choices);
        File.WriteAllText(dir.File("bad.jsonl"), """{"question": "x", "choices": ["a", "b"], "answer": 2}""");
        Assert.Contains("record 1: answer index 2 is outside 0..1", Assert.Throws<FormatException>(() => EvalData.ReadChoiceRecords(dir.File("bad.jsonl"))).Message);
        File.WriteAllText(dir.File("bad2.jsonl"), """{"question": "x", "choices": "ab", "answer": 0}""");
        Assert.Contains("\"choices\" must be an array", Assert.Throws<FormatException>(() => EvalData.ReadChoiceRecords(dir.File("bad2.jsonl"))).Message);
    }

    [SkippableFact]
    public void Zero_shot_prompt_matches_lm_eval()
    {
        var d = Definition("clinical_knowledge");
        var q = EvalData.ReadMmluCsv(d.Data)[0];
        var (context, continuations) = MultipleChoiceTask.Request(d, MultipleChoiceTask.Prefix(d, []), q);
        Assert.Equal(
            "The following are multiple choice questions (with answers) about clinical knowledge.\n\n" +
            "What size of cannula would you use in a patient who needed a rapid blood transfusion?\n" +
            "A. 18 gauge.\nB. 20 gauge.\nC. 22 gauge.\nD. 24 gauge.\nAnswer:", context);
        Assert.Equal([" A", " B", " C", " D"], continuations);
        Assert.Equal(0, q.Answer);
    }

    [SkippableFact]
    public void Question_text_is_stripped_as_lm_eval_does()
    {
        var d = Definition("college_medicine");
        var q = EvalData.ReadMmluCsv(d.Data)[0];
        Assert.EndsWith("in his behavior? ", q.Question); // the CSV has a trailing space
        var (context, _) = MultipleChoiceTask.Request(d, MultipleChoiceTask.Prefix(d, []), q);
        Assert.EndsWith("the unconscious bias in his behavior?\nA. Behaviorist\nB. Psychoanalytic\nC. Cognitive behavioral\nD. Humanistic\nAnswer:", context);
        Assert.StartsWith("The following are multiple choice questions (with answers) about college medicine.\n\nA police officer", context);
    }

    [SkippableFact]
    public void Two_shot_first_n_prompt_matches_lm_eval()
    {
        var d = Definition("clinical_knowledge");
        var dev = EvalData.ReadMmluCsv(d.FewshotData!);
        var picked = MultipleChoiceTask.FewshotSamplers["first_n"](dev, 2, 1234);
        var prefix = MultipleChoiceTask.Prefix(d, picked.Select(i => dev[i]).ToList());
        var q = EvalData.ReadMmluCsv(d.Data)[1];
        var (context, _) = MultipleChoiceTask.Request(d, prefix, q);
        Assert.Equal(
            "The following are multiple choice questions (with answers) about clinical knowledge.\n\n" +
            "The energy for all forms of muscle contraction is provided by:\nA. ATP.\nB. ADP.\nC. phosphocreatine.\nD. oxidative phosphorylation.\nAnswer: A\n\n" +
            "What is the difference between a male and a female catheter?\nA. Male and female catheters are different colours.\n" +
            "B. Male catheters are longer than female catheters.\nC. Male catheters are bigger than female catheters.\n" +
            "D. Female catheters are longer than male catheters.\nAnswer: B\n\n" +
            "The key attribute in successful marathon running is:\nA. strength.\nB. power.\nC. stride length.\nD. stamina.\nAnswer:", context);
    }

    [Fact]
    public void Random_fewshot_draws_are_seeded_and_distinct()
    {
        var pool = Enumerable.Range(0, 10).Select(i => new ChoiceQuestion($"q{i}", ["a", "b"], 0)).ToList();
        var draw = MultipleChoiceTask.FewshotSamplers["random"];
        Assert.Equal(draw(pool, 5, 7), draw(pool, 5, 7));
        Assert.NotEqual(draw(pool, 5, 7), draw(pool, 5, 8));
        Assert.Equal(5, draw(pool, 5, 7).Distinct().Count());
        Assert.Equal(Enumerable.Range(0, 10), draw(pool, 10, 3).Order());
    }

    static Tokenizer StoriesTokenizer()
    {
        using var loaded = LoadedModel.Open(SharedData.Require(Model), context: 64);
        return loaded.Tokenizer;
    }

    [SkippableFact]
    public void Continuations_are_the_suffix_of_the_joint_encoding()
    {
        var tok = StoriesTokenizer();
        const string context = "The key attribute in successful marathon running is:\nA. strength.\nB. power.\nC. stride length.\nD. stamina.\nAnswer:";
        foreach (var letter in new[] { "A", "B", "C", "D" })
        {
            var pair = LmEvalEncoding.Encode(tok, context, " " + letter, tok.BosId);
            var joint = tok.Encode(context + " " + letter, addSpecialTokens: false, parseSpecialTokens: false);
            Assert.Equal([tok.BosId!.Value, .. tok.Encode(context, addSpecialTokens: false, parseSpecialTokens: false)], pair.Context);
            Assert.Equal(joint[(pair.Context.Length - 1)..], pair.Continuation);
            // The space belongs to the answer: the continuation starts with the word-start marker and spells the letter.
            var pieces = pair.Continuation.Select(tok.TokenText).ToArray();
            Assert.Equal("▁" + letter, string.Concat(pieces));
            Assert.StartsWith("▁", pieces[0]);
        }
        // Encoding " B" on its own would add SentencePiece's dummy prefix: not what follows "Answer:".
        var alone = tok.Encode(" B", addSpecialTokens: false, parseSpecialTokens: false).Select(tok.TokenText);
        Assert.NotEqual("▁B", string.Concat(alone));
    }

    [SkippableFact]
    public void Trailing_context_whitespace_moves_to_the_continuation_and_an_empty_context_is_bos()
    {
        var tok = StoriesTokenizer();
        var moved = LmEvalEncoding.Encode(tok, "Answer: ", "B", bos: null);
        var plain = LmEvalEncoding.Encode(tok, "Answer:", " B", bos: null);
        Assert.Equal(plain.Context, moved.Context);
        Assert.Equal(plain.Continuation, moved.Continuation);
        var empty = LmEvalEncoding.Encode(tok, "", "Once upon a time", bos: null);
        Assert.Equal([tok.BosId!.Value], empty.Context);
        Assert.Equal(tok.Encode("Once upon a time", addSpecialTokens: false, parseSpecialTokens: false), empty.Continuation);
    }
}
