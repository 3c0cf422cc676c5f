#!/usr/bin/env python3
"""Seeds for the `hone synth instruct` experiment: N store-policy conversations from the quickstart's SFT data, each
with its policy fact (from src/Hone.Workflows/Synthetic/PolicyFaq.cs) as the facts verifier's target.
Usage: synth_seeds.py TRAIN.jsonl POLICYFAQ.cs N OUT.jsonl  (round-robin over the 12 topics, distinct questions,
first occurrences in file order: deterministic)."""
import json, re, sys

train, faq, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
topics = re.findall(r'new\("([a-z_]+)", "([^"]+)",', open(faq).read())
per_topic = {name: [] for name, _ in topics}
seen = set()
for line in open(train):
    record = json.loads(line)
    messages = record["messages"]
    if "Hone Market" not in messages[0]["content"]:
        continue
    question, answer = messages[1]["content"], messages[2]["content"]
    if question in seen:
        continue
    for name, fact in topics:
        if fact in answer:
            seen.add(question)
            per_topic[name].append({"messages": messages, "facts": {"contains": [fact]}, "topic": name})
            break
seeds = []
while len(seeds) < n and any(per_topic.values()):
    for name, _ in topics:
        if per_topic[name] and len(seeds) < n:
            seeds.append(per_topic[name].pop(0))
with open(out, "w") as f:
    for i, s in enumerate(seeds):
        f.write(json.dumps({"id": f"seed-{i:03d}", **s}) + "\n")
print(f"{len(seeds)} seeds -> {out}")
