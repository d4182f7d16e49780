"""Lab-wide fair share from the hosts' lab boards: entitlements by weighted water-filling,
and the rule that keeps a user above their share off a GPU an under-served user waits for."""

from __future__ import annotations

import pytest

from app.core.queue.fairshare import demand_of, lab_state, water_fill
from ssh_backend.labboard import Board, Demand, LeaseHolder, decode


def board(leases: dict[str, int], demand: list[Demand] = (), shares: dict | None = None
          ) -> Board:
    held = tuple(LeaseHolder(f"GPU-{u}-{i}", u, None, None)
                 for u, n in leases.items() for i in range(n))
    return Board(leases=held, demand=tuple(demand), shares=shares or {})


def test_water_filling_shares_by_weight_and_gives_away_what_a_user_cannot_use() -> None:
    assert water_fill(8, {"a": 100, "b": 100}, {"a": 1, "b": 1}) == {"a": 4.0, "b": 4.0}
    assert water_fill(9, {"a": 100, "b": 100}, {"a": 2, "b": 1}) == {"a": 6.0, "b": 3.0}
    # b wants only 1: the rest goes to a and c.
    assert water_fill(8, {"a": 100, "b": 1, "c": 100}, {"a": 1, "b": 1, "c": 1}) == {
        "a": 3.5, "b": 1.0, "c": 3.5}
    assert water_fill(8, {"a": 0}, {"a": 1}) == {"a": 0.0}


def test_over_share_user_leaves_a_freed_gpu_to_a_waiting_user_below_share() -> None:
    # alice holds 7 of 8 GPUs; bob holds 0 and waits for one.
    lab = lab_state({"ws": board({"alice": 7}, [Demand("bob", 1, 2, 100.0)])},
                    {"ws": 8}, {"ws": "alice"})
    assert lab.entitlements() == {"alice": 6.0, "bob": 2.0}
    blocked = lab.blocker("ws", free_after=1, extra=1)
    assert blocked is not None and blocked.user == "bob"
    # bob's own Labdeck is not held back by anyone.
    bobs = lab_state({"ws": board({"alice": 7}, [Demand("bob", 1, 2, 100.0)])},
                     {"ws": 8}, {"ws": "bob"})
    assert bobs.blocker("ws", free_after=1, extra=1) is None


def test_work_conserving_a_gpu_nobody_below_share_can_use_is_taken() -> None:
    # bob waits, but for 4 GPUs on one host: the single free GPU would idle for him.
    lab = lab_state({"ws": board({"alice": 7}, [Demand("bob", 4, 1, 100.0)])},
                    {"ws": 8}, {"ws": "alice"})
    assert lab.blocker("ws", free_after=1, extra=1) is None
    # Nobody else waits at all: alice may take every GPU (one user alone gets all 8).
    alone = lab_state({"ws": board({"alice": 7})}, {"ws": 8}, {"ws": "alice"})
    assert alone.blocker("ws", free_after=1, extra=1) is None


def test_weights_from_the_policy_and_demand_counted_once_across_hosts() -> None:
    demand = [Demand("bob", 1, 4, 50.0)]
    boards = {"ws1": board({"alice": 3}, demand, {"default": 1.0, "alice": 3.0}),
              "ws2": board({"alice": 3}, demand)}
    lab = lab_state(boards, {"ws1": 4, "ws2": 4}, {"ws1": "alice", "ws2": "alice"})
    assert lab.wanted == {"bob": 4}
    assert lab.entitlements() == {"alice": 6.0, "bob": 2.0}
    # alice with 7 GPUs for a weight of 3 is ahead of bob with 1 for a weight of 1.
    assert lab.blocker("ws1", free_after=1, extra=1) is not None
    # Ties go by name, so two Labdecks never both step back (or both take it).
    tie = lab_state({"ws": board({"alice": 2, "bob": 2}, [Demand("bob", 1, 1, 1.0),
                                                           Demand("alice", 1, 1, 1.0)])},
                    {"ws": 8}, {"ws": "alice"})
    assert tie.blocker("ws", free_after=1, extra=1) is None
    tie.me = {"ws": "bob"}
    assert tie.blocker("ws", free_after=1, extra=1).user == "alice"


def test_this_apps_own_runs_count_when_the_board_has_not_seen_them_yet() -> None:
    # The board (read a moment ago) shows 3 of alice's leases; her store has 5 runs there
    # (two launched since): she holds 5, not 3, and not 8.
    lab = lab_state({"ws": board({"alice": 3}, [Demand("bob", 1, 4, 1.0)])}, {"ws": 8},
                    {"ws": "alice"}, active={"ws": 5})
    assert lab.held == {"alice": 5}


def test_demand_groups_runs_by_size_and_priority() -> None:
    runs = [(1, 30.0, 0), (1, 10.0, 0), (2, 20.0, 0), (1, 5.0, 1), (0, 1.0, 0)]
    assert demand_of(runs) == [
        {"gpus": 1, "runs": 2, "since": 10.0, "priority": 0},
        {"gpus": 1, "runs": 1, "since": 5.0, "priority": 1},
        {"gpus": 2, "runs": 1, "since": 20.0, "priority": 0},
    ]


@pytest.mark.parametrize("junk", [
    None, [], {"reservations": "x"}, {"demand": [{"user": "b", "gpus": 0, "runs": 1,
                                                   "since": 1}]},
    {"leases": [{"gpu_uuid": 5}]}, {"reservations": [{"gpu_uuid": "g", "user": "u",
                                                       "until": float("nan")}]},
])
def test_a_malformed_board_decodes_to_nothing_harmful(junk: object) -> None:
    decoded = decode(junk, {"shares": {"a": -1, "b": "x", "c": 2}})
    assert decoded.reservations == () and decoded.demand == () and decoded.leases == ()
    assert decoded.shares == {"c": 2.0}


def test_a_simulated_day_of_three_labdecks_is_fair_and_keeps_the_gpus_busy() -> None:
    """The fairness benchmark's simulation at a day's size (tests/bench/bench_fairness):
    the real scheduler and rule, three Labdecks deciding alone each minute."""
    from tests.bench.bench_fairness import USERS, simulate

    fair_index, used, shares = simulate(True, USERS, 1440, seed=3)
    assert fair_index >= 0.95 and used >= 0.95, (fair_index, used, shares)
    fcfs_index, _used, _shares = simulate(False, USERS, 1440, seed=3)
    assert fcfs_index < fair_index
    _index, alone, _s = simulate(True, {"alice": USERS["alice"]}, 600, seed=3)
    assert alone >= 0.95


def test_the_policy_quota_is_this_users_own_and_counts_held_and_launching_gpus() -> None:
    policy = {"max_gpus_per_user": 4, "user_max_gpus": {"alice": 2}}
    alice = decode({"me": "alice", "leases": [{"gpu_uuid": "g0", "user": "alice"},
                                              {"gpu_uuid": "g1", "user": "bob"}]}, policy)
    bob = decode({"me": "bob"}, policy)
    assert (alice.my_quota, bob.my_quota, decode({"me": "x"}, {}).my_quota) == (2, 4, None)
    # Her store knows of 2 runs there (one started after the board was read).
    lab = lab_state({"ws": alice}, {"ws": 8}, {"ws": "alice"}, {"ws": 2})
    assert lab.quota == {"ws": (2, 2)} and lab.quota_room("ws") == 0
    assert lab.held == {"alice": 2, "bob": 1}
    # The board's count stands when the store knows of fewer (another Labdeck of hers).
    assert lab_state({"ws": alice}, {"ws": 8}, {"ws": "alice"}, {}).held["alice"] == 1
    assert lab_state({"ws": bob}, {"ws": 8}, {"ws": "bob"}).quota_room("ws") == 4
    assert lab_state({"ws": Board()}, {"ws": 8}, {"ws": "bob"}).quota_room("ws") is None
