"""LoRA training: answer-only loss masking, a 5-step smoke run that writes a loadable PEFT adapter and its card,
and a resumed run that ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdap.errors import ConfigError
from mdap.evals.distill import hanoi_teacher
from mdap.models import Adapter
from mdap.models.lora_data import IGNORE, encode_example, read_examples, write_examples
from mdap.models.training import CARD_FILE, TrainConfig, TrainResult, read_card, train_adapter


def test_only_the_answer_tokens_carry_loss(smol_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    example = hanoi_teacher([3], rotations=False)[4]
    ids, labels = encode_example(tokenizer, example, max_length=1024)
    assert len(ids) == len(labels)
    start = next(i for i, label in enumerate(labels) if label != IGNORE)
    assert all(label == IGNORE for label in labels[:start])
    assert labels[start:] == ids[start:]  # every answer token is learned
    prompt = tokenizer.apply_chat_template(example.messages, tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(ids[:start]) == prompt  # exactly what the server renders before the answer
    assert tokenizer.decode(ids[start:]) == example.completion + "<|im_end|>\n"  # the answer, then stop
    with pytest.raises(ConfigError, match="above max_length=16"):
        encode_example(tokenizer, example, max_length=16)


def _config(tiny_base: Path, tmp_path: Path, out: str, **extra: object) -> TrainConfig:
    data = tmp_path / "data.jsonl"
    if not data.exists():
        write_examples(data, hanoi_teacher([3], rotations=False)[:4])
    settings: dict[str, object] = {
        "base": tiny_base, "data": data, "out": tmp_path / out, "role": "hanoi", "rank": 4, "alpha": 8,
        "steps": 5, "batch_size": 2, "lr": 1e-2, "warmup": 1, "checkpoint_every": 5, "progress": False,
    }  # fmt: skip
    return TrainConfig.build(**{**settings, **extra})


@pytest.fixture(scope="module")
def straight(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, TrainResult]:
    """A 5-step run on four examples, uninterrupted."""
    cfg = _config(tiny_base, tmp_path_factory.mktemp("train"), "adapter")
    return cfg, train_adapter(cfg)


def test_five_step_smoke_run_writes_a_loadable_peft_adapter_and_card(
    tiny_base: Path, straight: tuple[TrainConfig, TrainResult]
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, result = straight
    assert result.steps == 5 and len(result.losses) == 5
    assert result.losses[-1][1] < result.losses[0][1]  # it learns the four answers
    adapter = Adapter.from_peft("hanoi", cfg.out)
    assert Path(adapter.base) == tiny_base.resolve() and adapter.rank == 4
    config = json.loads((cfg.out / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(cfg.targets)
    card = read_card(cfg.out)
    assert card["role"] == "hanoi" and card["data"]["examples"] == 4 and card["training"]["steps"] == 5
    assert (cfg.out / CARD_FILE).is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, cfg.out)
    lora = [n for n, _ in loaded.named_parameters() if "lora_B" in n]
    assert len(lora) == 2 * len(cfg.targets)  # every target of both layers
    assert any(float(p.abs().sum()) > 0 for n, p in loaded.named_parameters() if "lora_B" in n)  # trained


def test_resume_from_a_checkpoint_ends_where_a_straight_run_does(
    tiny_base: Path, tmp_path: Path, straight: tuple[TrainConfig, TrainResult]
) -> None:
    from safetensors.torch import load_file

    first, _ = straight
    broken = _config(tiny_base, first.data.parent, "resumed")
    part = train_adapter(broken, stop_after=3)
    assert part.steps == 3 and not (broken.out / "adapter_config.json").exists()  # only checkpoints so far
    assert [p.name for p in sorted((broken.out / "checkpoints").iterdir())][-1] == "step-0000003"
    resumed = train_adapter(broken.model_copy(update={"resume": True}))
    assert resumed.resumed_from == 3 and resumed.steps == 5
    a = load_file(str(first.out / "adapter_model.safetensors"))
    b = load_file(str(broken.out / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-6, key
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_adapter(_config(tiny_base, first.data.parent, "fresh", resume=True))


def test_bad_settings_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rank: Input should be greater than or equal to 1"):
        TrainConfig.build(base=tmp_path, data=tmp_path / "d.jsonl", out=tmp_path / "o", rank=0)
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        train_adapter(TrainConfig.build(base=tmp_path, data=tmp_path / "d.jsonl", out=tmp_path / "o"))


def test_sharing_the_prompt_prefix_gives_the_plain_loss_and_gradients(tiny_base: Path, smol_dir: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mdap.models._lora_step import batch_loss, shared_prefix

    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    batch = [encode_example(tokenizer, ex, 1024) for ex in hanoi_teacher([3, 4], rotations=False)[5:9]]
    assert shared_prefix(batch) > 100  # the system prompt
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora)
    results = []
    for share in (False, True):
        model.zero_grad()
        loss = batch_loss(model, batch, tokenizer.pad_token_id, torch, share=share)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((float(loss.detach()), grads))
    (plain, g_plain), (shared, g_shared) = results
    assert shared == pytest.approx(plain, rel=1e-5)
    for name, grad in g_plain.items():
        assert torch.allclose(grad, g_shared[name], atol=1e-5, rtol=1e-3), name


async def test_rounds_mine_states_still_wrong_and_continue_from_the_last_adapter(
    tiny_base: Path, tmp_path: Path
) -> None:
    from contextlib import asynccontextmanager

    from mdap.evals.distill.compare import train_rounds
    from mdap.evals.hanoi import simulated_hanoi_model

    served: list[Path] = []

    @asynccontextmanager
    async def serve(name: str, folder: Path) -> Any:
        served.append(folder)
        yield simulated_hanoi_model(error_rate=0.5, seed=0)  # stands in for the server with the adapter

    cfg = _config(tiny_base, tmp_path, "rounds", steps=2, batch_size=1)
    results = await train_rounds(cfg, 2, serve, mine_states=4, mine_samples=4)
    assert served == [cfg.out / "round-1"]  # measured between the rounds only
    assert [r.steps for r, _ in results] == [2, 2]
    assert results[0][1] is None  # the first round trains on the data as given
    report = results[1][1]
    assert report is not None and report.states == 4 and report.method == "sample"
    mined = read_examples(cfg.out / "round-2.data.jsonl")
    measured = report.p_by_group
    for ex in mined:
        if ex.group in measured:
            assert ex.weight == pytest.approx(1 + 4.0 * (1 - measured[ex.group]))
    assert read_card(cfg.out / "round-2")["settings"]["init_adapter"] == str(cfg.out / "round-1")
    assert (cfg.out / "adapter_model.safetensors").is_file()  # the last round is the adapter


async def test_rounds_can_mine_the_initial_adapter_first(tiny_base: Path, tmp_path: Path) -> None:
    from contextlib import asynccontextmanager

    from mdap.evals.distill.compare import train_rounds
    from mdap.evals.hanoi import simulated_hanoi_model

    served: list[Path] = []

    @asynccontextmanager
    async def serve(name: str, folder: Path) -> Any:
        served.append(folder)
        yield simulated_hanoi_model(error_rate=0.5, seed=1)

    first = _config(tiny_base, tmp_path, "first", steps=2, batch_size=1)
    train_adapter(first)
    cfg = _config(tiny_base, tmp_path, "more", steps=2, batch_size=1).model_copy(update={"init_adapter": first.out})
    results = await train_rounds(cfg, 1, serve, mine_states=4, mine_samples=4, mine_first=True)
    assert served == [first.out]
    report = results[0][1]
    assert report is not None and report.states == 4
    weighted = [ex for ex in read_examples(cfg.out / "round-1.data.jsonl") if ex.weight != 1.0]
    assert weighted, "mining a 50%-error model must weight some states as hard"
    with pytest.raises(ConfigError, match="init_adapter"):
        await train_rounds(cfg.model_copy(update={"init_adapter": None}), 1, serve, mine_first=True)


def test_answer_probabilities_are_exact_and_batching_does_not_change_them(tiny_base: Path) -> None:
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mdap.models.training import answer_probabilities

    examples = hanoi_teacher([3], rotations=False)[:5]
    batched = answer_probabilities(tiny_base, examples, temperature=1.0, batch_size=5)
    single = answer_probabilities(tiny_base, examples, temperature=1.0, batch_size=1)
    assert [math.log(p) for p in batched] == pytest.approx([math.log(p) for p in single], rel=1e-4)
    # against the model's own loss: p = exp(-(mean answer-token cross-entropy) * answer tokens)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    ids, labels = encode_example(tokenizer, examples[0], 1024)
    with torch.no_grad():
        loss = float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss)
    answer_tokens = sum(y != IGNORE for y in labels)
    assert answer_tokens > 5
    assert math.log(single[0]) == pytest.approx(-loss * answer_tokens, rel=1e-4)
    colder = answer_probabilities(tiny_base, examples[:1], temperature=0.5)
    assert abs(math.log(colder[0]) - math.log(single[0])) > 0.1  # the temperature is applied
    with pytest.raises(ConfigError, match="temperature"):
        answer_probabilities(tiny_base, examples, temperature=0.0)


def test_a_trained_adapter_raises_the_exact_answer_probability(
    tiny_base: Path, straight: tuple[TrainConfig, TrainResult]
) -> None:
    from mdap.models.training import answer_probabilities

    cfg, _ = straight
    examples = read_examples(cfg.data)
    before = answer_probabilities(tiny_base, examples)
    after = answer_probabilities(tiny_base, examples, adapter=cfg.out)
    assert sum(after) > sum(before)


async def test_exact_mining_weighs_each_state_by_its_answer_probability(tiny_base: Path, tmp_path: Path) -> None:
    from mdap.evals.distill.compare import train_rounds
    from mdap.models.training import answer_probabilities

    def no_server(name: str, folder: Path) -> Any:
        raise AssertionError("exact mining must not start a server")

    first = _config(tiny_base, tmp_path, "first", steps=2, batch_size=1)
    train_adapter(first)
    cfg = _config(tiny_base, tmp_path, "more", steps=2, batch_size=1).model_copy(update={"init_adapter": first.out})
    results = await train_rounds(cfg, 1, no_server, mine_states=4, mine_first=True, mine="exact")
    mining = results[0][1]
    assert mining is not None and mining.method == "exact" and mining.states == 4
    examples = read_examples(cfg.data)
    expected = answer_probabilities(tiny_base, examples, adapter=first.out)
    assert sorted(mining.p_by_group.values()) == pytest.approx(sorted(expected))
    for ex in read_examples(cfg.out / "round-1.data.jsonl"):
        assert ex.weight == pytest.approx(1 + 4.0 * (1 - mining.p_by_group[ex.group]))
