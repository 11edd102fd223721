"""Tests for utils.metrics: top-k counts, the confusion matrix, per-class reports."""

from __future__ import annotations

import math

import pytest
import torch

from utils.metrics import (
    ConfusionMatrix,
    most_confused,
    per_class_accuracy,
    per_class_report,
    topk_correct,
)

# 4 samples x 5 classes, no ties within a row. Rank of the target (1 = best):
# row 0 -> 1, row 1 -> 2, row 2 -> 5, row 3 -> 2.
LOGITS = torch.tensor(
    [
        [0.1, 0.5, 0.2, 0.9, 0.3],  # order 3,1,4,2,0; target 3
        [0.8, 0.1, 0.7, 0.2, 0.0],  # order 0,2,3,1,4; target 2
        [0.0, 0.1, 0.2, 0.3, 0.4],  # order 4,3,2,1,0; target 0
        [0.3, 0.2, 0.9, 0.1, 0.5],  # order 2,4,0,1,3; target 4
    ]
)
TARGETS = torch.tensor([3, 2, 0, 4])


def test_topk_correct_hand_computed() -> None:
    out = topk_correct(LOGITS, TARGETS, ks=(1, 2, 3, 4, 5))
    assert out.dtype == torch.int64
    assert out.shape == (5,)
    assert out.tolist() == [1, 3, 3, 3, 4]


def test_topk_correct_keeps_ks_order_and_device() -> None:
    out = topk_correct(LOGITS, TARGETS, ks=(5, 1))
    assert out.tolist() == [4, 1]
    assert out.device == LOGITS.device


def test_k_is_clamped_to_num_classes() -> None:
    logits = torch.tensor([[0.1, 0.2, 0.7], [0.9, 0.05, 0.05], [0.2, 0.5, 0.3]])
    targets = torch.tensor([0, 0, 2])  # ranks 3, 1, 2
    assert topk_correct(logits, targets, ks=(1, 2, 3, 5, 100)).tolist() == [1, 2, 3, 3, 3]


def test_topk_matches_brute_force_rank() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 17, generator=g)  # continuous: ties have probability 0
    targets = torch.randint(0, 17, (200,), generator=g)
    # rank of the target = 1 + number of classes scoring strictly higher
    rank = 1 + (logits > logits.gather(1, targets[:, None])).sum(dim=1)
    ks = (1, 3, 5, 10, 17)
    expected = [int((rank <= k).sum()) for k in ks]
    assert topk_correct(logits, targets, ks).tolist() == expected


def test_topk_empty_batch() -> None:
    assert topk_correct(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64)).tolist() == [0, 0]


@pytest.mark.parametrize(
    ("logits", "targets", "ks", "exc"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.int64), (1,), ValueError),
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.int64), (1,), ValueError),
        (torch.zeros(4, 3), torch.zeros(4), (1,), TypeError),
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), (0, 1), ValueError),
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), (), ValueError),
    ],
)
def test_topk_rejects_bad_input(logits, targets, ks, exc) -> None:
    with pytest.raises(exc):
        topk_correct(logits, targets, ks)


def test_confusion_matrix_hand_computed() -> None:
    targets = torch.tensor([0, 0, 1, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = ConfusionMatrix(3)
    cm.update(preds[:4], targets[:4])
    cm.update(preds[4:], targets[4:])
    expected = torch.tensor([[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    out = cm.compute()
    assert out.dtype == torch.int64
    assert torch.equal(out, expected)
    out[0, 0] = 99  # compute() returns a copy
    assert cm.compute()[0, 0] == 1
    cm.reset()
    assert cm.compute().sum() == 0


def test_confusion_matrix_accepts_logits() -> None:
    cm = ConfusionMatrix(5)
    cm.update(LOGITS, TARGETS)  # argmax: 3, 0, 4, 2
    expected = torch.zeros(5, 5, dtype=torch.int64)
    for t, p in [(3, 3), (2, 0), (0, 4), (4, 2)]:
        expected[t, p] += 1
    assert torch.equal(cm.compute(), expected)


@pytest.mark.parametrize(
    ("preds", "targets", "exc"),
    [
        (torch.tensor([0, 3]), torch.tensor([0, 1]), ValueError),  # pred out of range
        (torch.tensor([0, 1]), torch.tensor([0, 3]), ValueError),  # target out of range
        (torch.tensor([0, 1]), torch.tensor([-1, 1]), ValueError),
        (torch.tensor([0, 1]), torch.tensor([0, 1, 2]), ValueError),
        (torch.zeros(2, 4), torch.tensor([0, 1]), ValueError),  # logits with wrong C
        (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), TypeError),
    ],
)
def test_confusion_matrix_rejects_bad_input(preds, targets, exc) -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(exc):
        cm.update(preds, targets)
    assert cm.compute().sum() == 0  # nothing was added


def test_per_class_accuracy_with_empty_class() -> None:
    cm = torch.tensor([[1, 1, 0], [1, 2, 0], [0, 0, 0]])  # class 2 has no samples
    acc = per_class_accuracy(cm)
    assert acc.shape == (3,)
    assert acc[0].item() == pytest.approx(50.0)
    assert acc[1].item() == pytest.approx(200.0 / 3)
    assert math.isnan(acc[2].item())

    m = ConfusionMatrix(3)
    m.update(torch.tensor([0, 1, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 1]))
    assert torch.allclose(m.per_class_accuracy(), acc, equal_nan=True)


def test_most_confused_order() -> None:
    cm = torch.tensor(
        [
            [9, 2, 5, 0],
            [0, 8, 0, 2],
            [7, 0, 6, 1],
            [0, 0, 0, 30],
        ]
    )
    # counts 7, 5, then a tie of 2s in (true, pred) order, then 1; diagonal and zeros excluded
    assert most_confused(cm, 10) == [(2, 0, 7), (0, 2, 5), (0, 1, 2), (1, 3, 2), (2, 3, 1)]
    assert most_confused(cm, 2) == [(2, 0, 7), (0, 2, 5)]
    assert most_confused(cm, 0) == []
    assert most_confused(torch.eye(3, dtype=torch.int64) * 4, 5) == []

    m = ConfusionMatrix(4)
    m.matrix += cm
    assert m.most_confused(3) == [(2, 0, 7), (0, 2, 5), (0, 1, 2)]


def test_per_class_report() -> None:
    cm = torch.tensor([[1, 1, 0], [1, 2, 0], [0, 0, 0]])
    rows = per_class_report(cm, ["tench", "church", "parachute"])
    assert [r["class_index"] for r in rows] == [0, 1, 2]
    assert rows[1] == {
        "class_index": 1, "name": "church", "support": 3, "correct": 2,
        "accuracy": pytest.approx(200.0 / 3),
    }
    assert rows[2]["support"] == 0 and math.isnan(rows[2]["accuracy"])
    with pytest.raises(ValueError, match="class names"):
        per_class_report(cm, ["a", "b"])


# -- confused pairs and per-class tables ------------------------------------------------------------------------

from utils.metrics import confused_pairs, format_per_class_table, write_per_class_csv  # noqa: E402


def test_confused_pairs_hand_computed() -> None:
    cm = torch.tensor([[9, 2, 5, 0], [0, 8, 0, 2], [7, 0, 6, 1], [0, 0, 0, 30]])
    rows = confused_pairs(cm, ["tench", "springer", "cassette", "saw"], k=3)
    assert [(r["true_name"], r["pred_name"], r["count"]) for r in rows] == [
        ("cassette", "tench", 7), ("tench", "cassette", 5), ("tench", "springer", 2)]
    assert rows[0]["true_support"] == 14 and rows[0]["percent_of_true"] == pytest.approx(50.0)
    assert rows[1]["percent_of_true"] == pytest.approx(100 * 5 / 16)
    assert confused_pairs(cm, None, 1)[0]["true_name"] == "2"
    with pytest.raises(ValueError, match="class names"):
        confused_pairs(cm, ["a"], 3)


def test_confused_pairs_on_1000_classes() -> None:
    cm = torch.diag(torch.full((1000,), 40, dtype=torch.int64))
    cm[17, 998] = 9
    cm[998, 17] = 4
    cm[500, 3] = 9
    rows = confused_pairs(cm, [f"c{i}" for i in range(1000)], k=2)
    assert [(r["true"], r["pred"], r["count"]) for r in rows] == [(17, 998, 9), (500, 3, 9)]
    assert rows[0]["true_support"] == 49


def test_per_class_table_and_csv(tmp_path) -> None:
    cm = torch.tensor([[1, 1, 0], [1, 2, 0], [0, 0, 0]])
    rows = per_class_report(cm, ["tench", "church", "a|b"])
    table = format_per_class_table(rows).splitlines()
    assert table[0] == "| class | name | images | correct | top-1 (%) |"
    assert [line.split("|")[2].strip() for line in table[2:]] == ["tench", "church", "a/b"]  # worst first, NaN last
    assert table[2].endswith("| 50.0 |") and table[4].endswith("| - |")
    best_first = format_per_class_table(rows, descending=True, max_rows=1).splitlines()
    assert len(best_first) == 3 and "church" in best_first[2]
    assert "| 0 | n01440764 | tench |" in format_per_class_table([{**rows[0], "wnid": "n01440764"}])
    with pytest.raises(ValueError, match="sort_by"):
        format_per_class_table(rows, sort_by="recall")
    path = write_per_class_csv(rows, tmp_path / "sub" / "acc.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "class_index,name,support,correct,accuracy"
    assert lines[2] == "1,church,3,2,66.6667" and lines[3] == "2,a|b,0,0,"
