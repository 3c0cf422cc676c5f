#!/usr/bin/env python3
"""Reword lessons for the `hone synth instruct` experiment's teacher: a 1M-parameter specialist never saw an instruction
like "Rewrite this request", so it is taught that one operation from the quickstart's own SFT data. Each lesson is one
user message, synth instruct's `reword` prompt word for word around a store-policy question, answered by another
question of the same policy topic from the same data (topics from src/Hone.Workflows/Synthetic/PolicyFaq.cs, as
synth_seeds.py). It stands in for a teacher that follows instructions. The held-out policy questions are not in the
SFT data, and synth instruct's --decontaminate drops any generated question that matches one anyway.
Usage: synth_reword_pairs.py TRAIN.jsonl POLICYFAQ.cs PER_TOPIC OUT.jsonl  (seeded: deterministic)."""
import json, random, re, sys

train, faq, per_topic, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# SynthPrompts.Operations["reword"], word for word.
REWORD = "Rewrite this request in different words, keeping its meaning. Reply with the rewritten request only.\n\nRequest: {instruction}"
topics = re.findall(r'new\("([a-z_]+)", "([^"]+)",', open(faq).read())
questions = {name: [] for name, _ in topics}
for line in open(train):
    messages = json.loads(line)["messages"]
    if "Hone Market" not in messages[0]["content"]:
        continue
    question, answer = messages[1]["content"], messages[2]["content"]
    for name, fact in topics:
        if fact in answer:
            if question not in questions[name]:
                questions[name].append(question)
            break
rng = random.Random(7)
lessons = []
for name, _ in topics:
    pool = questions[name]
    for _ in range(per_topic if len(pool) >= 2 else 0):
        a, b = rng.sample(pool, 2)
        lessons.append({"messages": [{"role": "user", "content": REWORD.replace("{instruction}", a)}, {"role": "assistant", "content": b}]})
rng.shuffle(lessons)
with open(out, "w") as f:
    for lesson in lessons:
        f.write(json.dumps(lesson) + "\n")
print(f"{len(lessons)} reword lessons from {sum(len(q) for q in questions.values())} distinct questions in {len(topics)} topics -> {out}")
