from cronswarm.worker._proctree import descendants


def test_descendants_follow_parent_links_from_every_root() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 1, 20: 13, 21: 20, 30: 1}
    assert descendants(parents, [10]) == {10, 11, 12}
    assert descendants(parents, [10, 13]) == {10, 11, 12, 13, 20, 21}
    assert descendants(parents, [99]) == {99}  # unknown roots are kept (callers filter)
    assert descendants(parents, []) == set()


def test_descendants_survive_a_parent_cycle() -> None:
    assert descendants({1: 2, 2: 1}, [1]) == {1, 2}
