"""LLaVA-MoD: the losses against hand-computed values, upcycling that keeps the dense function, the trainable parts of
every stage, the LLaVA readers' one-line errors, and both tasks end to end for a step of every stage (fast_dev_run,
tiny models, a few scenes of sklearn digits)."""

import copy
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from zoo.config import compose
from zoo.data.llava_format import IGNORE
from zoo.errors import ConfigError, DataError
from zoo.methods.mimic_kd import mimic_kd_loss
from zoo.methods.preference_distill import preference_loss

# a few scenes of sklearn digits: generated in about a second, no Fashion-MNIST needed
TINY_SET = ["data.objects=digits", "data.num_train=24", "data.num_val=2", "data.num_test=2", "data.train_subset=null",
            "data.batch_size=4", "data.eval_batch_size=8"]
SMOKE = ["trainer.fast_dev_run=true", "trainer.enable_progress_bar=false", "teacher.roles.teacher.recipe.smoke=true",
         "student.pretrained=false", "teacher.roles.teacher.recipe.pretrained=false"]  # the towers' seeded init


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory):
    """A generated scene_vqa folder (its data module): the fixture files in LLaVA's real formats."""
    from zoo.data.scene_vqa import SceneVqaDataModule

    cfg = compose("llava_mod_scene_vqa", TINY_SET + [f"data.root={tmp_path_factory.mktemp('scene_vqa')}"])
    return SceneVqaDataModule(cfg.data)


def tiny_vlm(name: str, datamodule):
    from zoo.archs import create

    torch.manual_seed(0)
    return create(name, None, (), tokenizer=datamodule.vocabulary)


# -- losses ------------------------------------------------------------------------------------------------------
def three_tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher and student logits over 3 words at 5 positions, and labels whose response is the last 3 tokens (so
    positions 1, 2 and 3 predict them; position 0 predicts a prompt token and position 4 nothing)."""
    teacher = torch.tensor([[[9.0, 0.0, 0.0], [0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, math.log(3)],
                             [0.0, 9.0, 0.0]]])
    student = torch.zeros(1, 5, 3)
    student[0, 0], student[0, 4] = torch.tensor([0.0, 0.0, 9.0]), torch.tensor([9.0, 0.0, 0.0])  # never scored
    labels = torch.tensor([[IGNORE, IGNORE, 0, 1, 2]])
    return teacher, student, labels


def test_mimic_kd_loss_matches_a_hand_computed_three_token_example_and_is_zero_for_equal_models():
    teacher, student, labels = three_tokens()
    # p_T at positions 1..3: (1/3, 1/3, 1/3), (1/2, 1/4, 1/4), (1/5, 1/5, 3/5); p_S uniform: KL = Σ p log(3p)
    kl = [0.0, 0.5 * math.log(1.5) + 0.5 * math.log(0.75), 0.4 * math.log(0.6) + 0.6 * math.log(1.8)]
    entropy = [math.log(3), 1.5 * math.log(2), 0.4 * math.log(5) + 0.6 * math.log(5 / 3)]
    assert mimic_kd_loss(student, labels, teacher, labels).item() == pytest.approx(sum(kl) / 3, abs=1e-6)
    released = mimic_kd_loss(student, labels, teacher, labels, form="cross_entropy").item()
    assert released == pytest.approx((sum(kl) + sum(entropy)) / 3, abs=1e-6)  # KL + the teacher's entropy
    assert mimic_kd_loss(teacher, labels, teacher.clone(), labels).item() == pytest.approx(0.0, abs=1e-7)
    assert mimic_kd_loss(student, labels, teacher, labels, shared_vocab=2).item() > 0  # the first 2 logits only


def test_a_student_equal_to_its_teacher_has_kd_loss_zero_through_the_method(scene_set):
    from zoo.methods.base import MethodContext
    from zoo.methods.mimic_kd import MimicKD

    teacher = tiny_vlm("llava-tiny-h64", scene_set)
    student = copy.deepcopy(teacher)
    method = compose("llava_mod_scene_vqa").method
    module = MimicKD(student, [teacher], MethodContext.of(scene_set, method, OmegaConf.create({})))
    batch = scene_set.splits["train"].__getitems__([0, 1, 2])
    assert module.losses(batch)["kd"].item() == pytest.approx(0.0, abs=1e-6)


def test_dpo_and_kto_pair_losses_match_hand_computed_values():
    # ℓ_S(w) = -2, ℓ_S(l) = -3, ℓ_T(w) = -1.5, ℓ_T(l) = -4: Δ_w = -0.5, Δ_l = 1
    delta_w, delta_l = torch.tensor([-0.5]), torch.tensor([1.0])
    dpo = preference_loss(delta_w, delta_l, 0.1, "sigmoid").item()
    assert dpo == pytest.approx(math.log(1 + math.exp(0.15)), abs=1e-6) and dpo != pytest.approx(math.log(2))
    # kto_pair: KL_w = max(0, -0.5) = 0, KL_l = max(0, 1) = 1
    kto = preference_loss(delta_w, delta_l, 0.1, "kto_pair").item()
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert kto == pytest.approx(((1 - sigmoid(0.1 * (-0.5 - 1))) + (1 - sigmoid(0.1 * (0 - 1)))) / 2, abs=1e-6)


def test_preference_distillation_starts_at_log_2_only_when_the_reference_is_the_student_itself(scene_set):
    from zoo.methods.base import MethodContext
    from zoo.methods.preference_distill import PreferenceDistill
    from zoo.registry import DATASETS

    cfg = compose("llava_mod_scene_vqa", TINY_SET + [f"data.root={scene_set.root.parent}"])
    pairs = DATASETS.get("scene_vqa_preference")(cfg.datasets.preference).splits["train"].__getitems__([0, 1, 2, 3])
    method = compose("llava_mod_scene_vqa", ["method=preference_distill"]).method
    student, teacher = tiny_vlm("llava-tiny-h64", scene_set), tiny_vlm("llava-tiny-h64", scene_set)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    context = MethodContext.of(scene_set, method, OmegaConf.create({}))

    def loss(reference):
        return PreferenceDistill(student, [reference], context).losses(pairs)["pd"].item()

    assert loss(copy.deepcopy(student)) == pytest.approx(math.log(2), abs=1e-6)
    assert abs(loss(teacher) - math.log(2)) > 1e-4


# -- mixture of experts ----------------------------------------------------------------------------------------
def test_upcycled_experts_give_the_dense_output_when_all_experts_are_equal(scene_set):
    from zoo.archs.moe import moe_layers, upcycle

    dense = tiny_vlm("llava-tiny-h128", scene_set).eval()
    inputs = scene_set.splits["train"].__getitems__(list(range(6)))["inputs"]
    with torch.no_grad():
        expected = dense(inputs).logits
        moe = upcycle(copy.deepcopy(dense), num_experts=4, top_k=2)  # eval capacity 2.0: no token is dropped
        assert [i for i, layer in enumerate(moe.decoder_layers()) if layer.mlp in moe_layers(moe)] == [0, 2]
        routed = moe(inputs).logits
        moe.train()  # training routing: Gumbel noise on the second choice
        for layer in moe_layers(moe):
            layer.capacity_factor = 4.0
        noisy = moe(inputs).logits
    assert torch.allclose(routed, expected, atol=1e-5) and torch.allclose(noisy, expected, atol=1e-5)
    assert moe.active_parameters() < sum(p.numel() for p in moe.parameters())


def test_a_token_that_keeps_one_of_its_two_experts_keeps_the_dense_output_and_one_that_keeps_none_gets_zero():
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

    from zoo.archs.moe import SparseMoE

    torch.manual_seed(0)
    dense = Qwen2MLP(Qwen2Config(hidden_size=8, intermediate_size=16))
    layer = SparseMoE(dense, 8, 4, 2, 0.5, 0.5, 1, False).eval()  # capacity ceil(2 · 40 / 4 · 0.5) = 10 of 40
    with torch.no_grad():
        layer.wg.weight[0] += 1.0  # with x > 0, expert 0 is nearly everyone's first choice: most overflow
        x = torch.randn(40, 8).abs()
        index, weights, _ = layer.route(x)
        out, expected = layer(x), dense(x)
    kept = (weights > 0).sum(dim=1)
    assert (kept == 1).any() and (kept == 0).any() and (kept == 2).any()
    assert torch.allclose(out[kept > 0], expected[kept > 0], atol=1e-6)
    assert torch.equal(out[kept == 0], torch.zeros_like(out[kept == 0]))


def test_the_load_balancing_loss_is_num_experts_times_sum_of_mean_gate_times_first_choice_share():
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

    from zoo.archs.moe import SparseMoE

    layer = SparseMoE(Qwen2MLP(Qwen2Config(hidden_size=8, intermediate_size=16)), 8, 4, 2, 1.5, 2.0, 4, False)
    x = torch.randn(10, 8)
    _, _, aux = layer.eval().route(x)
    gates = torch.softmax(layer.wg(x), -1)
    first = torch.nn.functional.one_hot(gates.argmax(-1), 4).float()
    assert aux.item() == pytest.approx(4 * (gates.mean(0) * first.mean(0)).sum().item(), abs=1e-6)


# -- the stages, end to end ------------------------------------------------------------------------------------
def test_every_stage_of_the_mini_task_runs_and_trains_the_parts_the_spec_lists(tmp_path):
    from zoo.evaluation import evaluate_run
    from zoo.train import train

    cfg = compose("llava_mod_scene_vqa", TINY_SET + SMOKE + [f"data.root={tmp_path / 'data'}",
                                                            f"run.root={tmp_path / 'runs'}"])
    result = train(cfg)
    stages = {stage["name"]: stage for stage in result.record.stages}
    assert list(stages) == ["adaptor", "dense", "upcycle", "sparse", "preference"]
    # the student: tower (frozen) + projector + decoder; hand-counted from llava-tiny-h64's sizes
    hidden, ffn, vocab = 64, 256, len(json.loads((result.run_dir.parent.parent.parent / "data").glob(
        "*/tokenizer/tokenizer.json").__next__().read_text())["model"]["vocab"])
    projector = 15 * hidden + hidden + hidden * hidden + hidden  # the tower hands on 15 numbers a cell
    attention = hidden * hidden * 2 + hidden * 32 * 2 + hidden + 32 * 2  # q, o (64 x 64), k, v (2 heads of 16)
    layer = attention + 3 * hidden * ffn + 2 * hidden  # + the two RMSNorms
    decoder = vocab * hidden + 2 * layer + hidden  # tied head, final norm
    assert stages["adaptor"]["trainable_params"] == projector + decoder  # the mini task trains its random decoder
    assert stages["dense"]["trainable_params"] == projector + decoder
    experts_and_routers = 4 * 3 * hidden * ffn + 4 * hidden  # layer 0 upcycled (layers 0, 2, ... of 2)
    assert stages["sparse"]["trainable_params"] == experts_and_routers + 3 * hidden * ffn  # + layer 1's dense FFN
    assert stages["preference"]["trainable_params"] == stages["sparse"]["trainable_params"]
    assert stages["preference"]["method"]["loss_type"] == "sigmoid" and stages["upcycle"]["steps"] == 0
    assert all(stage["steps"] == 1 for name, stage in stages.items() if name != "upcycle")
    metrics = result.record.metrics
    assert metrics["test/params_active"] == metrics["test/params_total"] - 2 * 3 * hidden * ffn  # 2 of 4 experts idle
    assert {"test/acc", "test/pope_f1", "test/hallucination", "test/gen_tokens_per_s"} <= set(metrics)
    assert evaluate_run(result.run_dir)["test/acc"] == metrics["test/acc"]  # the upcycled student rebuilds
    # killed after the upcycle stage: a rerun keeps stages 1-3 (the upcycled structure rebuilt) and trains 4 and 5
    (result.run_dir / "record.json").unlink()
    for stage in ("4-sparse", "5-preference"):
        (result.run_dir / "stages" / stage / "done.json").unlink()
    resumed = train(compose("llava_mod_scene_vqa", TINY_SET + SMOKE + [
        f"data.root={tmp_path / 'data'}", f"run.root={tmp_path / 'runs'}", f"run.id={result.run_dir.name}"]))
    assert resumed.record.stages[:3] == result.record.stages[:3]  # kept, not redone
    trainable = [stage.get("trainable_params") for stage in resumed.record.stages]
    assert trainable == [stage.get("trainable_params") for stage in stages.values()]


def test_the_paper_task_runs_a_step_of_every_stage_on_files_in_the_real_formats(scene_set, tmp_path):
    from zoo.train import train

    folder, files = scene_set.root, ["data.train=train.json", "data.val=val.json", "data.test=test.json"]
    blocks = ["data", "datasets.pretrain", "datasets.general", "datasets.preference"]
    cfg = compose("llava_mod_qwen2", [
        *(f"{block}.root={folder}" for block in blocks), *files, "datasets.pretrain.train=captions.json",
        "datasets.preference.train=preference.json", f"data.tokenizer={folder / 'tokenizer'}", "data.image.size=56",
        "student.arch=llava-tiny-h64", "teacher.roles.teacher.arch=llava-tiny-h128", "method.shared_vocab=null",
        "trainer=cpu", *(f"{block}.num_workers=0" for block in blocks), *SMOKE, f"run.root={tmp_path / 'runs'}"])
    result = train(cfg)
    stages = result.record.stages
    assert [s["name"] for s in stages] == ["adaptor", "dense", "upcycle", "sparse", "preference"]
    assert stages[0]["trainable_params"] == 15 * 64 + 64 + 64 * 64 + 64  # the paper's stage 0: the projector alone
    assert stages[-1]["method"]["loss_type"] == "kto_pair" and stages[3]["losses"]["moe"] == 2.0


def test_the_tiny_tower_is_pretrained_once_and_a_damaged_file_is_trained_again(monkeypatch):
    import numpy as np

    from zoo.archs import tiny_tower
    from zoo.archs.vlm import TINY_TOWER, build_tower

    rng = np.random.default_rng(0)
    fake = (rng.integers(0, 255, (20, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20))
    calls = []
    monkeypatch.setattr("zoo.data.scene_vqa.load_items", lambda *a: calls.append(a) or {"train": fake, "test": fake})
    monkeypatch.setitem(tiny_tower.PRETRAINING, "steps", 3)
    monkeypatch.setitem(tiny_tower.PRETRAINING, "batch", 8)
    first = build_tower(TINY_TOWER, pretrained=True)
    again = build_tower(TINY_TOWER, pretrained=True)
    seeded = build_tower(TINY_TOWER, pretrained=False)
    weights = next((tiny_tower.zoo_home() / "towers").glob("*/tower.safetensors"))
    meta = json.loads((weights.parent / "meta.json").read_text())
    assert len(calls) == 1 and meta["key"]["pretraining"]["steps"] == 3
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))
    assert not torch.equal(first.vit.patch_embed.proj.weight, seeded.vit.patch_embed.proj.weight)
    weights.write_bytes(b"damaged")
    build_tower(TINY_TOWER, pretrained=True)
    assert len(calls) == 2


# -- bad input: one line each ----------------------------------------------------------------------------------
def write_json(path, records) -> None:
    path.write_text(json.dumps(records), encoding="utf-8")


def test_an_image_missing_from_the_folder_is_one_line_naming_file_and_record(tmp_path):
    from zoo.data.llava_format import read_instructions

    (tmp_path / "images").mkdir()
    write_json(tmp_path / "train.json", [{"id": "a", "image": "gone.png", "conversations": [
        {"from": "human", "value": "<image>\nwhat?"}, {"from": "gpt", "value": "x"}]}])
    with pytest.raises(DataError) as err:
        read_instructions(tmp_path / "train.json", tmp_path / "images")
    assert "\n" not in str(err.value) and "train.json: record 0 (id 'a'): image 'gone.png'" in str(err.value)


def test_a_conversation_without_a_response_turn_is_one_line_naming_file_and_record(tmp_path):
    from zoo.data.llava_format import read_instructions, read_preferences

    write_json(tmp_path / "train.json", [{"id": "q", "conversations": [{"from": "human", "value": "hi"}]}])
    with pytest.raises(DataError, match=r"train\.json: record 0 \(id 'q'\): the conversation has no response turn"):
        read_instructions(tmp_path / "train.json", tmp_path)
    answered = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}]
    write_json(tmp_path / "pairs.json", [{"id": "p", "chosen": answered[:1], "rejected": answered}])
    with pytest.raises(DataError, match=r"pairs\.json: record 0 \(id 'p'\) \(chosen\): .* no response turn"):
        read_preferences(tmp_path / "pairs.json", tmp_path)


def test_teacher_and_student_with_different_vocabularies_are_refused_in_one_line(scene_set, tmp_path):
    from zoo.data.scene_vqa import write_tokenizer
    from zoo.methods.base import MethodContext
    from zoo.methods.mimic_kd import MimicKD

    other = tmp_path / "tokenizer"
    write_tokenizer(other, {"train": [{"conversations": [{"from": "gpt", "value": "only a few words"}]}]})
    from zoo.archs import create

    teacher = create("llava-tiny-h64", None, (), tokenizer=str(other))
    method = compose("llava_mod_scene_vqa").method
    with pytest.raises(ConfigError, match="teacher and student have different vocabularies") as err:
        MimicKD(tiny_vlm("llava-tiny-h64", scene_set), [teacher], MethodContext.of(scene_set, method,
                                                                                 OmegaConf.create({})))
    assert "\n" not in str(err.value) and "shared_vocab" in err.value.hint


def test_top_k_above_the_number_of_experts_is_refused_in_one_line_before_anything_trains(scene_set, runs, capsys):
    from zoo.archs.moe import upcycle
    from zoo.cli import main

    with pytest.raises(ConfigError, match="upcycle: top_k=5 with 4 experts"):
        upcycle(tiny_vlm("llava-tiny-h64", scene_set), num_experts=4, top_k=5)
    assert main(["train", "task=llava_mod_scene_vqa", "stages.2.transform.upcycle.top_k=5", *runs]) == 2
    assert capsys.readouterr().err.splitlines()[0] == "error: stages.2 (upcycle): upcycle: top_k=5 with 4 experts"


# -- export ------------------------------------------------------------------------------------------------------
def test_every_expert_on_every_token_equals_the_sparse_forward_where_capacity_never_binds():
    """The export's form of a MoE layer (all experts, weighted by the router's combine weights) against the sparse
    forward, with experts that differ and a trained-looking router; and where capacity can bind, no such form."""
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

    from zoo.archs.moe import SparseMoE

    torch.manual_seed(0)
    dense = Qwen2MLP(Qwen2Config(hidden_size=8, intermediate_size=16))
    for top_k in (1, 2, 3):
        layer = SparseMoE(dense, 8, 4, top_k, 1.5, 4.0, 1, True).eval()  # k x 4.0 >= 4 experts: nothing dropped
        with torch.no_grad():
            for expert in layer.experts:
                for p in expert.parameters():
                    p.add_(0.1 * torch.randn_like(p))
            layer.wg.weight.normal_()
            x = torch.randn(3, 7, 8)
            sparse, every = layer(x), layer.forward_every_expert(x)
        assert layer.never_drops() and layer.last_dropped == 0.0
        assert torch.allclose(every, sparse, atol=1e-6) and not torch.allclose(every, dense(x), atol=1e-3)
    assert not SparseMoE(dense, 8, 4, 2, 1.5, 1.0, 1, True).never_drops()  # 2 x 1.0 < 4: capacity can drop


def test_an_upcycled_student_whose_capacity_can_drop_tokens_is_not_exported_but_refused_in_one_line(scene_set):
    from zoo.archs.moe import upcycle
    from zoo.export.vlm import exportable_copy

    student = upcycle(tiny_vlm("llava-tiny-h64", scene_set), num_experts=4, top_k=2, eval_capacity_factor=1.0)
    with pytest.raises(ConfigError) as err:
        exportable_copy(student)
    assert "\n" not in str(err.value) and "capacity" in str(err.value) and "eval_capacity_factor" in err.value.hint


def test_the_upcycled_student_exports_to_onnx_and_answers_every_test_question_as_pytorch(tmp_path, capsys):
    """A staged run's MoE student -> vision and decoder graphs whose greedy answers equal eager PyTorch's on the
    whole test split (the export's own check, which refuses otherwise), then served by ``zoo infer`` from a LLaVA
    JSON file with no answers, and by the runtime from an image file."""
    from zoo.cli import main
    from zoo.export.dispatch import export_run
    from zoo.export.vlm_runtime import OnnxVisionLanguageModel
    from zoo.train import train

    cfg = compose("llava_mod_scene_vqa", TINY_SET + SMOKE + [f"data.root={tmp_path / 'data'}",
                                                            f"run.root={tmp_path / 'runs'}"])
    result = train(cfg, say=lambda *_: None)
    exported = export_run(result.run_dir, out=tmp_path / "export", say=lambda *_: None)
    parity, spec = exported.report["parity"], json.loads((exported.folder / "vlm.json").read_text())
    assert parity["passed"] and parity["answers_differing"] == 0 and parity["samples"] > 0
    assert parity["max_abs_diff"] <= 1e-4 and parity["metric_onnx"] == parity["metric_torch"]
    assert spec["experts"] == [{"layer": 0, "num_experts": 4, "top_k": 2}]
    assert {"vision.onnx", "decoder.onnx", "card.yaml", "student.safetensors"} <= {
        p.name for p in exported.folder.iterdir()}

    data = next((tmp_path / "data").glob("*/test.json"))
    records = json.loads(data.read_text())[:3]
    for record in records:  # questions only: the answers are what zoo infer gives
        record["conversations"] = record["conversations"][:1]
    questions = data.parent / "images" / "questions.json"  # a record's image is relative to the file's folder
    questions.write_text(json.dumps(records))
    assert main(["infer", f"model={exported.folder}", f"inputs={questions}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "id\tanswer" and [line.split("\t")[0] for line in lines[1:]] == [r["id"] for r in records]

    from zoo.runs import load_run

    loaded = load_run(result.run_dir)
    first = loaded.datamodule.prompt_loader("test").dataset.__getitems__([0])  # the file's first record
    eager, _ = loaded.student.generate(first["inputs"], int(spec["max_new_tokens"]))
    image, question = questions.parent / records[0]["image"], first["questions"][0]  # the question without <image>
    answer = OnnxVisionLanguageModel(exported.folder).answer([image], [question])
    assert answer == loaded.datamodule.tokenizer.batch_decode(eager, skip_special_tokens=True)
    assert lines[1].split("\t", 1)[1] == answer[0]


def test_the_paper_models_read_their_tower_from_timm_and_their_decoder_from_the_hub(scene_set, fake_hub, tmp_path,
                                                                                      monkeypatch):
    """``llava-qwen2-*`` with ``pretrained: true``: CLIP from timm by name and the Qwen2 decoder by
    ``Qwen2ForCausalLM.from_pretrained`` of its Hub name; the projector new. The same path with small stand-ins
    (a timm ViT-Tiny and a 2-layer Qwen2) served by the fake Hub on 127.0.0.1: every weight arrives as served."""
    import timm
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from zoo.archs import vlm

    torch.manual_seed(0)
    tower_name = "vit_tiny_patch16_224.augreg_in21k"
    served_tower = timm.create_model(tower_name, pretrained=False).state_dict()
    stage = tmp_path / "tower"
    stage.mkdir()
    save_file(served_tower, str(stage / "model.safetensors"))
    fake_hub.commit(f"timm/{tower_name}", stage)
    sizes = {k: v for k, v in vlm.QWEN2["tiny-h64"].items() if k != "hub"}
    decoder = Qwen2ForCausalLM(Qwen2Config(**{**sizes, "vocab_size": len(scene_set.tokenizer)}, **vlm.QWEN2_COMMON))
    decoder.save_pretrained(str(tmp_path / "decoder"))
    fake_hub.commit("test-org/qwen2-tiny", tmp_path / "decoder")
    monkeypatch.setitem(vlm.QWEN2, "tiny-h64", {**vlm.QWEN2["tiny-h64"], "hub": "test-org/qwen2-tiny",
                                               "vocab_size": len(scene_set.tokenizer)})
    tower = {"timm": tower_name, "kwargs": {}, "seed": None, "readout": None}  # as CLIP_L336, smaller
    model = vlm.build_vlm("tiny-h64", tower, pretrained=True, tokenizer=scene_set.vocabulary)
    got_tower = model.vision.vit.state_dict()
    assert all(torch.equal(value, served_tower[key]) for key, value in got_tower.items())
    assert len(model.vision.vit.blocks) == len([k for k in served_tower if k.endswith("attn.qkv.weight")]) - 1
    assert all(torch.equal(value, decoder.state_dict()[key]) for key, value in model.lm.state_dict().items())


@pytest.mark.slow  # the tower (2 min) and the teacher (16 min) once (ZOO_TEST_STORES reuses yours), then 4 arms x 3
# seeds of staged runs of 2 to 6 minutes each: about 1 hour on one core
def test_llava_mod_on_scene_vqa_against_its_ablations(runs, tmp_path):
    """Every arm lands within its board row (``zoo reproduce`` exits non-zero otherwise); the premise is asserted:
    the teacher answers better and hallucinates less than the student trained alone. The issue's claims are judged
    on the records: mimic KD (b) beats labels (a) by more than the spread, upcycling (c) is at least (b), and the
    preference stage (d) lowers the hallucination rate of (c) while keeping present-object accuracy within a point.
    On 2026-12-02 two failed (README, "LLaVA-MoD"): (b) beat (a) in every seed but by less than the spread, and (d)
    raised the hallucination rate; so the claims are an expected failure, binding the day they hold."""
    import statistics

    from tests.helpers import has_fashion_mnist
    from zoo.cli import main

    if not has_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    code = main(["reproduce", "task=llava_mod_scene_vqa", "seeds=3", "trainer.enable_progress_bar=false", *runs])
    summary = json.loads(next((tmp_path / "runs" / "llava_mod_scene_vqa").glob("reproduce-*.json")).read_text())
    arms = summary["arms"]
    assert code == 0, {name: (arm["mean"], arm["std"]) for name, arm in arms.items()}
    records = [json.loads(open(path).read()) for path in summary["records"]]

    def arm_of(record) -> str:
        names = [stage["name"] for stage in record["stages"]]
        return ("llava_mod" if "preference" in names else "moe" if "sparse" in names
                else "mimic" if "dense" in names else "labels")

    def stats(arm: str, metric: str) -> tuple[float, float]:
        values = [r["metrics"][f"test/{metric}"] for r in records if arm_of(r) == arm]
        return statistics.fmean(values), statistics.stdev(values)

    teacher = records[0]["teacher_metrics"] or next(r["teacher_metrics"] for r in records if r["teacher_metrics"])
    assert teacher["test/acc"] > stats("labels", "acc")[0] and teacher["test/hallucination"] < stats(
        "labels", "hallucination")[0]  # the premise: the teacher has something to teach
    (a, sa), (b, sb), (c, _) = stats("labels", "acc"), stats("mimic", "acc"), stats("moe", "acc")
    halluc_c, halluc_d = stats("moe", "hallucination")[0], stats("llava_mod", "hallucination")[0]
    present_c, present_d = stats("moe", "acc_present")[0], stats("llava_mod", "acc_present")[0]
    claims = {"(b) > (a)": b - a > max(sa, sb), "(c) >= (b)": c >= b - sb,  # within (b)'s spread
              "(d) lowers hallucination": halluc_d < halluc_c,
              "(d) keeps present accuracy": present_d >= present_c - 0.01}
    if not all(claims.values()):
        pytest.xfail("claims fail: " + ", ".join(name for name, held in claims.items() if not held)
                     + f" (acc a {a:.4f}, b {b:.4f}, c {c:.4f}; hallucination c {halluc_c:.3f}, d {halluc_d:.3f})")
