"""TorchMonitor under FSDP2 (`fully_shard`) on the CPU: two processes (gloo, a file store), the parameters,
their gradients and Adam's state DTensors sharded over them (tests/trainers/fsdp_trainer.py). The stream
rank 0 writes is the unsharded run's: the same layer names and sizes, the same sums (float64: within
rounding), the same counts (the largest g^2 all-reduced before they are taken); `check` judges it alike:
ok when correct, uphill on exactly the biases with the sign bug. The same under HSDP (fully_shard on a 2x2
mesh, four processes): the sums are added over the shard dim's group only (over all four, each would count
twice), and the mesh's first rank alone writes. Skipped without torch.distributed, gloo or fully_shard.
FSDP1 (FullyShardedDataParallel) runs on the CPU too but is refused, as are DTensors sharded otherwise."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available in this build", allow_module_level=True)
try:
    from torch.distributed.fsdp import fully_shard  # noqa: F401
except ImportError:
    pytest.skip("this torch has no FSDP2 (torch.distributed.fsdp.fully_shard)", allow_module_level=True)

from biasmon.core.check import check_stream  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainers"))
import fsdp_trainer  # noqa: E402

pytestmark = pytest.mark.slow   # two processes spawned per run: about 7 s each (HSDP: four, about 15 s)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def verdicts(path):
    result = check_stream(path)
    return (result.exit, {n: d.verdict for n, d in result.layers.items()},
            {n: d.verdict for n, d in result.weights.items()})


def written(tmp_path):
    """The files the ranks wrote: rank 0's alone (the others were given OUT.rankN)."""
    return sorted(p.name for p in tmp_path.iterdir())


def assert_same_stream(sharded, reference):
    """A sharded run's stream (its lines) is the unsharded run's (within rounding; counts exactly)."""
    assert sharded[0] == reference[0]
    assert sharded[0]["layers"] == [{"name": "0", "size": 5}, {"name": "3", "size": 4}, {"name": "6", "size": 1}]
    assert sharded[0]["weights"] == [{"name": "0", "size": 15}, {"name": "3", "size": 20}, {"name": "6", "size": 4}]
    assert sharded[0]["averages"] == ["exp_avg"] and sharded[0]["every"] == 3
    assert [line["step"] for line in sharded[1:]] == [line["step"] for line in reference[1:]] == [0, 3, 6, 9]
    for got, want in zip(sharded[1:], reference[1:]):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-12)
        for key in ("bias_sums", "weight_sums"):
            assert list(got[key]) == list(want[key]) == ["0", "3", "6"]
            for layer in want[key]:
                g, w = np.array(got[key][layer], dtype=float), np.array(want[key][layer], dtype=float)
                assert g[[0, 5, 6]].tolist() == w[[0, 5, 6]].tolist()   # n, sig, agree: exactly
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=0)
    # rank 1's entries are not significant against rank 0's (counted alone, they would be)
    assert reference[1]["bias_sums"]["0"][5] == 3 and reference[1]["weight_sums"]["3"][5] == 6


@pytest.mark.parametrize("chunk", [None, 4], ids=["flat", "chunks"])   # the small and the larger models' way
def test_fsdp2_sums_are_the_unsharded_runs(tmp_path, chunk):
    fsdp_trainer.train(tmp_path / "fsdp.jsonl", world=2, steps=12, every=3, chunk=chunk)
    fsdp_trainer.train(tmp_path / "one.jsonl", world=1, steps=12, every=3, chunk=chunk)
    assert written(tmp_path) == ["fsdp.jsonl", "one.jsonl"]
    assert_same_stream(lines(tmp_path / "fsdp.jsonl"), lines(tmp_path / "one.jsonl"))


@pytest.mark.parametrize("chunk", [None, 4], ids=["flat", "chunks"])
def test_hsdp_sums_are_the_unsharded_runs(tmp_path, chunk):
    """2 replicas x 2 shards: adding over all four ranks would double every sum (n too: the sizes)."""
    fsdp_trainer.train(tmp_path / "hsdp.jsonl", world=4, replicas=2, steps=12, every=3, chunk=chunk)
    fsdp_trainer.train(tmp_path / "one.jsonl", world=1, steps=12, every=3, chunk=chunk)
    assert written(tmp_path) == ["hsdp.jsonl", "one.jsonl"]   # rank 2 (shard 0 of replica 1) wrote nothing
    assert_same_stream(lines(tmp_path / "hsdp.jsonl"), lines(tmp_path / "one.jsonl"))


def test_a_correct_fsdp2_run_checks_ok(tmp_path):
    fsdp_trainer.train(tmp_path / "fsdp.jsonl", world=2, steps=60)
    ok = {"0": "ok", "3": "ok", "6": "ok"}
    assert verdicts(tmp_path / "fsdp.jsonl") == (0, ok, ok)


def test_a_sign_bug_under_fsdp2_is_uphill_on_exactly_the_biases(tmp_path):
    fsdp_trainer.train(tmp_path / "fsdp.jsonl", world=2, steps=60, bias_bug=True)
    assert verdicts(tmp_path / "fsdp.jsonl") == \
        (1, {"0": "uphill", "3": "uphill", "6": "uphill"}, {"0": "ok", "3": "ok", "6": "ok"})


def test_a_correct_hsdp_run_checks_ok(tmp_path):
    fsdp_trainer.train(tmp_path / "hsdp.jsonl", world=4, replicas=2, steps=60)
    ok = {"0": "ok", "3": "ok", "6": "ok"}
    assert verdicts(tmp_path / "hsdp.jsonl") == (0, ok, ok)


def test_a_sign_bug_under_hsdp_is_uphill_on_exactly_the_biases(tmp_path):
    fsdp_trainer.train(tmp_path / "hsdp.jsonl", world=4, replicas=2, steps=60, bias_bug=True)
    assert verdicts(tmp_path / "hsdp.jsonl") == \
        (1, {"0": "uphill", "3": "uphill", "6": "uphill"}, {"0": "ok", "3": "ok", "6": "ok"})


REFUSED = """
import os, sys, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FullyShardedDataParallel
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from biasmon.core.errors import BiasmonError
from biasmon.torch_monitor import TorchMonitor
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
line = init_device_mesh("cpu", (1,))
square = init_device_mesh("cpu", (1, 1), mesh_dim_names=("replicate", "shard"))
other = init_device_mesh("cpu", (1, 1), mesh_dim_names=("a", "b"))

def linear(weight, bias):   # each a (mesh, placements) or None: a plain tensor
    net = torch.nn.Linear(2, 3)
    for name, spec in (("weight", weight), ("bias", bias)):
        if spec is not None:
            t = getattr(net, name).detach()
            t = DTensor.from_local(t, *spec) if Partial() in spec[1] else distribute_tensor(t, *spec)
            setattr(net, name, torch.nn.Parameter(t))
    return net

hsdp = (square, [Replicate(), Shard(0)])
nets = [linear(None, (line, [Replicate()])),              # a replicated DTensor beside a plain tensor
        linear(hsdp, (other, [Replicate(), Shard(0)])),    # two meshes
        linear(hsdp, (square, [Shard(0), Replicate()])),   # sharded on different mesh dims
        linear(hsdp, (square, [Shard(0), Shard(0)])),      # sharded on two mesh dims
        linear(hsdp, (square, [Replicate(), Partial()])),  # a partial sum
        FullyShardedDataParallel(torch.nn.Linear(2, 3), use_orig_params=True, device_id=torch.device("cpu"))]
for net in nets:
    try:
        TorchMonitor(net, sys.argv[2], torch.optim.SGD(net.parameters(), lr=0.1))
    except BiasmonError as err:
        print(err)
net = linear(hsdp, hsdp)   # HSDP's placements taken; the first rank writes
monitor = TorchMonitor(net, sys.argv[2], torch.optim.SGD(net.parameters(), lr=0.1))
print("hsdp", monitor.group is square.get_group("shard"), monitor._writes)   # on 1x1, both dims' group is one
monitor.close()
net = linear(None, (line, [Replicate()]))   # refused as it is, taken with process_group=
monitor = TorchMonitor(net, sys.argv[2], torch.optim.SGD(net.parameters(), lr=0.1), process_group=dist.group.WORLD)
print("given", monitor.group is dist.group.WORLD, monitor._writes)
monitor.close()
sys.stdout.flush()
os._exit(0)
"""


def test_what_the_monitor_cannot_add_up_is_refused_in_one_line(tmp_path):
    """A replicated DTensor beside a plain tensor (adding every rank's sums would count them wrong), DTensors
    on two meshes, sharded on different or on two mesh dims, a Partial, and FSDP1 (its parameters are flat
    views of a shard, empty on a rank that holds none of one: no `.grad` there); taken: HSDP's placements on
    a 2-D mesh, and anything with process_group= (one process: that the group is the shard dim's, not the
    world's, the HSDP runs above show)."""
    out = subprocess.run([sys.executable, "-c", REFUSED, str(tmp_path / "store"), str(tmp_path / "run.jsonl")],
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert len(out) == 8
    allowed = ("; allowed: every parameter a DTensor on one device mesh, Shard on the same one mesh dim and "
               "Replicate on any other, as FSDP2's fully_shard makes them (FSDP: (Shard(0),), HSDP: (Replicate(), "
               "Shard(0))), or give process_group=, whose ranks hold disjoint shards")
    wrong = ["1 of 2 parameters are not DTensors", "the DTensors are on 2 device meshes",
             "placements (Replicate(), Shard(dim=0)), (Shard(dim=0), Replicate())",
             "placements (Replicate(), Shard(dim=0)), (Shard(dim=0), Shard(dim=0))",
             "placements (Replicate(), Partial(sum)), (Replicate(), Shard(dim=0))"]
    assert out[:5] == [f"TorchMonitor: cannot add up the shards' sums: {w}{allowed}" for w in wrong]
    assert out[5].startswith("TorchMonitor: FSDP1's FullyShardedDataParallel is not supported")
    assert out[6:] == ["hsdp True True", "given True True"]
