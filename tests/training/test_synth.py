from collections import Counter

from training.synth import STAGES, synth_deals
from vectoros.core.deals import Outcome


def test_synth_is_reproducible_and_realistic():
    records = synth_deals(400, seed=11)
    assert records == synth_deals(400, seed=11)
    assert records != synth_deals(400, seed=12)
    outcomes = Counter(r.outcome for r in records)
    assert outcomes[Outcome.WON] > 80 and outcomes[Outcome.LOST] > 80 and outcomes[Outcome.OPEN] > 0
    assert len({r.industry for r in records}) == 8 and len({r.owner_id for r in records}) > 20
    for r in records:
        assert r.created_at <= r.snapshot_at
        assert all(change.entered_at <= r.snapshot_at for change in r.stage_history)
        assert r.last_activity_at is None or r.last_activity_at <= r.snapshot_at
        assert r.stage in STAGES
        if r.outcome is Outcome.OPEN:
            assert r.closed_at is None
        else:
            assert r.snapshot_at <= r.closed_at
    # The leaky date column is written as it is: some first meetings come after the snapshot.
    later = [r for r in records if r.numeric_attributes.get("first_meeting_at", 0) > r.snapshot_at.timestamp()]
    assert later
    # Won deals reach later stages at their snapshot than lost ones, but not always.
    won_late = sum(STAGES.index(r.stage) >= 3 for r in records if r.outcome is Outcome.WON) / outcomes[Outcome.WON]
    lost_late = sum(STAGES.index(r.stage) >= 3 for r in records if r.outcome is Outcome.LOST) / outcomes[Outcome.LOST]
    assert 0.2 < won_late < 0.95 and lost_late < won_late
