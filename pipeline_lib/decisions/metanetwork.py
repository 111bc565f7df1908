"""A graph metanetwork: ranks the runs of a study by their final accuracy from the compact rolled
graphs of epochs 0 and k (`graphs.compact`), the early learning curve and the hyper-parameters.

Architecture (plain torch; messages summed with `index_add_`):
- node inputs: sign-log of the stored node properties (NaN -> 0), the node's relative depth and
  whether it is an input or an output node; edge inputs: the log of the kept edge weight and its
  log relative to the snapshot's mean kept weight;
- `ROUNDS` rounds of message passing, forward (into a node from its sources) and backward (from
  its targets), each message a linear map of the neighbour gated by a function of the edge, mean
  aggregated: every operation is per node or a sum over edges, so relabelling the channels of a
  layer (nodes and edges alike) changes nothing after pooling;
- per snapshot, mean and max pooling over nodes; per run [e_k, e_k - e_0] of the two snapshots'
  embeddings (zeros and a flag where a snapshot has no graph, a diverged run);
- joined with the run features (`run_features`: within-study percentiles of train/test loss and
  accuracy at epochs 1..k and of the hyper-parameters), a small MLP gives the score.
Training: pairwise logistic loss over the pairs of runs of one study (a random batch of one training
study per step), each pair weighted by its difference of final-accuracy percentile. Only the order
within a study is learned, so the study's scale (digits vs Fashion-MNIST, LeNet vs ResNet) is not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from scipy.stats import rankdata
from torch import nn

from ..graphs.compact import NODE_FEATURES, CompactGraph

CURVE_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
WORSE_WHEN_HIGH = ("test_loss", "train_loss")
HPARAMS = ("lr", "weight_decay", "dropout", "label_noise", "width", "depth", "batch_size")
NODE_INPUTS = len(NODE_FEATURES) + 3
EDGE_INPUTS = 2


@dataclass(frozen=True)
class MetaConfig:
    """Fixed before any evaluation (not tuned on held-out studies)."""

    hidden: int = 16
    rounds: int = 2
    steps: int = 150
    runs_per_step: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    use_graphs: bool = True  # False: the same model without its graph input (an ablation)


@dataclass
class GraphTensors:
    """One snapshot's model inputs."""

    x: torch.Tensor          # (n, NODE_INPUTS)
    src: torch.Tensor        # (E,)
    dst: torch.Tensor        # (E,)
    edge: torch.Tensor       # (E, EDGE_INPUTS)


def graph_tensors(graph: CompactGraph) -> GraphTensors:
    """Model inputs of a compact graph (see the module docstring)."""
    feats = np.nan_to_num(graph.features.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    depth = graph.layer / max(1, graph.layer.max())
    x = np.column_stack([np.sign(feats) * np.log1p(np.abs(feats)), depth, graph.layer == 0,
                         graph.layer == graph.layer.max()])
    logw = np.log(np.maximum(graph.weight.astype(np.float64), 1e-12))
    edge = np.column_stack([logw, logw - logw.mean()]) if len(logw) else np.zeros((0, EDGE_INPUTS))
    return GraphTensors(torch.tensor(x, dtype=torch.float32), torch.from_numpy(graph.src),
                        torch.from_numpy(graph.dst), torch.tensor(edge, dtype=torch.float32))


def _percentiles(values: np.ndarray) -> np.ndarray:
    return (rankdata(values) - 0.5) / len(values)


def run_features(runs: pl.DataFrame, curves: pl.DataFrame, k: int) -> tuple[np.ndarray, list[str]]:
    """(matrix with one row per run of `runs`, columns): within-study percentiles of each curve metric
    at epochs 1..k (a missing or non-finite value, a diverged run, ranks worst) and of the
    hyper-parameters, plus optimizer and schedule flags. Percentiles are taken among the given runs
    of each study, as when a new study is scored."""
    wide = runs.select("run_id", "study", *HPARAMS, "optimizer", "lr_schedule")
    columns = []
    for epoch in range(1, k + 1):
        at = curves.filter(pl.col("epoch") == epoch).select("run_id", *[pl.col(m).alias(f"{m}@{epoch}")
                                                                         for m in CURVE_METRICS])
        wide = wide.join(at, on="run_id", how="left")
        columns += [f"{m}@{epoch}" for m in CURVE_METRICS]
    out = np.zeros((wide.height, len(columns) + len(HPARAMS) + 2))
    studies = wide["study"].to_numpy()
    for j, name in enumerate(columns + list(HPARAMS)):
        raw = wide[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        worst = np.inf if name.split("@")[0] in WORSE_WHEN_HIGH else -np.inf
        value = np.where(np.isfinite(raw), raw, worst)
        if name.split("@")[0] in WORSE_WHEN_HIGH:
            value = -value
        for study in np.unique(studies):
            rows = studies == study
            out[rows, j] = _percentiles(value[rows])
    out[:, -2] = (wide["optimizer"] == "adam").to_numpy()
    out[:, -1] = (wide["lr_schedule"].cast(pl.Utf8).str.contains("constant").not_()).to_numpy()
    return out, columns + list(HPARAMS) + ["adam", "scheduled"]


def _mean_into(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    total = torch.zeros(n, values.shape[1]).index_add_(0, index, values)
    count = torch.zeros(n).index_add_(0, index, torch.ones(len(index))).clamp(min=1)
    return total / count[:, None]


class MessagePassing(nn.Module):
    """One round: h_v <- relu(W_s h_v + mean_{u->v} g(e) * W_f h_u + mean_{v->u} g(e) * W_b h_u)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.own, self.to_target, self.to_source = (nn.Linear(hidden, hidden) for _ in range(3))
        self.gate = nn.Sequential(nn.Linear(EDGE_INPUTS, hidden), nn.Sigmoid())

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        gate = self.gate(edge)
        into = _mean_into(gate * self.to_target(h)[src], dst, len(h))
        back = _mean_into(gate * self.to_source(h)[dst], src, len(h))
        return torch.relu(self.own(h) + into + back)


class GraphEncoder(nn.Module):
    """Snapshot graphs (batched: node -> graph index) -> (graphs, 2 x hidden) mean and max pooled."""

    def __init__(self, hidden: int, rounds: int):
        super().__init__()
        self.embed = nn.Linear(NODE_INPUTS, hidden)
        self.rounds = nn.ModuleList(MessagePassing(hidden) for _ in range(rounds))

    def forward(self, x, src, dst, edge, graph_of_node, n_graphs) -> torch.Tensor:
        h = torch.relu(self.embed(x))
        for layer in self.rounds:
            h = layer(h, src, dst, edge)
        mean = _mean_into(h, graph_of_node, n_graphs)
        index = graph_of_node[:, None].expand(-1, h.shape[1])
        top = torch.zeros(n_graphs, h.shape[1]).scatter_reduce(0, index, h, reduce="amax", include_self=False)
        return torch.cat([mean, top], dim=1)


class MetaNetwork(nn.Module):
    """Score of a run from its two snapshot graphs (epochs 0 and k) and its run features."""

    def __init__(self, n_run_features: int, config: MetaConfig):
        super().__init__()
        self.encoder = GraphEncoder(config.hidden, config.rounds)
        self.use_graphs = config.use_graphs
        width = (2 * (2 * config.hidden) + 2 if config.use_graphs else 0) + n_run_features
        self.head = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1))

    def embed(self, graphs: list[GraphTensors | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, present flags) of a list of snapshot graphs; None (no graph) embeds as zeros."""
        present = [i for i, g in enumerate(graphs) if g is not None]
        out = torch.zeros(len(graphs), 2 * self.encoder.embed.out_features)
        if present:
            parts = [graphs[i] for i in present]
            sizes = torch.tensor([len(g.x) for g in parts])
            offset = torch.cumsum(sizes, 0) - sizes
            edges = torch.tensor([len(g.src) for g in parts])
            shift = torch.repeat_interleave(offset, edges)
            pooled = self.encoder(torch.cat([g.x for g in parts]), torch.cat([g.src for g in parts]) + shift,
                                  torch.cat([g.dst for g in parts]) + shift, torch.cat([g.edge for g in parts]),
                                  torch.repeat_interleave(torch.arange(len(parts)), sizes), len(parts))
            out[present] = pooled
        flags = torch.tensor([g is not None for g in graphs], dtype=torch.float32)
        return out, flags

    def forward(self, first: list[GraphTensors | None], last: list[GraphTensors | None],
                features: torch.Tensor) -> torch.Tensor:
        if not self.use_graphs:
            return self.head(features).squeeze(1)
        e0, f0 = self.embed(first)
        ek, fk = self.embed(last)
        return self.head(torch.cat([ek, ek - e0, f0[:, None], fk[:, None], features], dim=1)).squeeze(1)


@dataclass
class RunSet:
    """The runs a model reads: per run its graphs at epochs 0 and k, its features, study and target."""

    run_ids: list[str]
    studies: np.ndarray
    first: list[GraphTensors | None]
    last: list[GraphTensors | None]
    features: torch.Tensor
    target: np.ndarray  # within-study percentile of final accuracy (NaN where unknown)

    def subset(self, rows: np.ndarray) -> "RunSet":
        return RunSet([self.run_ids[i] for i in rows], self.studies[rows], [self.first[i] for i in rows],
                      [self.last[i] for i in rows], self.features[rows], self.target[rows])


def run_set(runs: pl.DataFrame, curves: pl.DataFrame, graphs: dict[tuple[str, int], GraphTensors], k: int,
            target: pl.DataFrame | None = None) -> RunSet:
    """A RunSet of `runs` (study, run_id, hyper-parameters) at k; `target` (run_id, percentile) if known."""
    runs = runs.sort("study", "run_id")
    features, _ = run_features(runs, curves, k)
    ids = runs["run_id"].to_list()
    y = (runs.select("run_id").join(target.select("run_id", "percentile"), on="run_id", how="left")["percentile"]
         .fill_null(np.nan).to_numpy() if target is not None else np.full(len(ids), np.nan))
    return RunSet(ids, runs["study"].to_numpy(), [graphs.get((r, 0)) for r in ids], [graphs.get((r, k)) for r in ids],
                  torch.tensor(features, dtype=torch.float32), y)


def pairwise_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over ordered pairs (i better than j) of |y_i - y_j| * log(1 + exp(-(s_i - s_j)))."""
    diff_y = target[:, None] - target[None, :]
    weight = diff_y.clamp(min=0)
    return (weight * nn.functional.softplus(-(scores[:, None] - scores[None, :]))).sum() / weight.sum().clamp(min=1e-9)


def fit(train: RunSet, config: MetaConfig = MetaConfig()) -> MetaNetwork:
    """A MetaNetwork trained on the runs of `train` (several studies), deterministic given config.seed."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = MetaNetwork(train.features.shape[1], config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    labelled = np.isfinite(train.target)
    by_study = [np.nonzero((train.studies == s) & labelled)[0] for s in np.unique(train.studies)]
    by_study = [rows for rows in by_study if len(rows) >= 2]
    model.train()
    for _ in range(config.steps):
        rows = by_study[rng.integers(len(by_study))]
        rows = np.sort(rng.choice(rows, size=min(config.runs_per_step, len(rows)), replace=False))
        batch = train.subset(rows)
        loss = pairwise_loss(model(batch.first, batch.last, batch.features), torch.tensor(batch.target, dtype=torch.float32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model: MetaNetwork, runs: RunSet, chunk: int = 64) -> np.ndarray:
    """The model's score of every run (higher: better final accuracy within its study)."""
    scores = [model(runs.first[i:i + chunk], runs.last[i:i + chunk], runs.features[i:i + chunk])
              for i in range(0, len(runs.run_ids), chunk)]
    return torch.cat(scores).numpy() if scores else np.zeros(0)
