"""benchmarks/bench_stage2.py times the Stage-2 step piece by piece; the pieces must stay the model's own forward.

Cheap (tiny size, no official code): each UMT configuration's pieces give the four losses of
`UMTForVideoTextRetrieval.forward` on the same inputs, mask, negatives and MLM corruption, and one timed step runs.
"""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stage2.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_stage2", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config", ["umt-fp32", "umt-amp-cpubf16"])
def test_stage2_bench_pieces_reproduce_the_forward(bench, config):
    model, teacher, fns, check = bench.build_umt(config, bench.SIZES["tiny"], 2)
    diffs = check()
    assert set(diffs) == set(bench.TERMS)
    assert max(diffs.values()) <= 1e-5, diffs
    state = {}
    for phase in ("teacher", "video", "text", "vtc", "vtm", "mlm", "uta"):
        state = fns[phase](state)
    loss = sum(state["loss_" + term] for term in bench.TERMS)
    loss.backward()
    encoder = [p for n, p in model.named_parameters() if n.startswith("vision_model.encoder.")]
    assert encoder and all(p.grad is not None for p in encoder)
    assert all(p.grad is None for p in teacher.parameters())
