package autonomy.guardrails_test

import data.autonomy.decision

test_every_restore_needs_a_person if {
	approvals(unblock(["198.51.100.66"])) == {{
		"reason": "network.unblock_ip restores what a containment took away: a person approves every restore",
		"group": "soc-oncall",
		"quorum": 1,
	}}
}

test_containment_needs_no_restore_approval if {
	count(approvals(block(["198.51.100.66"]))) == 0
}

# The prompt-injection case end to end: an alert's text talked the planner into unblocking the
# attacker. Even under a level that lets restores execute at any risk (LX), a person approves.
test_injected_unblock_is_never_executed if {
	levels := {"LX": {
		"enabled": true,
		"classes": {"restore": "execute"},
		"risk": {"auto_max": 100, "approve_max": 100},
		"approval": {"quorum": 1},
	}}
	inp := object.union(unblock(["198.51.100.66"]), {"level": {"effective": "LX"}, "risk": {"score": 5}})
	r := decision.result with input as inp
		with data.levels as levels
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.identities as identities
		with data.guardrails as tunables
	r.verdict == "approve"
	r.approver_groups == ["soc-oncall"]
	r.approval_reasons == ["network.unblock_ip restores what a containment took away: a person approves every restore"]
}
