"""Planning state groups: how the room state after an event is written down.

A group is a full snapshot or a delta over a previous group. Chains are cut
at MAX_CHAIN (a new snapshot is written instead), so reading any state costs
at most MAX_CHAIN+1 small reads. Pure: storage writes what is planned here.
"""

from __future__ import annotations

import attrs

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]

MAX_CHAIN = 50


@attrs.frozen
class NewStateGroup:
    id: int
    room_id: str
    prev_group: int | None
    chain_length: int
    # For a delta: changed keys (None = removed). For a snapshot: the full state.
    entries: dict[StateKey, str | None]


def plan_state_group(
    group_id: int, room_id: str, prev_group: int | None, prev_chain: int,
    prev_state: StateMap, new_state: StateMap,
) -> NewStateGroup:
    """A delta over prev_group when the chain is short, else a snapshot.

    Big rooms get longer chains (a tenth of their state size): a 10,000-member room
    then writes a 10,000-row snapshot once per ~1,000 state changes, not every 50.
    """
    if prev_group is not None and prev_chain < max(MAX_CHAIN, len(new_state) // 10):
        delta: dict[StateKey, str | None] = {
            k: v for k, v in new_state.items() if prev_state.get(k) != v
        }
        for k in prev_state.keys() - new_state.keys():
            delta[k] = None
        return NewStateGroup(group_id, room_id, prev_group, prev_chain + 1, delta)
    return NewStateGroup(group_id, room_id, None, 0, dict(new_state))
