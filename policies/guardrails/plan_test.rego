package autonomy.guardrails_test

import data.autonomy.guardrails

# --- permanent containment -------------------------------------------------------------------------

permanent(inp) := object.union(inp, {"action": {"ttl_seconds": null}})

test_a_block_without_ttl_needs_a_person if {
	approvals(permanent(block(["198.51.100.66"]))) == {{
		"reason": "network.block_ip has no ttl_seconds: permanent containment needs a person at every level",
		"group": "soc-oncall",
		"quorum": 1,
	}}
}

test_a_missing_ttl_field_counts_as_permanent if {
	inp := block(["198.51.100.66"])
	some r in approvals(json.remove(inp, ["action/ttl_seconds"]))
	contains(r.reason, "permanent containment")
}

test_permanent_identity_containment_asks_the_class_approvers if {
	some r in approvals(permanent(disable("alice")))
	r.group == "iam-admins"
	contains(r.reason, "permanent containment")
}

test_restores_and_lookups_are_not_containment if {
	count(approvals(permanent(lookup(["198.51.100.66"])))) == 0
	every r in approvals(permanent(unblock(["198.51.100.66"]))) {
		not contains(r.reason, "permanent")
	}
}

# --- targets the incident never named --------------------------------------------------------------

test_an_unrelated_target_needs_a_person if {
	inp := object.union(block(["10.1.2.3"]), {"targets": {"unrelated": ["8.8.8.8"]}})
	some r in approvals(inp)
	r.reason == "network.block_ip on 8.8.8.8: not an entity of this incident (no alert names it)"
	r.group == "soc-oncall"
}

test_an_unrelated_host_asks_the_host_approvers if {
	inp := object.union(isolate("web-01"), {"targets": {"unrelated": ["web-01"]}})
	some r in approvals(inp)
	r.group == "soc-oncall"
	contains(r.reason, "not an entity of this incident")
}

# --- plan caps ---------------------------------------------------------------------------------------

test_more_containment_actions_than_the_cap_need_a_person if {
	inp := object.union(block(["198.51.100.66"]), {"plan": {"class_actions": 4, "class_addresses": 4}})
	some r in approvals(inp)
	r.reason == "the plan holds 4 contain_network actions, more than the 3 per plan the machine runs alone"
}

test_the_cap_itself_runs_alone if {
	inp := object.union(block(["198.51.100.66"]), {"plan": {"class_actions": 3, "class_addresses": 3}})
	count(approvals(inp)) == 0
}

test_more_addresses_in_a_plan_than_the_cap_need_a_person if {
	inp := object.union(block(["198.51.100.66"]), {"plan": {"class_actions": 2, "class_addresses": 257}})
	count(denies(inp)) == 0
	approvals(inp) == {{
		"reason": "the plan blocks more than 256 addresses in all: a person looks at the whole plan",
		"group": "soc-oncall",
		"quorum": 1,
	}}
}

test_the_address_cap_per_plan_comes_from_the_data if {
	inp := object.union(block(["198.51.100.66"]), {"plan": {"class_actions": 2, "class_addresses": 20}})
	out := guardrails.require_approval with input as inp
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.identities as identities
		with data.guardrails as object.union(tunables, {"max_addresses_per_plan": 16})
	some r in out
	r.reason == "the plan blocks more than 16 addresses in all: a person looks at the whole plan"
}

test_the_plan_caps_come_from_the_data if {
	inp := object.union(block(["198.51.100.66"]), {"plan": {"class_actions": 2, "class_addresses": 2}})
	out := guardrails.require_approval with input as inp
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.identities as identities
		with data.guardrails as object.union(tunables, {"max_containment_actions_per_plan": 1})
	some r in out
	contains(r.reason, "more than the 1 per plan")
}
