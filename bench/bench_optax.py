"""What watching a JAX model costs: a jitted optax step with and without biasmon.optax_monitor, A/B interleaved.

    python bench/bench_optax.py [--reps 7] [--models mlp16,mlp784] [--every 1,32] [--ordered]

For each model and each `every`, each repetition trains `steps` steps of one jitted train step (forward,
backward, tx.update, apply_updates) with the optimizer wrapped by biasmon.optax_monitor.monitor(every=k),
next to a run of the same steps with the bare optimizer (bare first in even repetitions, second in odd
ones); with --ordered, each `every` also with monitor(ordered=True) (the io_callback way). Both step functions are compiled (and run once) before any timing; a run ends when its last step
and, monitored, its last line are done (block_until_ready, jax.effects_barrier). Times are the process's
CPU time (time.process_time: every thread's work, XLA's and the callback's, and not the time spent
waiting for a core on a shared machine) and wall time. A figure is the median over repetitions of the
ratio (time with) / (time without) - 1 of a pair of neighbouring runs. Prints one line per model and every:

    overhead optax <model>: <percent>% (every=k[, ordered]; wall <percent>%; ...)

Models (CPU, float32): mlp16, the tests' 2-16-16-1 tanh MLP at batch 32, adam; mlp784, a 784-512-512-10
ReLU MLP at batch 128, softmax cross-entropy, sgd with momentum 0.9.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import biasmon  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import optax

from biasmon.optax_monitor import monitor


def mlp(key, sizes):
    params = []
    for n, m in zip(sizes[:-1], sizes[1:]):
        key, k = jax.random.split(key)
        params.append({"w": jax.random.normal(k, (n, m)) * jnp.sqrt(2.0 / n), "b": jnp.zeros(m)})
    return params


def forward(params, x, act):
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def make(name: str):
    """(params, optimizer, batch (x, y), loss function, steps per timed run) of a benchmark model."""
    key = jax.random.PRNGKey(0)
    if name == "mlp16":
        x = jax.random.uniform(key, (32, 2)) * 3 - 1.5
        y = jnp.sin(2 * x[:, :1]) + 0.5 * x[:, 1:] ** 2
        loss = lambda p, x, y: jnp.mean((forward(p, x, jnp.tanh) - y) ** 2)  # noqa: E731
        return mlp(key, (2, 16, 16, 1)), lambda: optax.adam(0.01), (x, y), loss, 2000
    if name == "mlp784":
        x = jax.random.normal(key, (128, 784))
        y = jax.random.randint(key, (128,), 0, 10)
        loss = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
            forward(p, x, jax.nn.relu), y).mean()
        return mlp(key, (784, 512, 512, 10)), lambda: optax.sgd(0.01, momentum=0.9), (x, y), loss, 200
    raise SystemExit(f"unknown model {name!r}: mlp16, mlp784")


def runner(params, tx, batch, loss_fn):
    """A function running n steps of the jitted train step from the initial params (compiled here)."""
    state0 = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    def run(n):
        p, s = params, state0
        for _ in range(n):
            p, s, loss = step(p, s)
        loss.block_until_ready()
        jax.effects_barrier()

    run(1)
    return run


def timed(run, steps: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    run(steps)
    return time.process_time() - cpu, time.perf_counter() - wall


def bench(name: str, every: int, ordered: bool, reps: int, folder: str) -> None:
    params, opt, batch, loss_fn, steps = make(name)
    bare = runner(params, opt(), batch, loss_fn)
    tx = monitor(opt(), os.path.join(folder, f"{name}-{every}-{ordered}.jsonl"), every=every, ordered=ordered)
    watched = runner(params, tx, batch, loss_fn)
    cpu, wall = [], []
    for rep in range(reps):
        order = (bare, watched) if rep % 2 == 0 else (watched, bare)
        times = {id(f): timed(f, steps) for f in order}
        cpu.append(times[id(watched)][0] / times[id(bare)][0] - 1)
        wall.append(times[id(watched)][1] / times[id(bare)][1] - 1)
    tx.close()
    step_ms = 1e3 * statistics.median(timed(bare, steps)[1] for _ in range(3)) / steps
    print(f"overhead optax {name}: {100 * statistics.median(cpu):.1f}% (every={every}{', ordered' if ordered else ''}; wall "
          f"{100 * statistics.median(wall):.1f}%; cpu pairs {min(cpu) * 100:.0f}% to {max(cpu) * 100:.0f}%; "
          f"{reps} pairs of {steps} steps; a bare step {step_ms:.3f} ms wall)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--models", default="mlp16,mlp784")
    parser.add_argument("--every", default="1,32")
    parser.add_argument("--ordered", action="store_true", help="also time monitor(ordered=True)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            for every in (int(k) for k in args.every.split(",")):
                for ordered in (False, True) if args.ordered else (False,):
                    bench(name, every, ordered, args.reps, folder)


if __name__ == "__main__":
    main()
