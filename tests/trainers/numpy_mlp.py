"""An example of "someone's own trainer": a plain NumPy 2-16-16-1 tanh MLP, full batch, MSE, written
without biasmon's core, logging each step with biasmon's StreamWriter (or, with --raw, with print()).

    python numpy_mlp.py OUT.jsonl --update sgd|momentum|adam|loss_scaled|sign|sign_loss|sign_inverse|
                                           sign_gap|frozen|random|exploding|diverging|wrong_grad
                        [--flip LAYER] [--steps N] [--every K] [--sum-every K] [--no-grads] [--raw] [--fd-check]
                        [--batch B [--shuffle]]

Updates: sgd, momentum (0.9), adam are correct optimizers; loss_scaled multiplies the SGD step by the
loss; sign* move the biases along +gradient (all layers, or only --flip LAYER), scaled by nothing, the
loss, 1/(loss+eps) or the train/val gap; frozen never moves the biases; random moves them by a step of
the right size in a random direction; exploding uses a bias learning rate far too large; diverging a
learning rate too large for everything; wrong_grad back-propagates without tanh's derivative in the
hidden layers and descends along that wrong gradient (with --fd-check the finite-difference check
catches it). --every K logs every K-th step with that step's gradient; --sum-every K logs through
StreamWriter(every=K) (one line per K steps, gradients summed). --shuffle draws the minibatches of an epoch
without replacement (a new permutation each epoch) instead of independently at each step.
"""
import argparse
import json

import numpy as np

UPDATES = ("sgd", "momentum", "adam", "loss_scaled", "sign", "sign_loss", "sign_inverse", "sign_gap",
           "frozen", "random", "exploding", "diverging", "wrong_grad")
LAYERS = ("hidden1", "hidden2", "output")


def data(rng, n=48):
    x = rng.uniform(-1.5, 1.5, size=(n, 2))
    y = (np.sin(2 * x[:, 0]) * 0.8 + 0.5 * x[:, 1] ** 2 - 0.3)[:, None] + rng.normal(0, 0.05, size=(n, 1))
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def init(rng, sizes=(2, 16, 16, 1)):
    ws = [rng.normal(0, 1 / np.sqrt(a), size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, 0.3, size=b) for b in sizes[1:]]
    return ws, bs


def forward(ws, bs, x):
    acts, zs = [x], []
    for i, (w, b) in enumerate(zip(ws, bs)):
        z = acts[-1] @ w + b
        zs.append(z)
        acts.append(np.tanh(z) if i < len(ws) - 1 else z)
    return zs, acts


def loss_of(ws, bs, x, y):
    out = forward(ws, bs, x)[1][-1]
    return float(np.mean((out - y) ** 2))


def backward(ws, bs, x, y, wrong=False):
    zs, acts = forward(ws, bs, x)
    out = acts[-1]
    loss = float(np.mean((out - y) ** 2))
    delta = 2.0 * (out - y) / out.size
    gw, gb = [None] * len(ws), [None] * len(ws)
    for i in reversed(range(len(ws))):
        gw[i] = acts[i].T @ delta
        gb[i] = delta.sum(axis=0)
        if i:
            delta = delta @ ws[i].T
            if not wrong:
                delta = delta * (1 - acts[i] ** 2)
    return loss, gw, gb


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--update", choices=UPDATES, default="sgd")
    p.add_argument("--flip", choices=LAYERS, help="sign bug on this layer only")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=1, help="log every k-th step")
    p.add_argument("--no-grads", action="store_true")
    p.add_argument("--raw", action="store_true", help="write the lines with print() instead of StreamWriter")
    p.add_argument("--fd-check", action="store_true", help="give StreamWriter loss_at for the gradient check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=0, help="minibatch size (0: full batch)")
    p.add_argument("--shuffle", action="store_true", help="epochs of minibatches drawn without replacement")
    p.add_argument("--sum-every", type=int, default=1, help="StreamWriter(every=K): gradients summed per line")
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    (x, y), (xv, yv) = data(rng)
    ws, bs = init(rng)
    lr = {"adam": 0.01, "momentum": 0.02, "diverging": 3.0}.get(a.update, 0.1)
    bias_lr = 40.0 if a.update == "exploding" else lr
    vel_w = [np.zeros_like(w) for w in ws]
    vel_b = [np.zeros_like(b) for b in bs]
    m = [np.zeros_like(b) for b in ws + bs]
    v = [np.zeros_like(b) for b in ws + bs]

    def loss_at(biases):
        return loss_of(ws, [biases[n] for n in LAYERS], x, y)

    if a.raw:
        handle = open(a.out, "w")
        log = None
    else:
        from biasmon import StreamWriter
        log = StreamWriter(a.out, loss_at=loss_at if a.fd_check else None, check_every=50,
                           **({"every": a.sum_every} if a.sum_every > 1 else {}))
    order = np.arange(0)
    for t in range(a.steps):
        if a.batch and a.shuffle:
            if order.size < a.batch:
                order = rng.permutation(len(x))
            pick, order = order[:a.batch], order[a.batch:]
            loss, gw, gb = backward(ws, bs, x[pick], y[pick], wrong=a.update == "wrong_grad")
        elif a.batch:
            pick = rng.choice(len(x), size=a.batch, replace=False)
            loss, gw, gb = backward(ws, bs, x[pick], y[pick], wrong=a.update == "wrong_grad")
        else:
            loss, gw, gb = backward(ws, bs, x, y, wrong=a.update == "wrong_grad")
        val = loss_of(ws, bs, xv, yv)
        if t % a.every == 0:
            biases = {n: b.copy() for n, b in zip(LAYERS, bs)}
            grads = None if a.no_grads else {n: g for n, g in zip(LAYERS, gb)}
            if log is not None:
                log.step(t, loss, biases=biases, bias_grads=grads, val_loss=val)
            else:
                line = {"step": t, "loss": loss, "val_loss": val, "biases": {n: b.tolist() for n, b in biases.items()}}
                if grads is not None:
                    line["bias_grads"] = {n: g.tolist() for n, g in grads.items()}
                print(json.dumps(line), file=handle, flush=True)
        if not np.isfinite(loss):
            break
        if a.update == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-8
            steps = []
            for i, g in enumerate(gw + gb):
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                steps.append(-lr * (m[i] / (1 - b1 ** (t + 1))) / (np.sqrt(v[i] / (1 - b2 ** (t + 1))) + eps))
            uw, ub = steps[:len(ws)], steps[len(ws):]
        elif a.update == "momentum":
            vel_w = [0.9 * vw + g for vw, g in zip(vel_w, gw)]
            vel_b = [0.9 * vb + g for vb, g in zip(vel_b, gb)]
            uw, ub = [-lr * d for d in vel_w], [-lr * d for d in vel_b]
        else:
            uw = [-lr * g for g in gw]
            ub = [-bias_lr * g for g in gb]
        gap = max(0.0, val - loss)
        scale = {"loss_scaled": loss, "sign_loss": loss, "sign_inverse": 1 / (loss + 1e-2),
                 "sign_gap": 10 * gap}.get(a.update, 1.0)
        ub = [u * scale for u in ub]
        if a.update.startswith("sign"):
            ub = [u if (a.flip and n != a.flip) else -u for n, u in zip(LAYERS, ub)]
        elif a.update == "frozen":
            ub = [np.zeros_like(u) for u in ub]
        elif a.update == "random":
            ub = [np.linalg.norm(u) * r / np.linalg.norm(r) for u, r in ((u, rng.normal(size=u.shape)) for u in ub)]
        with np.errstate(all="ignore"):
            ws = [w + u for w, u in zip(ws, uw)]
            bs = [b + u for b, u in zip(bs, ub)]
    if log is not None:
        log.close()
    else:
        handle.close()


if __name__ == "__main__":
    main()
