import heapq

from pipeline_lib.placement import (BATCHES_PER_WORKER, MIN_GROUP_RUNS, POOL_MIN_RUNS, available_cores, plan_batches,
                                    plan_designs, plan_groups, run_cost)
from pipeline_lib.spec import expand_runs, load_study
from tests.conftest import write_spec


def _runs(tmp_path, samples=5, **sweep):
    spec = write_spec(tmp_path, samples=samples, widths=[0.5, 1.0], seeds=[0, 1, 2], sweep={"lr": {"log_uniform": [0.01, 0.1]}, **sweep})
    return expand_runs(load_study(spec))


def test_groups_share_their_key_and_are_cut_evenly(tmp_path):
    runs = _runs(tmp_path, batch_size=[32, 64], optimizer=["sgd", "adam"])
    groups = plan_groups(runs, stack_size=4, slots=1)
    assert sorted(r.run_id for g in groups for r in g) == sorted(r.run_id for r in runs)
    kinds = {}
    for group in groups:
        keys = {(r.group_key, r.dataset) for r in group}
        assert len(keys) == 1 and 1 <= len(group) <= 4
        kinds.setdefault(keys.pop(), []).append(len(group))
    assert len(kinds) == len({(r.group_key, r.dataset) for r in runs}) > 1
    for sizes in kinds.values():  # as few groups as stack_size allows, near-equal sizes
        assert len(sizes) == -(-sum(sizes) // 4) and max(sizes) - min(sizes) <= 1


def _makespan(groups, slots):
    """When the last of `slots` workers finishes, taking groups in order as they free up (a process pool)."""
    finish = [0.0] * slots
    for group in groups:
        heapq.heapreplace(finish, finish[0] + sum(run_cost(r) for r in group))
    return max(finish)


def test_workers_finish_together_largest_groups_first(tmp_path):
    """The issue's study: two widths, one kind each. Two groups (one per width) left a core idle."""
    runs = _runs(tmp_path, samples=10)  # 30 runs per width
    for slots in (2, 4):
        groups = plan_groups(runs, stack_size=64, slots=slots)
        assert sorted(r.run_id for g in groups for r in g) == sorted(r.run_id for r in runs)
        assert all(len({(r.group_key, r.dataset) for r in g}) == 1 for g in groups)
        assert len(groups) > slots and min(len(g) for g in groups) >= min(MIN_GROUP_RUNS, len(runs) // slots)
        costs = [sum(run_cost(r) for r in g) for g in groups]
        assert costs == sorted(costs, reverse=True)
        ideal = sum(costs) / slots
        assert _makespan(groups, slots) <= 1.15 * ideal
    per_kind = [[r for r in runs if r.width == w] for w in (0.5, 1.0)]
    assert _makespan(per_kind, 2) > 1.3 * sum(run_cost(r) for r in runs) / 2  # what the test guards against


def test_cost_grows_with_width_images_and_exact_train_metrics(tmp_path):
    run = _runs(tmp_path)[0]
    wider = run.model_copy(update={"width": run.width * 2})
    more_images = run.model_copy(update={"dataset": run.dataset.model_copy(update={"subset": 800})})
    exact = run.model_copy(update={"train_metrics": "exact"})
    resnet = run.model_copy(update={"architecture": "resnet"})
    assert all(run_cost(other) > run_cost(run) for other in (wider, more_images, exact, resnet))


def test_one_slot_keeps_whole_kinds_and_no_group_is_empty(tmp_path):
    runs = [r for r in _runs(tmp_path) if r.width == 1.0]  # one kind, 15 runs
    assert [len(g) for g in plan_groups(runs, stack_size=64, slots=1)] == [15]
    assert len(plan_groups(runs[:2], stack_size=64, slots=8)) == 2  # never below one run per group
    assert plan_groups([], stack_size=64, slots=2) == []


def test_graph_batches_cover_the_jobs_in_order_and_fill_the_cores():
    jobs = list(range(37))
    batches, plan = plan_batches(jobs, cores=4)
    assert [j for b in batches for j in b] == jobs and len(batches) == 4 * BATCHES_PER_WORKER
    assert max(map(len, batches)) - min(map(len, batches)) <= 1
    assert (plan.workers, plan.threads, plan.in_process) == (4, 1, False)
    one, single = plan_batches(jobs[:1], cores=4)
    assert one == [[0]] and single.in_process and single.threads == 4  # the whole machine, no pool
    assert plan_batches([], cores=4)[0] == []


def test_prediction_designs_start_a_pool_only_for_a_real_study():
    assert plan_designs(designs=12, runs=POOL_MIN_RUNS - 1).in_process
    assert plan_designs(designs=1, runs=500).in_process
    big = plan_designs(designs=12, runs=POOL_MIN_RUNS)
    assert not big.in_process and big.threads == 1 and big.workers == min(available_cores(), 12)
