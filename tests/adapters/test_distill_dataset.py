"""Training data: from a real run's trace (prompts rebuilt by replay), from the teacher, dedup, held-out split,
and hard-example weighting."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mdap.errors import ConfigError
from mdap.evals.distill import (
    dedup,
    hanoi_teacher,
    hanoi_trace_examples,
    hard_weight,
    parse_disks,
    reweight,
    split_heldout,
)
from mdap.evals.hanoi import HanoiConfig, HanoiStep, hanoi_oracle, run_hanoi
from mdap.evals.hanoi.verify import verify_step
from mdap.models.lora_data import draw_batch, read_examples, write_examples


async def test_dataset_from_a_trace_rebuilds_the_exact_prompts_and_weighs_hard_steps(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    cfg = HanoiConfig.build(disks=4, error_rate=0.3, k=2, seed=3, trace=trace, run_dir=tmp_path / "run")
    report = await run_hanoi(cfg)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == 15 and report.verifier_errors is not None

    examples = hanoi_trace_examples(trace, 4, factor=4.0)
    assert len(examples) == 15 - report.verifier_errors  # the verifier's rejects are left out
    ms = HanoiStep(4)
    state = ms.initial()
    by_step = {ex.meta["step"]: ex for ex in examples}
    for record in records:
        answer = ms.load_answer(record["answer"])
        ex = by_step.get(record["step"])
        if verify_step(record["step"], state, answer) is None:
            assert ex is not None
            assert ex.messages == ms.render(state)  # the prompt the microagent saw
            assert ms.parse(ex.completion) == answer  # the decided answer in the strict output format
            assert ex.completion == hanoi_oracle(ex.messages)
            share = (record["samples"] - record["votes"][0]) / record["samples"]
            assert ex.weight == pytest.approx(1 + 4.0 * share)
        else:
            assert ex is None
        state = ms.apply(state, answer)
    assert any(ex.weight > 1 for ex in examples)  # some votes disagreed at a 30% error rate
    assert any(ex.weight == 1 for ex in examples)


def test_trace_replay_needs_every_step_in_order(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"step": 1, "answer": {}, "samples": 1, "votes": [1]}) + "\n")
    with pytest.raises(ConfigError, match="step 1 follows step -1"):
        hanoi_trace_examples(trace, 3)
    trace.write_text("not json\n")
    with pytest.raises(ConfigError, match=r"t\.jsonl:1 is not a trace record"):
        hanoi_trace_examples(trace, 3)


def test_hard_weight_grows_with_the_share_of_samples_that_missed() -> None:
    assert hard_weight(3, [3], 4.0) == 1.0  # unanimous first round
    assert hard_weight(8, [4, 2, 1], 4.0) == pytest.approx(1 + 4 * 4 / 8)  # 3 wrong + 1 red-flagged
    assert hard_weight(0, [], 4.0) == 1.0


def test_batches_draw_examples_in_proportion_to_weight_and_repeat_by_seed() -> None:
    weights = [1.0, 1.0, 6.0]
    counts = Counter(i for step in range(500) for i in draw_batch(weights, 8, seed=1, step=step))
    assert counts[2] / sum(counts.values()) == pytest.approx(0.75, abs=0.03)
    assert draw_batch(weights, 8, 1, 7) == draw_batch(weights, 8, 1, 7)
    assert draw_batch(weights, 8, 1, 7) != draw_batch(weights, 8, 2, 7)


def test_teacher_dedup_split_and_mining(tmp_path: Path) -> None:
    examples = hanoi_teacher(parse_disks("3..4"))
    assert len(examples) == 3 * (7 + 15)  # every state, in three peg labellings
    assert all(ex.completion == hanoi_oracle(ex.messages) for ex in examples)
    doubled = dedup([*examples, examples[0].model_copy(update={"id": "again", "weight": 3.0})])
    assert len(doubled) == len(examples) and doubled[0].weight == 3.0  # the heaviest copy stays
    with pytest.raises(ConfigError, match="same prompt but different answers"):
        dedup([examples[0], examples[0].model_copy(update={"id": "x", "completion": "nope"})])

    train, held = split_heldout(examples, 5, seed=0)
    assert len(held) == 5 and all(ex.meta["rotation"] == 0 for ex in held)
    held_groups = {ex.group for ex in held}
    assert not held_groups & {ex.group for ex in train}  # no relabelling of a held-out state is trained on
    assert len(train) == len(examples) - 15
    with pytest.raises(ConfigError, match="cannot hold out 22 of 22 groups"):
        split_heldout(examples, 22)

    mined = reweight(train, {train[0].group: 0.25}, factor=4.0)
    assert [ex.weight for ex in mined if ex.group == train[0].group] == [4.0, 4.0, 4.0]
    assert all(ex.weight == 1.0 for ex in mined if ex.group != train[0].group)

    write_examples(tmp_path / "d.jsonl", mined)
    assert read_examples(tmp_path / "d.jsonl") == mined
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1 is not a training example \(messages: Field required\)"):
        read_examples(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("text", ["3..", "a", "0..3", "25"])
def test_bad_disk_ranges_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="disks must"):
        parse_disks(text)
