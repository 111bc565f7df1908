from pipeline_lib.placement import plan_groups
from pipeline_lib.spec import expand_runs, load_study
from tests.conftest import write_spec


def _runs(tmp_path, **sweep):
    spec = write_spec(tmp_path, samples=5, widths=[0.5, 1.0], seeds=[0, 1, 2], sweep={"lr": {"log_uniform": [0.01, 0.1]}, **sweep})
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


def test_groups_are_split_until_every_slot_has_one(tmp_path):
    runs = [r for r in _runs(tmp_path) if r.width == 1.0]  # one kind, 15 runs
    assert len(runs) == 15
    sizes = sorted(len(g) for g in plan_groups(runs, stack_size=64, slots=4))
    assert sizes == [3, 4, 4, 4]
    assert len(plan_groups(runs[:2], stack_size=64, slots=8)) == 2  # never below one run per group
    assert plan_groups([], stack_size=64, slots=2) == []
