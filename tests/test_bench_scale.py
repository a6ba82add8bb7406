"""``raysearch bench scale``: steady-state figures exclude the warm-up epoch(s) and the start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysearch.bench import scale


def _epoch(epoch: int, seconds: float, steps: int = 10, stage: str = "train", **more) -> dict:
    return {"stage": stage, "epoch": epoch, "epoch_seconds": seconds, "steps": steps, "sampling_seconds": seconds / 4,
            "draws": 1000 * steps, **more}


def test_steady_state_excludes_the_warm_up_epoch_and_reports_the_start_up_apart():
    records = [_epoch(0, 20.0, eval_seconds=None, comm_bytes_per_step=9e9),  # warm-up: 10x slower
               _epoch(1, 2.0, comm_bytes_per_step=100.0), _epoch(2, 1.5, comm_bytes_per_step=100.0),
               _epoch(3, 2.5, eval_seconds=3.0, comm_bytes_per_step=100.0),
               _epoch(0, 99.0, stage="finetune")]  # another stage: not this one's
    out = scale.summarise(records, warmup_epochs=1, run_seconds=40.0)
    assert out["epoch_seconds"] == pytest.approx((2.0 + 1.5 + 2.5) / 3)
    assert out["step_seconds"] == pytest.approx(6.0 / 30)
    assert out["warmup_epoch_seconds"] == pytest.approx(20.0)
    # the run's wall time outside its epochs (all four) and its validation
    assert out["startup_seconds"] == pytest.approx(40.0 - (20.0 + 2.0 + 1.5 + 2.5) - 3.0)
    assert out["draws_per_second"] == pytest.approx(30_000 / (6.0 / 4))
    assert out["comm_bytes_per_step"] == pytest.approx(100.0)
    assert (out["epochs"], out["warmup_epochs"], out["steps_per_epoch"]) == (4, 1, 10)

    two = scale.summarise(records[:4], warmup_epochs=2)
    assert two["epoch_seconds"] == pytest.approx(2.0) and two["warmup_epoch_seconds"] == pytest.approx(11.0)
    assert two["startup_seconds"] is None
    with pytest.raises(ValueError, match="none after the 1 warm-up epoch"):
        scale.summarise(records[:1], warmup_epochs=1)


def test_speed_up_compares_steady_state_only(monkeypatch, tmp_path):
    # W = 1 pays a long warm-up epoch, W = 2 does not: the first epoch alone would make W = 2 look 10x faster
    epochs = {1: [12.0, 1.0, 1.0, 1.0], 2: [1.2, 0.8, 0.8, 0.8]}
    calls = []

    def fake_train(overrides, out, data_dir=None):
        calls.append(list(overrides))
        w = int(next(o for o in overrides if o.startswith("trainer.workers=")).split("=")[1])
        Path(out).mkdir(parents=True)
        with (Path(out) / "metrics.jsonl").open("w") as fh:
            for e, s in enumerate(epochs[w]):
                fh.write(json.dumps(_epoch(e, s, steps=40)) + "\n")
        return {"stages": {"train": {"memory_per_process": {"param_bytes": [2**20 // w] * w,
                                                                 "optimizer_bytes": [2**21 // w] * w}}}}

    monkeypatch.setattr(scale, "train", fake_train)
    lines: list[str] = []
    rows = scale.run(report=lines.append, models=("mf",), quick=True, overrides=("trainer.threads=1",))
    assert [r["workers"] for r in rows] == [1, 2]
    assert rows[0]["epoch_seconds"] == pytest.approx(1.0) and rows[1]["epoch_seconds"] == pytest.approx(0.8)
    assert rows[0]["speedup"] == pytest.approx(1.0) and rows[1]["speedup"] == pytest.approx(1.25)
    assert rows[0]["warmup_epoch_seconds"] == pytest.approx(12.0)
    assert all(r["startup_seconds"] is not None and r["startup_seconds"] >= 0 for r in rows)
    assert rows[1]["param_bytes"] == [2**19, 2**19]
    json.dumps(rows)  # what --json writes
    for c in calls:  # --quick: synthetic data, enough epochs and steps for a steady state; validation once
        assert {"dataset=synthetic", f"trainer.epochs={scale.QUICK_EPOCHS}", f"trainer.batch_size={scale.QUICK_BATCH}",
                f"trainer.eval_every={scale.QUICK_EPOCHS}", "trainer.threads=1"} <= set(c)
    assert any("1.25x" in line and "steady state" in line for line in lines)
    with pytest.raises(ValueError, match="more epochs"):
        scale.run(report=lines.append, epochs=1, warmup_epochs=1)
