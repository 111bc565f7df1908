"""Tuning a plain PyTorch loop with Optuna (TPE) and the project's triage pruner, against Optuna's
MedianPruner on the same seeds; prints trials pruned, epochs spent and the best value of each.

    .venv/bin/python examples/optuna_pytorch.py            # 3 seeds x 20 trials x 10 epochs per pruner

The pruner is `pipeline_lib.pruning.optuna_pruner.TriagePruner` with triage's keep rule of the demo
(specs/digits_triage.yaml: the best third at epoch 3) on the accuracy reported there: the i-Epoch
rule. With a registered predictor (`TriagePruner(keep, predictor=Predictor.load(...))` and
`pruner.observe(trial, epoch, model, history)` in the loop) it ranks on predicted final accuracy
instead; see README, "From your own training loop".
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import optuna
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from pipeline_lib.pruning.optuna_pruner import TriagePruner

EPOCHS = 10
PRUNERS = {"triage": ("triage (best 1/3 at epoch 3)", lambda: TriagePruner(keep=0.33, rungs=[3], min_trials=5)),
           "median": ("MedianPruner (Optuna defaults)", lambda: optuna.pruners.MedianPruner()),
           "none": ("no pruning (NopPruner)", lambda: optuna.pruners.NopPruner())}


def digits() -> tuple[torch.Tensor, ...]:
    """sklearn's 8x8 digits as 1x8x8 images in [0, 1], a fixed stratified 75/25 split."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, stratify=y, random_state=0)
    image = lambda a: torch.tensor(a, dtype=torch.float32).reshape(-1, 1, 8, 8)  # noqa: E731
    return image(x_train), torch.tensor(y_train), image(x_test), torch.tensor(y_test)


def small_cnn(channels: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * channels * 4, 10))


def objective(data: tuple[torch.Tensor, ...]):
    x_train, y_train, x_test, y_test = data

    def run(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.95)
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        batch_size = trial.suggest_categorical("batch_size", [32, 64, 128])
        channels = trial.suggest_categorical("channels", [4, 8, 16])
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        torch.manual_seed(trial.number)
        model = small_cnn(channels, dropout)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        order = torch.Generator().manual_seed(trial.number)
        accuracy = 0.0
        for epoch in range(1, EPOCHS + 1):
            model.train()
            for batch in torch.randperm(len(x_train), generator=order).split(batch_size):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    return run


def tune(pruner: optuna.pruners.BasePruner, seed: int, trials: int, data, storage: str | None) -> dict:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=pruner, storage=storage)
    study.optimize(objective(data), n_trials=trials)
    done = study.get_trials(deepcopy=False)
    return {"pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in done),
            "epochs": sum(max(t.intermediate_values, default=0) for t in done), "best": study.best_value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--storage", default=None, help="an Optuna RDB URL, e.g. sqlite:///optuna.db (default: memory)")
    parser.add_argument("--pruners", nargs="+", choices=sorted(PRUNERS), default=["triage", "median"],
                        help="default: %(default)s; `none` records every trial's whole curve, which "
                             "python -m flows.replay_optuna --storage URL races the pruners on")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # tiny convolutions: threads only wait on each other
    data = digits()
    pruners = {PRUNERS[name][0]: PRUNERS[name][1] for name in args.pruners}
    print(f"{args.trials} TPE trials of up to {EPOCHS} epochs per seed ({args.trials * EPOCHS} epochs without pruning)")
    print(f"{'pruner':32} {'seed':>4} {'pruned':>6} {'epochs':>6} {'best':>6} {'seconds':>7}")
    totals = {name: [] for name in pruners}
    for seed in args.seeds:
        for name, make in pruners.items():
            start = time.perf_counter()
            result = tune(make(), seed, args.trials, data, args.storage)
            totals[name].append(result)
            print(f"{name:32} {seed:>4} {result['pruned']:>6} {result['epochs']:>6} {result['best']:>6.3f} "
                  f"{time.perf_counter() - start:>7.1f}")
    for name, results in totals.items():
        print(f"{name:32} mean {np.mean([r['pruned'] for r in results]):>6.1f} "
              f"{np.mean([r['epochs'] for r in results]):>6.1f} {np.mean([r['best'] for r in results]):>6.3f}")


if __name__ == "__main__":
    main()
