"""DETR detectors (zoo.archs.detr, detr_wrapper) and the CLoCKDistill loss pieces, on tiny random models."""

import math

import pytest
import torch

pytest.importorskip("transformers")

from zoo.archs.detr import build_detr  # noqa: E402
from zoo.archs.detr_wrapper import (  # noqa: E402
    GTQueries,
    decoder_attention_mask,
    inverse_sigmoid,
    self_attention_mask,
    token_locations,
)
from zoo.errors import ConfigError  # noqa: E402
from zoo.methods import clockdistill_losses as cl  # noqa: E402
from zoo.registry import ARCHS  # noqa: E402

SMALL = {"deformable_detr.tiny": dict(d_model=32, encoder_attention_heads=2, decoder_attention_heads=2,
                                      encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=5),
         "dab_detr.tiny": dict(hidden_size=32, encoder_attention_heads=2, decoder_attention_heads=2,
                               encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=5)}
NUM_CLASSES = 3


def tiny(name: str, **extra):
    torch.manual_seed(0)
    return ARCHS.get(name)(num_classes=NUM_CLASSES, input_shape=(3, 64, 96), **{**SMALL[name], **extra}).eval()


@pytest.fixture(scope="module")
def models():
    return {"deformable": tiny("deformable_detr.tiny"), "dab": tiny("dab_detr.tiny"),
            "two_stage": tiny("deformable_detr.tiny", two_stage=True, two_stage_num_proposals=5)}


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 3, 64, 96, generator=generator)
    pixel_mask = torch.ones(2, 64, 96, dtype=torch.long)
    pixel_mask[1, :, 64:] = 0  # image 2 is 64x48 pixels padded to 64x96... and
    pixel_mask[1, 48:, :] = 0  # ... 48 rows high
    targets = [{"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[.5, .5, .2, .2], [.3, .3, .1, .2]]),
                "ignore_boxes": torch.zeros(0, 4)},
               {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[.4, .5, .3, .2]]),
                "ignore_boxes": torch.zeros(0, 4)}]
    return inputs, pixel_mask, targets


def gt_queries(model, targets, gt_attend="group"):
    torch.manual_seed(2)
    embedder = cl.GTQueryEmbedder(NUM_CLASSES, model.hidden_size)
    return embedder, embedder(*cl.pad_gt(targets), gt_attend=gt_attend)


# -- detectors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["deformable", "dab", "two_stage"])
def test_forward_with_labels_gives_loss_memory_and_locations(models, batch, key):
    model, (inputs, pixel_mask, targets) = models[key], batch
    model.train()
    try:
        out = model(inputs, pixel_mask, labels=targets)
    finally:
        model.eval()
    assert torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    assert out.logits.shape == (2, 5, NUM_CLASSES) and out.pred_boxes.shape == (2, 5, 4)
    # same head, same inputs (DAB-DETR's head runs on one layer in HF, on the stacked layers here)
    torch.testing.assert_close(out.layer_logits[-1], out.logits)
    torch.testing.assert_close(out.layer_boxes[-1], out.pred_boxes)
    shapes = [(8, 12), (4, 6)] if key != "dab" else [(4, 6)]  # stride 8 and 16 / stride 16 on a 64x96 canvas
    tokens = sum(h * w for h, w in shapes)
    assert out.spatial_shapes.tolist() == [list(s) for s in shapes]
    assert out.memory.shape == (2, tokens, 32) and out.memory_mask.shape == (2, tokens)
    assert out.token_level.shape == (tokens,) and out.token_xy.shape == (2, tokens, 2)
    # image 1 is fully real; image 2 keeps 2/3 of the width and 3/4 of the height
    assert out.memory_mask[0].all()
    torch.testing.assert_close(out.valid_ratios[1], torch.tensor([[2 / 3, 3 / 4]] * len(shapes)))
    assert out.memory_mask[1].sum() == sum((h * 3 // 4) * (w * 2 // 3) for h, w in shapes)
    real_xy = out.token_xy[1][out.memory_mask[1]]
    assert (real_xy > 0).all() and (real_xy < 1).all()
    assert (out.token_xy[1][~out.memory_mask[1]] > 1).any(-1).all()


@pytest.mark.parametrize("key", ["deformable", "dab", "two_stage"])
def test_gt_queries_leave_normal_outputs_unchanged(models, batch, key):
    model, (inputs, pixel_mask, targets) = models[key], batch
    _, queries = gt_queries(model, targets)
    with torch.no_grad():
        plain = model(inputs, pixel_mask, labels=targets)
        with_gt = model(inputs, pixel_mask, labels=targets, gt_queries=queries)
    for field in ("logits", "pred_boxes", "layer_logits", "layer_boxes", "memory", "loss"):
        assert torch.equal(getattr(plain, field), getattr(with_gt, field)), field
    layers = len(model.hf.model.decoder.layers)
    assert with_gt.gt_logits.shape == (layers, 2, 2, NUM_CLASSES) and with_gt.gt_boxes.shape == (layers, 2, 2, 4)
    assert with_gt.gt_valid.tolist() == [[True, True], [True, False]]
    assert torch.isfinite(with_gt.gt_logits).all() and torch.isfinite(with_gt.gt_boxes).all()


@pytest.mark.parametrize("key", ["dab", "two_stage"])
def test_separate_gt_decoding_equals_one_masked_decoder_call(models, batch, key):
    """[normal; GT] in one decoder call with the full block mask gives the same outputs as the wrapper's two
    calls (possible where normal and GT references have the same size: DAB-DETR, two-stage Deformable)."""
    model, (inputs, pixel_mask, targets) = models[key], batch
    _, queries = gt_queries(model, targets)
    record = {}

    def keep_first(module, args, kwargs, output):  # the wrapper's first decoder call: the normal queries
        record.setdefault("kwargs", kwargs)

    handle = model.hf.model.decoder.register_forward_hook(keep_first, with_kwargs=True)
    with torch.no_grad():
        out = model(inputs, pixel_mask, gt_queries=queries)
    handle.remove()
    kwargs = record["kwargs"]
    num_queries = kwargs["inputs_embeds"].shape[1]
    call = {**kwargs, "inputs_embeds": torch.cat([kwargs["inputs_embeds"], queries.content], 1)}
    if key == "dab":
        call["query_position_embeddings"] = torch.cat([kwargs["query_position_embeddings"],
                                                       inverse_sigmoid(queries.reference)], 1)
        init = None
    else:
        call["object_queries_position_embeddings"] = torch.cat([kwargs["object_queries_position_embeddings"],
                                                                queries.position], 1)
        call["reference_points"] = init = torch.cat([kwargs["reference_points"], queries.reference], 1)
    mask = decoder_attention_mask(num_queries, queries.valid)
    with torch.no_grad(), self_attention_mask(model.hf.model.decoder.layers, mask):
        logits, boxes = model._heads(model.hf.model.decoder(**call), init)
    close = dict(atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits[:, :, :num_queries], out.layer_logits, **close)
    torch.testing.assert_close(boxes[:, :, :num_queries], out.layer_boxes, **close)
    torch.testing.assert_close(logits[:, :, num_queries:], out.gt_logits, **close)
    torch.testing.assert_close(boxes[:, :, num_queries:], out.gt_boxes, **close)
    # and the mask matters: without it the normal queries change
    with torch.no_grad():
        unmasked, _ = model._heads(model.hf.model.decoder(**call), init)
    assert not torch.allclose(unmasked[:, :, :num_queries], out.layer_logits, atol=1e-4)


@pytest.mark.parametrize("center", [False, True, None])
def test_single_stage_deformable_decodes_the_4d_gt_box(models, batch, center):
    """center_reference False: the GT box itself is the first layer's reference on single-stage Deformable DETR
    (None, the model's own 2-d kind there, and True pass its centre). A fresh model's first box head outputs the
    constant delta (0, 0, -2, -2) (its last layer is zero-initialised), so its boxes show what reference it got."""
    model, (inputs, pixel_mask, targets) = models["deformable"], batch
    assert not model.hf.config.two_stage
    _, queries = gt_queries(model, targets)
    queries.center_reference = center
    record = []
    handle = model.hf.model.decoder.register_forward_hook(
        lambda module, args, kwargs, output: record.append(kwargs["reference_points"]), with_kwargs=True)
    try:
        with torch.no_grad():
            out = model(inputs, pixel_mask, gt_queries=queries)
    finally:
        handle.remove()
    first = out.gt_boxes[0][queries.valid]
    gt = queries.reference[queries.valid]
    torch.testing.assert_close(first[:, :2], gt[:, :2])  # the centre is the reference's either way
    if center is False:
        assert record[1] is queries.reference  # the second decoder call: the GT group, 4-d
        torch.testing.assert_close(first[:, 2:], torch.sigmoid(inverse_sigmoid(gt[:, 2:]) - 2))
    else:
        assert record[1].shape[-1] == 2
        torch.testing.assert_close(first[:, 2:], torch.full_like(first[:, 2:], torch.sigmoid(torch.tensor(-2.0))))


def test_decoder_attention_mask_pattern():
    valid = torch.tensor([[True, True], [True, False]])  # 2 images with 2 and 1 GT objects; 2 normal queries
    allowed = decoder_attention_mask(2, valid)[:, 0] == 0
    assert allowed.tolist() == [
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]],
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],  # the padding slot sees only itself
    ]
    own = decoder_attention_mask(2, valid, gt_attend="self")[:, 0] == 0
    assert own[:, 2:, 2:].tolist() == [[[1, 0], [0, 1]]] * 2
    assert decoder_attention_mask(2, valid).min() == torch.finfo(torch.float32).min


def test_unknown_config_field_is_an_error():
    with pytest.raises(ConfigError, match="d_model"):
        ARCHS.get("dab_detr.tiny")(num_classes=3, input_shape=(3, 64, 64), d_model=32)
    with pytest.raises(ConfigError, match="num_querys"):
        ARCHS.get("deformable_detr.tiny")(num_classes=3, input_shape=(3, 64, 64), num_querys=5)


def test_weights_round_trip_with_tied_heads(models, tmp_path):
    from zoo.weights import load_weights, save_weights

    model = models["deformable"]
    assert model.aliases()  # HF ties the class heads across decoder layers
    path = save_weights(model, tmp_path / "student.safetensors")
    other = tiny("deformable_detr.tiny")
    torch.nn.init.zeros_(other.hf.class_embed[0].weight)
    load_weights(other, path)
    for (name, a), b in zip(model.state_dict(keep_vars=False).items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert other.hf.class_embed[1].weight is other.hf.class_embed[0].weight


def test_pretrained_loads_detector_and_resizes_head(models, tmp_path):
    source = models["deformable"]
    source.hf.save_pretrained(tmp_path)  # stands in for the hub checkpoint
    model = ARCHS.get("deformable_detr.tiny")(num_classes=2, input_shape=(3, 64, 64), pretrained=True,
                                              hub_name=str(tmp_path))
    assert model.hf.class_embed[0].out_features == 2
    loaded, saved = model.hf.model.encoder.layers[0].mlp.fc1, source.hf.model.encoder.layers[0].mlp.fc1
    assert torch.equal(loaded.weight, saved.weight)


def test_pretrained_backbone_copies_timm_imagenet_weights(monkeypatch):
    import timm

    made = []
    original = timm.create_model

    def offline(name, pretrained=False, **kwargs):  # what pretrained=True would download
        if not pretrained:  # the detector's own random backbone
            return original(name, pretrained=False, **kwargs)
        torch.manual_seed(7)
        made.append(original(name, pretrained=False, **kwargs))
        return made[-1]

    monkeypatch.setattr(timm, "create_model", offline)
    arch = ARCHS.get("dab_detr.tiny").arch
    model = build_detr(arch, 3, (3, 64, 64), pretrained_backbone=True, **SMALL["dab_detr.tiny"])
    backbone = model.hf.model.backbone.conv_encoder.model._backbone
    assert torch.equal(backbone.conv1.weight, made[0].conv1.weight)
    assert torch.equal(backbone.layer3[0].bn1.running_var, made[0].layer3[0].bn1.running_var)


# -- location weights and memory loss ------------------------------------------------------------------------
def grid(width_ratio: float = 1.0):
    """A single 4x4 level; the last column is padding when width_ratio is 0.75."""
    ratios = torch.tensor([[[width_ratio, 1.0]]])
    level, xy = token_locations([(4, 4)], ratios)
    mask = torch.ones(1, 16, dtype=torch.bool)
    if width_ratio < 1:
        mask[0, 3::4] = False
    return dict(token_xy=xy, token_level=level, spatial_shapes=torch.tensor([[4, 4]]), valid_ratios=ratios,
                memory_mask=mask)


def test_location_weights_inverse_area_by_hand():
    # centres at 0.125, 0.375, 0.625, 0.875; box x in [0.2, 0.8], y in [0.35, 0.65]
    box = [torch.tensor([[0.5, 0.5, 0.6, 0.3]])]
    w = cl.location_weights(box, **grid()).view(4, 4)
    expected = torch.full((4, 4), 1 / 12)  # 12 background tokens share weight 1
    expected[1:3, 1:3] = 1 / 4  # 2x2 token centres inside the box, area 4 tokens
    torch.testing.assert_close(w, expected)
    # cells overlapping the box: all 4 columns of rows 1-2 -> area 8; box-area variant: 2.4 x 1.2 tokens
    # (and the other 8 tokens share the background's weight 1 equally, 1/8 too)
    w = cl.location_weights(box, **grid(), fg_rule="overlap").view(4, 4)
    torch.testing.assert_close(w, torch.full((4, 4), 1 / 8))
    w = cl.location_weights(box, **grid(), area="box", bg_weight=0.01, bg_normalize=False).view(4, 4)
    expected = torch.full((4, 4), 0.01)
    expected[1:3, 1:3] = 1 / (2.4 * 1.2)
    torch.testing.assert_close(w, expected)


def test_location_weights_padding_overlap_and_gaussian():
    # width ratio 0.75: real centres x = 1/6, 1/2, 5/6, the 4th column is padding
    box = [torch.tensor([[0.5, 0.5, 0.5, 0.5]])]
    w = cl.location_weights(box, **grid(0.75)).view(4, 4)
    expected = torch.full((4, 4), 1 / 10)  # 12 real tokens, 2 foreground
    expected[1:3, 1] = 1 / 2
    expected[:, 3] = 0
    torch.testing.assert_close(w, expected)
    # a token inside two boxes takes the smaller box's (larger) weight
    boxes = [torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.375, 0.375, 0.2, 0.2]])]
    w = cl.location_weights(boxes, **grid()).view(4, 4)
    assert w[1, 1] == 1.0 and w[1, 2] == 0.25
    # gaussian: peak / area at the centre token, bg tokens keep max(gaussian, background weight)
    # (box x, y in [0.075, 0.675]: 3x3 token centres inside, sigma = 0.25 * 0.6)
    w = cl.location_weights([torch.tensor([[0.375, 0.375, 0.6, 0.6]])], **grid(), mode="gaussian").view(4, 4)
    assert math.isclose(w[1, 1].item(), 1 / 9, rel_tol=1e-6)
    assert math.isclose(w[1, 2].item(), math.exp(-0.5 * (0.25 / 0.15) ** 2) / 9, rel_tol=1e-5)
    assert math.isclose(w[3, 3].item(), 1 / 7, rel_tol=1e-6)
    # ignore regions are neither foreground nor background
    w = cl.location_weights([torch.zeros(0, 4)], **grid(), ignore_boxes=[torch.tensor([[0.125, 0.125, 0.1, 0.1]])])
    assert w.view(4, 4)[0, 0] == 0 and math.isclose(w.sum().item(), 1.0, rel_tol=1e-6)
    # uniform (memory distillation without GT weighting): 1 on every real token, boxes and ignore regions or not
    w = cl.location_weights(boxes, **grid(0.75), mode="uniform", ignore_boxes=[torch.tensor([[0.1, 0.1, 0.1, 0.1]])])
    assert torch.equal(w, grid(0.75)["memory_mask"].float())


def test_memory_loss_by_hand_and_padding_excluded():
    student = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [5.0, 5.0]]])
    teacher = torch.zeros(1, 3, 2)
    weights = torch.tensor([[0.5, 0.25, 0.0]])  # token 3 is padding
    assert cl.memory_distill_loss(student, teacher, weights).item() == pytest.approx(0.5 / 0.75)
    mean = cl.memory_distill_loss(student, teacher, weights, channel_reduction="mean")
    assert mean.item() == pytest.approx(0.25 / 0.75)
    moved = student.clone()
    moved[0, 2] = -100.0
    assert cl.memory_distill_loss(moved, teacher, weights) == cl.memory_distill_loss(student, teacher, weights)
    adapter = cl.make_memory_adapter(2, 2)
    torch.testing.assert_close(cl.memory_distill_loss(student, teacher, weights, adapter=adapter),
                               torch.tensor(0.5 / 0.75))
    assert cl.memory_distill_loss(student, teacher, torch.zeros(1, 3)) == 0


# -- logit distillation ---------------------------------------------------------------------------------------
def test_sigmoid_kd_by_hand():
    student = torch.tensor([[[1.0], [9.0]]])  # [B=1, G=2, C=1]; query 2 is padding
    teacher = torch.tensor([[[math.log(3.0)], [-9.0]]])  # sigmoid = 0.75
    valid = torch.tensor([[True, False]])
    bce = math.log1p(math.exp(1.0)) - 0.75 * 1.0  # BCE-with-logits(x, p) = softplus(x) - p x
    assert math.isclose(cl.sigmoid_kd_loss(student, teacher, valid).item(), bce, rel_tol=1e-6)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert cl.sigmoid_kd_loss(student, teacher, valid, kind="kl").item() == pytest.approx(bce - entropy, abs=1e-6)
    p = math.sqrt(3) / (1 + math.sqrt(3))  # sigmoid(log(3) / 2)
    hot = math.log1p(math.exp(0.5)) - p * 0.5
    assert math.isclose(cl.sigmoid_kd_loss(student, teacher, valid, temperature=2.0).item(), hot, rel_tol=1e-6)
    two_layers = cl.sigmoid_kd_loss(student.expand(2, 1, 2, 1), teacher.expand(2, 1, 2, 1), valid)
    assert math.isclose(two_layers.item(), 2 * bce, rel_tol=1e-6)  # summed over decoder layers
    assert cl.sigmoid_kd_loss(teacher, teacher, valid, kind="kl").abs() < 1e-6


def test_box_kd_by_hand():
    student = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]])
    teacher = torch.tensor([[[0.5, 0.5, 0.4, 0.2], [0.9, 0.9, 0.1, 0.1]]])
    l1, giou = cl.box_kd_loss(student, teacher, torch.tensor([[True, False]]))
    assert math.isclose(l1.item(), 0.2, rel_tol=1e-6)  # only the width differs, by 0.2
    assert giou.item() == pytest.approx(0.5, rel=1e-5)  # IoU 0.04/0.08, enclosing box = union


def test_layer_pairs_follow_the_stated_map():
    # proportional: student layer i meets teacher layer round_half_up((i + 1) L_T / L_S) - 1
    assert cl.layer_pairs(2, 3) == [(0, 1), (1, 2)]  # kitti_mini: student 2, teacher 3 decoder layers
    assert cl.layer_pairs(3, 6) == [(0, 1), (1, 3), (2, 5)]
    assert cl.layer_pairs(3, 2) == [(0, 0), (1, 0), (2, 1)]  # a deeper student: teacher layers reused
    assert cl.layer_pairs(1, 3) == [(0, 2)] and cl.layer_pairs(4, 4) == [(i, i) for i in range(4)]
    assert cl.layer_pairs(6, 4) == [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3)]  # 1.5 and 2.5 round up
    for s_layers in range(1, 7):
        for t_layers in range(1, 7):
            pairs = cl.layer_pairs(s_layers, t_layers)
            assert [s for s, _ in pairs] == list(range(s_layers)) and pairs[-1] == (s_layers - 1, t_layers - 1)
            assert all(0 <= t < t_layers for _, t in pairs) and [t for _, t in pairs] == sorted(t for _, t in pairs)
    # the earlier reading: the last min(L_S, L_T) layers of each ("all" is its old name), and the last only
    assert cl.layer_pairs(3, 6, "tail") == cl.layer_pairs(3, 6, "all") == [(0, 3), (1, 4), (2, 5)]
    assert cl.layer_pairs(3, 2, "tail") == [(1, 0), (2, 1)] and cl.layer_pairs(3, 6, "last") == [(2, 5)]
    with pytest.raises(ValueError, match="proportional"):
        cl.layer_pairs(2, 3, "first")


def test_consistent_logit_kd_sums_over_the_paired_layers():
    valid = torch.tensor([[True, False]])
    student = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)  # layer i: logits i
    teacher = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 2, 2) - 2  # layer t: logits t - 2
    boxes_s, boxes_t = torch.full((3, 1, 2, 4), 0.5), torch.full((6, 1, 2, 4), 0.5)
    for layers, pairs in (("proportional", [(0, 1), (1, 3), (2, 5)]), ("tail", [(0, 3), (1, 4), (2, 5)])):
        got = cl.consistent_logit_kd(student, boxes_s, teacher, boxes_t, valid, layers=layers)["kd_cls"]
        expected = sum(cl.sigmoid_kd_loss(student[s], teacher[t], valid) for s, t in pairs)
        torch.testing.assert_close(got, expected)


def test_hungarian_kd_distils_the_pairs_matched_to_each_gt():
    targets = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    far = [0.1, 0.1, 0.05, 0.05]
    student_boxes = torch.tensor([[far, far, [0.5, 0.5, 0.2, 0.2]]])
    teacher_boxes = torch.tensor([[[0.52, 0.5, 0.2, 0.2], far, far]])
    student_logits = torch.tensor([[[-5.0, -5.0], [-5.0, -4.0], [-5.0, 3.0]]])
    teacher_logits = torch.tensor([[[-4.0, 4.0], [-5.0, -5.0], [-5.0, -5.0]]])
    got = cl.hungarian_kd_loss(student_logits, student_boxes, teacher_logits, teacher_boxes, targets)
    one = torch.ones(1, 1, dtype=torch.bool)
    expected = cl.sigmoid_kd_loss(student_logits[:, 2:3], teacher_logits[:, 0:1], one)
    torch.testing.assert_close(got["kd_cls"], expected)
    assert math.isclose(got["kd_l1"].item(), 0.02, rel_tol=1e-4)


def test_gt_queries_and_embedder():
    targets = [{"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[.5, .5, .2, .2], [.3, .3, .1, .2]])},
               {"class_labels": torch.tensor([], dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    boxes, labels, valid = cl.pad_gt(targets)
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[0, 2], [0, 0]] and valid.tolist() == [[1, 1], [0, 0]]
    noisy, flipped = cl.jitter_gt(boxes, labels, box_noise=0.4, label_noise=1.0, num_classes=3,
                                  generator=torch.Generator().manual_seed(0))
    assert not torch.equal(noisy, boxes) and noisy.min() >= 0 and noisy.max() <= 1
    assert ((noisy[..., :2] - boxes[..., :2]).abs() <= 0.2 * boxes[..., 2:] + 1e-6).all()
    embedder = cl.GTQueryEmbedder(3, 32, position="sine_mlp", learnable=False)
    queries = embedder(boxes, labels, valid)
    assert queries.content.shape == queries.position.shape == (2, 2, 32)
    assert (queries.content[1] == 0).all()  # padding slots carry no label embedding
    assert not any(p.requires_grad for p in embedder.parameters())
    assert torch.equal(queries.self_attn_mask, decoder_attention_mask(0, valid))
    assert cl.box_sine_embedding(boxes, 32).shape == (2, 2, 32)
    with pytest.raises(ValueError):
        cl.box_sine_embedding(boxes, 12)


def test_losses_end_to_end_reach_student_and_embedder(batch):
    inputs, pixel_mask, targets = batch
    teacher = tiny("deformable_detr.tiny", decoder_layers=2)
    student = tiny("deformable_detr.tiny", decoder_layers=1).train()  # one layer: untied heads
    embedder, queries = gt_queries(teacher, targets)
    with torch.no_grad():
        t_out = teacher(inputs, pixel_mask, gt_queries=queries)
    s_out = student(inputs, pixel_mask, labels=targets, gt_queries=queries)
    weights = cl.location_weights([t["boxes"] for t in targets], s_out.token_xy, s_out.token_level,
                                  s_out.spatial_shapes, s_out.valid_ratios, s_out.memory_mask)
    assert (weights[~s_out.memory_mask] == 0).all() and (weights[s_out.memory_mask] > 0).all()
    memory = cl.memory_distill_loss(s_out.memory, t_out.memory, weights)
    logit = cl.consistent_logit_kd(s_out.gt_logits, s_out.gt_boxes, t_out.gt_logits, t_out.gt_boxes, s_out.gt_valid)
    total = s_out.loss + memory + sum(logit.values())
    assert torch.isfinite(total)
    total.backward()
    assert student.hf.model.encoder.layers[0].mlp.fc1.weight.grad.abs().sum() > 0
    assert embedder.label_embed.weight.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in teacher.parameters())


def test_empty_gt_batch_decodes_nothing(models, batch):
    inputs, pixel_mask, _ = batch
    model = models["deformable"]
    queries = GTQueries(content=torch.zeros(2, 0, 32), reference=torch.zeros(2, 0, 4),
                        valid=torch.zeros(2, 0, dtype=torch.bool), position=torch.zeros(2, 0, 32))
    with torch.no_grad():
        out = model(inputs, pixel_mask, gt_queries=queries)
    assert out.gt_logits.shape == (2, 2, 0, NUM_CLASSES)
    assert cl.sigmoid_kd_loss(out.gt_logits, out.gt_logits, out.gt_valid) == 0
