"""torch.optim's SGD (momentum 0.9) and Adam, applied to stacked parameters with per-run hyper-parameters.

Every parameter carries a leading run dimension; learning rate and weight decay are per-run
tensors broadcast over it, so one update costs a few kernels per parameter whatever the number of
runs. The update follows torch.optim's single-tensor code path op by op, written with addcmul
where torch uses a scalar alpha, so on CPU it matches torch bit for bit (tests/test_stacked.py), and each run's state converts to and from the `state_dict()` of the
torch optimizer that `training.make_optimizer` builds, so a run can move between single-run and
stacked training (resume).
"""
from __future__ import annotations

import torch

MOMENTUM = 0.9  # SGD momentum used by every run (training.make_optimizer)
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam defaults


def _per_run(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(n,) values shaped to broadcast over a stacked tensor like `like`."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class StackedOptimizer:
    """Per-run SGD or Adam over named stacked parameters (the wide model's `named_parameters()`)."""

    def __init__(self, kind: str, params: dict[str, torch.Tensor], lr: list[float], weight_decay: list[float]):
        if kind not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {kind!r}")
        self.kind, self.params = kind, params
        first = next(iter(params.values()))
        self.lr = torch.tensor(lr, dtype=torch.float64)  # Python floats in torch.optim, cast like its scalars
        self.weight_decay = torch.tensor(weight_decay, dtype=first.dtype, device=first.device)
        self.uses_weight_decay = any(wd != 0 for wd in weight_decay)
        self.step_count = torch.zeros(len(lr), dtype=torch.int64)  # per run, on CPU (bias corrections)
        names = ("momentum_buffer",) if kind == "sgd" else ("exp_avg", "exp_avg_sq")
        self.state = {name: {k: torch.zeros_like(p) for k, p in params.items()} for name in names}

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        like = self.weight_decay
        if self.kind == "sgd":
            neg_lr = (-self.lr).to(like)
        else:
            (beta1, beta2), steps = BETAS, self.step_count.double()
            step_size = (self.lr / (1 - beta1 ** steps)).to(like)
            bias_correction2_sqrt = ((1 - beta2 ** steps) ** 0.5).to(like)
        for key, p in self.params.items():
            grad = p.grad
            if self.uses_weight_decay:
                grad = torch.addcmul(grad, p, _per_run(self.weight_decay, p))  # grad.add(p, alpha=wd)
            if self.kind == "sgd":
                buf = self.state["momentum_buffer"][key]
                buf.mul_(MOMENTUM).add_(grad)  # torch starts the buffer at grad: 0.9 * 0 + grad is exact
                p.addcmul_(buf, _per_run(neg_lr, p))  # p.add_(buf, alpha=-lr)
            else:
                exp_avg, exp_avg_sq = self.state["exp_avg"][key], self.state["exp_avg_sq"][key]
                exp_avg.lerp_(grad, 1 - BETAS[0])
                exp_avg_sq.mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
                denom = (exp_avg_sq.sqrt() / _per_run(bias_correction2_sqrt, p)).add_(EPS)
                p.sub_(_per_run(step_size, p) * exp_avg / denom)

    def keep_runs(self, index: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Keep the runs at `index` (after the model's `keep_runs`, whose new parameters are given)."""
        cpu_index = index.cpu()
        self.params = params
        self.lr, self.step_count = self.lr[cpu_index], self.step_count[cpu_index]
        self.weight_decay = self.weight_decay[index]
        self.state = {name: {k: v[index].contiguous() for k, v in per.items()} for name, per in self.state.items()}

    def export_runs(self, templates: list[dict]) -> list[dict]:
        """Every run's state as a torch optimizer `state_dict()` on CPU; templates: each run's fresh one."""
        cpu = {name: {k: v.detach().cpu() for k, v in per.items()} for name, per in self.state.items()}
        exported = []
        for r, template in enumerate(templates):
            steps, state = int(self.step_count[r]), {}
            if steps > 0:
                for i, key in enumerate(self.params):
                    state[i] = {name: per[key][r].clone() for name, per in cpu.items()}
                    if self.kind == "adam":
                        state[i] = {"step": torch.tensor(float(steps)), **state[i]}
            exported.append({"state": state, "param_groups": template["param_groups"]})
        return exported

    def load_run_state(self, r: int, saved: dict) -> None:
        """Set run r's state from a torch optimizer `state_dict()` (params in `named_parameters` order)."""
        for i, key in enumerate(self.params):
            entry = saved["state"].get(i)
            if entry is None:
                continue
            for name, per in self.state.items():
                per[key][r] = entry[name].to(per[key].device)
            if "step" in entry:
                self.step_count[r] = int(entry["step"])
            else:
                self.step_count[r] = max(int(self.step_count[r]), 1)
