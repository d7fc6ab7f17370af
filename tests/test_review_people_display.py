"""Adversarial review of the people path, what reviewers read: a vote's comment is one approver's free text,
shown to the others beside every vote so far, in the inbox (votes joined by "; ") and in Slack (one "• " line
per vote). Before this review the comment was appended as it came, so an approver could write another
person's vote into the list ("ok; carol reject (signed)", or a line break and "• dave approve (signed)") and a
tired reviewer read two votes where one was cast. The comment is now quoted as a JSON string: its line breaks
and quotes escaped, its end unambiguous. The counts never read this text; what people read must not lie either.
"""

from __future__ import annotations

from autonomy_controller.controller.service.approvals import Pending, describe_vote
from autonomy_controller.controller.service.chatops import blocks
from autonomy_controller.controller.service.inbox import pages
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, ApprovalVote, VoteChoice

FORGED = 'fine by me"; carol reject (signed)\n• dave approve (signed): "checked'


def pending_with(comment: str) -> Pending:
    state = ActionState(
        action_id="a1", action="network.block_ip", verdict="approve", status=ActionStatus.AWAITING_APPROVAL
    )
    state.votes.append(ApprovalVote(action_id="a1", approver="bob", choice=VoteChoice.APPROVE, comment=comment))
    return Pending(incident="src:198.51.100.66", run_id="run-1", state=state)


def test_a_comment_cannot_read_as_another_vote() -> None:
    shown = describe_vote(pending_with(FORGED).state.votes[0])
    assert (
        shown == 'bob approve (unsigned): "fine by me\\"; carol reject (signed)\\n• dave approve (signed): \\"checked"'
    )
    assert "\n" not in shown


def test_in_slack_one_vote_is_one_line() -> None:
    message = blocks.message(pending_with(FORGED))
    votes = next(b["text"]["text"] for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("*Votes"))
    assert votes.splitlines()[1:] == [blocks.escape("• " + describe_vote(pending_with(FORGED).state.votes[0]))]


def test_in_the_inbox_the_comment_stays_inside_its_quotes() -> None:
    page = pages.inbox([pending_with(FORGED)], "bob", "carol", "csrf-token")
    assert "bob approve (unsigned): &quot;fine by me\\&quot;; carol reject (signed)\\n" in page


def test_bidi_controls_and_line_separators_are_shown_escaped() -> None:
    shown = describe_vote(pending_with("ok\u2028• dave approve (signed) \u202egninrael").state.votes[0])
    assert shown == 'bob approve (unsigned): "ok\\u2028• dave approve (signed) \\u202egninrael"'
