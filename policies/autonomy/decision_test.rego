package autonomy.decision_test

import data.autonomy.decision

# --- fixtures ----------------------------------------------------------------------------------

# Copies of the shipped levels' decision fields (levels/L*.yaml), so a level edit cannot break the
# policy's own tests; LT is a test level for the odd cases.
levels := {
	"L1": {
		"level": "L1", "enabled": true, "triage": null,
		"classes": {
			"investigate": "execute", "notify": "recommend", "ticket": "recommend",
			"contain_network": "recommend", "contain_host": "recommend",
			"contain_identity": "recommend", "restore": "recommend",
		},
		"risk": {"auto_max": 0, "approve_max": 100},
		"approval": {"quorum": 1, "timeout_seconds": 3600, "on_timeout": "reject"},
	},
	"L3": {
		"level": "L3", "enabled": true, "triage": null,
		"classes": {
			"investigate": "execute", "notify": "execute", "ticket": "execute",
			"contain_network": "execute", "contain_host": "approve",
			"contain_identity": "approve", "restore": "approve",
		},
		"risk": {"auto_max": 45, "approve_max": 85},
		"approval": {"quorum": 1, "timeout_seconds": 3600, "on_timeout": "reject"},
	},
	"L5": {
		"level": "L5", "enabled": false, "triage": null,
		"classes": {
			"investigate": "execute", "notify": "execute", "ticket": "execute",
			"contain_network": "execute", "contain_host": "execute",
			"contain_identity": "execute", "restore": "approve",
		},
		"risk": {"auto_max": 75, "approve_max": 95},
		"approval": {"quorum": 1, "timeout_seconds": 900, "on_timeout": "execute_reversible"},
	},
	"LT": {
		"level": "LT", "enabled": true, "triage": null,
		"classes": {"contain_network": "deny", "contain_host": "maybe", "notify": "execute"},
		"risk": {"auto_max": 45, "approve_max": 85},
		"approval": {"quorum": 2},
	},
}

identities := {
	"users": {"alice": {"privileged": false}},
	"approver_groups": {
		"soc-oncall": {"members": ["bob", "carol"]},
		"infra-oncall": {"members": ["frank"]},
		"iam-admins": {"members": ["dave", "erin"]},
	},
	"class_approvers": {
		"contain_network": ["soc-oncall"],
		"contain_host": ["soc-oncall", "infra-oncall"],
		"contain_identity": ["iam-admins"],
		"restore": ["soc-oncall"],
		"notify": ["soc-oncall"],
	},
	"service_identities": ["planner:offline", "planner:claude", "svc:controller"],
}

attacker := {"value": "198.51.100.66", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010001000010", "num_addresses": 1}

# network.block_ip of the lab's attacker at L3 with a low risk: the plain execute case.
base := {
	"action": {
		"id": "a1", "name": "network.block_ip", "class": "contain_network", "blast_radius": "single_address",
		"reversible": true, "undo_action": "network.unblock_ip", "params": {"ip": "198.51.100.66", "ttl_seconds": 3600},
		"ttl_seconds": 3600,
	},
	"targets": {"ips": [attacker], "hosts": [], "users": [], "unrelated": []},
	"level": {"declared": "L3", "effective": "L3", "downgrades": []},
	"risk": {"score": 32},
	"context": {"category": "sqli", "environment": "production", "proposer": "planner:offline"},
	"plan": {"class_actions": 1, "class_addresses": 1},
}

with_level(name, score) := object.union(base, {"level": {"effective": name}, "risk": {"score": score}})

isolate(score) := object.union(base, {
	"action": {"name": "host.isolate", "class": "contain_host", "blast_radius": "host"},
	"targets": {"ips": [], "hosts": ["web-01"]},
	"risk": {"score": score},
})

# The decision against the fixtures, with the guardrails replaced by the given outputs: these tests
# pin the base policy; the guardrails have their own tests.
decide_with(inp, lv, ids, denies, approvals) := out if {
	out := decision.result with input as inp
		with data.levels as lv
		with data.identities as ids
		with data.meta as {"revision": "sha256:test"}
		with data.autonomy.guardrails.deny as denies
		with data.autonomy.guardrails.require_approval as approvals
}

decide(inp) := decide_with(inp, levels, identities, set(), set())

# --- execute -----------------------------------------------------------------------------------

test_low_risk_block_at_l3_executes if {
	decide(base) == {
		"verdict": "execute",
		"reasons": ["L3 lets contain_network execute alone; risk 32 within auto limit 45"],
		"deny_reasons": [],
		"approval_reasons": [],
		"approver_groups": [],
		"quorum": 0,
		"approval_requirements": [],
		"veto_window": false,
		"policy_revision": "sha256:test",
	}
}

test_risk_exactly_at_auto_limit_still_executes if {
	decide(with_level("L3", 45)).verdict == "execute"
}

test_scores_print_with_one_decimal_at_most if {
	decide(with_level("L3", 37.5)).reasons == ["L3 lets contain_network execute alone; risk 37.5 within auto limit 45"]
	decide(with_level("L3", 33.333333333333336)).reasons == ["L3 lets contain_network execute alone; risk 33.3 within auto limit 45"]
	decide(with_level("L3", 20.0)).reasons == ["L3 lets contain_network execute alone; risk 20 within auto limit 45"]
}

# The controller compiles the text of each tenth (data.number_text); with it, a number is looked up.
test_numbers_print_the_same_from_the_compiled_table if {
	table := [text | some tenths in numbers.range(0, 1000); text := decision.number_text_of(tenths / 10)]
	r := decision.result with input as with_level("L3", 37.5)
		with data.levels as levels
		with data.identities as identities
		with data.meta as {"revision": "sha256:test"}
		with data.number_text as table
		with data.autonomy.guardrails.deny as set()
		with data.autonomy.guardrails.require_approval as set()
	r.reasons == ["L3 lets contain_network execute alone; risk 37.5 within auto limit 45"]
}

# --- approve -----------------------------------------------------------------------------------

test_risk_above_auto_limit_needs_approval if {
	decide(with_level("L3", 52)) == {
		"verdict": "approve",
		"reasons": ["risk 52 above L3's auto limit 45: contain_network needs approval"],
		"deny_reasons": [],
		"approval_reasons": ["risk 52 above L3's auto limit 45: contain_network needs approval"],
		"approver_groups": ["soc-oncall"],
		"quorum": 1,
		"approval_requirements": [],
		"veto_window": false,
		"policy_revision": "sha256:test",
	}
}

test_level_that_says_approve_needs_approval if {
	r := decide(isolate(30))
	r.verdict == "approve"
	r.approval_reasons == ["L3 requires approval for contain_host"]
	r.approver_groups == ["infra-oncall", "soc-oncall"]
	r.quorum == 1
}

test_guardrail_approval_adds_its_group_and_quorum if {
	req := {"reason": "identity on privileged admin: iam-admins must approve", "group": "iam-admins", "quorum": 2}
	r := decide_with(base, levels, identities, set(), {req})
	r.verdict == "approve"
	r.approval_reasons == ["identity on privileged admin: iam-admins must approve"]
	r.approver_groups == ["iam-admins", "soc-oncall"]
	r.quorum == 2
	r.approval_requirements == [{"group": "iam-admins", "quorum": 2}]
}

test_requirement_its_group_cannot_meet_is_denied if {
	req := {"reason": "identity on privileged admin: iam-admins must approve", "group": "iam-admins", "quorum": 3}
	r := decide_with(base, levels, identities, set(), {req})
	r.verdict == "deny"
	"identity on privileged admin: iam-admins must approve needs 3 approvers from iam-admins, which has only 2 eligible" in r.deny_reasons
}

test_level_quorum_wins_when_higher if {
	lv := object.union(levels, {"L3": {"approval": {"quorum": 2}}})
	req := {"reason": "a person looks", "group": "soc-oncall", "quorum": 1}
	decide_with(base, lv, identities, set(), {req}).quorum == 2
}

# --- recommend ---------------------------------------------------------------------------------

test_l1_only_recommends if {
	decide(with_level("L1", 10)) == {
		"verdict": "recommend",
		"reasons": ["L1 only recommends contain_network: a person decides and acts"],
		"deny_reasons": [],
		"approval_reasons": [],
		"approver_groups": [],
		"quorum": 0,
		"approval_requirements": [],
		"veto_window": false,
		"policy_revision": "sha256:test",
	}
}

test_risk_above_approval_limit_is_recommend_only if {
	r := decide(with_level("L3", 91))
	r.verdict == "recommend"
	r.reasons == [
		"risk 91 above L3's approval limit 85: recommend only",
		"risk 91 above L3's auto limit 45: contain_network needs approval",
	]
	r.approver_groups == []
	r.quorum == 0
}

test_approve_mode_above_approval_limit_is_recommend_only if {
	r := decide(isolate(86))
	r.verdict == "recommend"
	"risk 86 above L3's approval limit 85: recommend only" in r.reasons
}

test_recommend_beats_a_guardrail_approval if {
	req := {"reason": "a person looks", "group": "soc-oncall", "quorum": 1}
	r := decide_with(with_level("L1", 10), levels, identities, set(), {req})
	r.verdict == "recommend"
	r.approval_reasons == ["a person looks"]
	r.approver_groups == []
	r.quorum == 0
}

# --- deny: guardrails --------------------------------------------------------------------------

test_guardrail_deny_denies if {
	r := decide_with(base, levels, identities, {"network.block_ip on 10.0.0.1 would hit allowlisted rfc1918-10"}, set())
	r.verdict == "deny"
	r.deny_reasons == ["network.block_ip on 10.0.0.1 would hit allowlisted rfc1918-10"]
	r.reasons == ["network.block_ip on 10.0.0.1 would hit allowlisted rfc1918-10"]
	r.approver_groups == []
	r.quorum == 0
}

test_deny_beats_approval if {
	req := {"reason": "a person looks", "group": "soc-oncall", "quorum": 1}
	r := decide_with(base, levels, identities, {"no"}, {req})
	r.verdict == "deny"
	r.reasons == ["a person looks", "no"]
}

test_non_string_guardrail_deny_still_denies if {
	r := decide_with(base, levels, identities, {42}, set())
	r.deny_reasons == ["a guardrail returned a deny reason that is not a string"]
}

test_malformed_guardrail_approval_denies if {
	r := decide_with(base, levels, identities, set(), {{"reason": "no group"}})
	r.verdict == "deny"
	r.deny_reasons == ["a guardrail approval requirement is malformed (needs reason, group and a whole quorum >= 1)"]
}

# --- deny: the level ---------------------------------------------------------------------------

test_unknown_level_denies if {
	decide(with_level("L9", 10)).deny_reasons == ["level L9 is not defined in data.levels"]
}

test_disabled_level_denies if {
	decide(with_level("L5", 10)).deny_reasons == ["level L5 is disabled"]
}

test_level_without_the_class_denies if {
	inp := object.union(with_level("LT", 10), {"action": {"class": "restore"}})
	decide(inp).deny_reasons == ["LT defines no mode for class restore"]
}

test_class_set_to_deny_denies if {
	decide(with_level("LT", 10)).deny_reasons == ["LT denies class contain_network"]
}

test_unknown_mode_denies if {
	inp := object.union(with_level("LT", 10), {"action": {"class": "contain_host"}})
	decide(inp).deny_reasons == ["LT gives class contain_host an unknown mode (not execute, approve, recommend or deny)"]
}

# Malformed levels (risk limits, quorum, modes) are refused when the bundle loads: config_test.rego.

# --- deny: approval nobody can give ------------------------------------------------------------

test_no_approver_group_denies if {
	ids := object.union(identities, {"class_approvers": {"contain_network": []}})
	r := decide_with(with_level("L3", 52), levels, ids, set(), set())
	r.deny_reasons == ["nobody can approve contain_network: no approver group is configured for it"]
}

# An undefined class_approvers group, or a service identity in a group, is refused when the bundle
# loads (config_test.rego). An undefined group reaching a decision all the same still approves nothing:
test_undefined_class_approver_group_leaves_nobody_to_approve if {
	ids := object.union(identities, {"class_approvers": {"contain_network": ["ghosts"]}})
	r := decide_with(with_level("L3", 52), levels, ids, set(), set())
	r.verdict == "deny"
	r.deny_reasons == ["quorum 1 cannot be met: only 0 eligible approvers in ghosts"]
}

test_guardrail_naming_an_undefined_group_denies if {
	req := {"reason": "a person looks", "group": "ghosts", "quorum": 1}
	r := decide_with(base, levels, identities, set(), {req})
	r.verdict == "deny"
	"approver group ghosts is not defined in data.identities.approver_groups" in r.deny_reasons
}

test_proposer_never_counts_as_approver if {
	ids := object.union(identities, {"approver_groups": {"soc-oncall": {"members": ["bob"]}}})
	inp := object.union(with_level("L3", 52), {"context": {"proposer": "bob"}})
	decide_with(inp, levels, ids, set(), set()).deny_reasons == ["quorum 1 cannot be met: only 0 eligible approvers in soc-oncall"]
}

test_without_a_proposer_every_member_counts if {
	r := decide(json.remove(isolate(30), ["context"]))
	r.verdict == "approve"
	r.quorum == 1
}

test_guardrail_quorum_above_group_size_denies if {
	req := {"reason": "privileged", "group": "iam-admins", "quorum": 5}
	r := decide_with(base, levels, identities, set(), {req})
	r.deny_reasons == [
		"privileged needs 5 approvers from iam-admins, which has only 2 eligible",
		"quorum 5 cannot be met: only 4 eligible approvers in iam-admins, soc-oncall",
	]
}

test_unreachable_quorum_is_irrelevant_when_nothing_needs_approval if {
	ids := object.union(identities, {"class_approvers": {"contain_network": []}})
	decide_with(base, levels, ids, set(), set()).verdict == "execute"
}

# --- deny: malformed input ---------------------------------------------------------------------

test_empty_input_is_a_defined_deny if {
	r := decide({})
	r.verdict == "deny"
	r.deny_reasons == [
		"input.action.blast_radius is missing or unknown",
		"input.action.class is missing or not a string",
		"input.action.name is missing or not a string",
		"input.level.effective is missing or not a string",
		"input.plan.class_actions and class_addresses must be counts",
		"input.risk.score is missing or not a number from 0 to 100",
		"input.targets.hosts is missing or not an array",
		"input.targets.ips is missing or not an array",
		"input.targets.unrelated is missing or not an array",
		"input.targets.users is missing or not an array",
	]
}

test_score_out_of_range_or_not_a_number_denies if {
	msg := "input.risk.score is missing or not a number from 0 to 100"
	decide(with_level("L3", 101)).deny_reasons == [msg]
	decide(with_level("L3", -1)).deny_reasons == [msg]
	decide(with_level("L3", "32")).deny_reasons == [msg]
	every score in [null, true, false, [], [32], {}, {"a": 32}, ""] {
		decide(with_level("L3", score)).deny_reasons == [msg]
	}
}

test_every_blast_radius_the_registry_uses_passes_the_input_check if {
	every radius in ["none", "single_address", "network_range", "host", "identity"] {
		decision.checks_pass with input as object.union(base, {"action": {"blast_radius": radius}})
			with data.levels as levels
	}
}

test_unknown_blast_radius_denies if {
	inp := object.union(base, {"action": {"blast_radius": "planet"}})
	decide(inp).deny_reasons == ["input.action.blast_radius is missing or unknown"]
}

test_non_string_host_or_user_denies if {
	inp := object.union(base, {"targets": {"hosts": [1], "users": [true]}})
	decide(inp).deny_reasons == [
		"input.targets.hosts holds a value that is not a string",
		"input.targets.users holds a value that is not a string",
	]
}

test_malformed_ip_targets_deny if {
	bad := [
		object.union(attacker, {"bits": "1100"}), # bits shorter than prefix_len
		object.union(attacker, {"bits": "1100011000110011011001000100001x"}), # not binary
		object.union(attacker, {"version": 5}), # no such IP version
		object.union(attacker, {"prefix_len": 33, "bits": "110001100011001101100100010000100"}), # too long
		object.union(attacker, {"prefix_len": 31.5}), # not whole
	]
	some target in bad
	inp := object.union(base, {"targets": {"ips": [target]}})
	decide(inp).deny_reasons == ["input.targets.ips[0] is malformed: it needs value, version, prefix_len and bits"]
}

test_well_formed_ipv6_target_passes if {
	v6 := {"value": "2001:db8::/32", "version": 6, "prefix_len": 32, "bits": "00100000000000010000110110111000", "num_addresses": 79228162514264337593543950336}
	inp := object.union(base, {"targets": {"ips": [v6]}})
	decide(inp).verdict == "execute"
}

test_missing_policy_revision_echoes_empty if {
	r := decision.result with input as base
		with data.levels as levels
		with data.identities as identities
		with data.meta as {}
		with data.autonomy.guardrails.deny as set()
		with data.autonomy.guardrails.require_approval as set()
	r.policy_revision == ""
}

# checks_pass (the fast check) and the detailed messages must agree; if a change ever broke that, the
# decision is still a deny with a reason.
test_failed_fast_check_without_a_detailed_message_still_denies if {
	r := decision.result with input as object.union(base, {"action": {"name": 7}})
		with data.levels as levels
		with data.identities as identities
		with data.meta as {"revision": "sha256:test"}
		with data.autonomy.guardrails.deny as set()
		with data.autonomy.guardrails.require_approval as set()
		with data.autonomy.decision.input_errors as set()
	r.verdict == "deny"
	r.deny_reasons == ["input or level rejected by the policy's checks"]
}

test_non_object_input_is_a_defined_deny if {
	r := decide(["not", "an", "object"])
	r.verdict == "deny"
	"input.action.class is missing or not a string" in r.deny_reasons
}

# --- actions that change nothing ---------------------------------------------------------------

lookup(level_name, score) := object.union(base, {
	"action": {"name": "investigate.ip_reputation", "class": "investigate", "blast_radius": "none"},
	"level": {"effective": level_name},
	"risk": {"score": score},
})

test_lookup_at_l1_runs_whatever_its_risk if {
	decide(lookup("L1", 8.7)).reasons == ["L1 lets investigate execute alone; blast radius none, so risk 8.7 is not gated"]
	decide(lookup("L1", 95)).verdict == "execute"
}

test_level_mode_still_rules_actions_that_change_nothing if {
	inp := object.union(lookup("L1", 5), {"action": {"name": "notify.webhook", "class": "notify"}})
	decide(inp).verdict == "recommend"
}

# --- veto window ---------------------------------------------------------------------------------
# Only an approval the level's mode alone asked for may fall back to a veto window.

# (Whether the level then uses it is its on_timeout's call; the L3 fixture's contain_identity is approve.)
approving := base

test_veto_window_when_only_the_level_asks if {
	r := decide(object.union(approving, {"action": {"class": "contain_identity", "blast_radius": "identity", "name": "identity.disable_user"}, "targets": {"ips": [], "users": ["alice"]}, "risk": {"score": 20}}))
	r.verdict == "approve"
	r.veto_window == true
}

test_no_veto_window_when_a_guardrail_asks if {
	approvals := {{"reason": "a person approves every restore", "group": "soc-oncall", "quorum": 1}}
	r := decide_with(object.union(approving, {"action": {"class": "restore", "name": "network.unblock_ip"}}), levels, identities, set(), approvals)
	r.verdict == "approve"
	r.veto_window == false
}

test_no_veto_window_above_the_auto_limit if {
	r := decide(object.union(approving, {"action": {"class": "contain_identity", "blast_radius": "identity", "name": "identity.disable_user"}, "targets": {"ips": [], "users": ["alice"]}, "risk": {"score": 70}}))
	r.verdict == "approve"
	r.veto_window == false
}

test_no_veto_window_for_what_cannot_be_undone if {
	r := decide(object.union(approving, {"action": {"class": "contain_identity", "blast_radius": "identity", "name": "identity.disable_user", "reversible": false}, "targets": {"ips": [], "users": ["alice"]}, "risk": {"score": 20}}))
	r.verdict == "approve"
	r.veto_window == false
}

test_no_veto_window_when_executing if {
	r := decide(approving)
	r.verdict == "execute"
	r.veto_window == false
}

# --- triage ----------------------------------------------------------------------------------------
# A level's triage bar (data.levels[L].triage): containment the level would run alone needs it.

triage_levels(otherwise) := object.union(levels, {"L3": {"triage": {
	"verdict": "malicious",
	"min_confidence": 0.8,
	"otherwise": otherwise,
}}})

triaged(verdict, confidence) := object.union(base, {"triage": {"verdict": verdict, "confidence": confidence}})

test_triage_meeting_the_bar_changes_nothing if {
	r := decide_with(triaged("malicious", 0.9), triage_levels("approve"), identities, set(), set())
	r.verdict == "execute"
}

test_triage_short_of_the_bar_goes_to_a_person if {
	r := decide_with(triaged("suspicious", 0.95), triage_levels("approve"), identities, set(), set())
	r.verdict == "approve"
	r.approval_reasons == ["triage says suspicious at confidence 95/100; L3 runs contain_network alone only on malicious at confidence 80/100 or more: a person approves"]
	r.veto_window == false
}

test_triage_below_the_confidence_bar_goes_to_a_person if {
	r := decide_with(triaged("malicious", 0.7), triage_levels("approve"), identities, set(), set())
	r.verdict == "approve"
}

test_triage_short_of_the_bar_can_recommend_only if {
	r := decide_with(triaged("noise", 0.99), triage_levels("recommend"), identities, set(), set())
	r.verdict == "recommend"
	r.reasons == ["triage says noise at confidence 99/100; L3 runs contain_network alone only on malicious at confidence 80/100 or more: recommend only"]
}

test_missing_triage_never_meets_a_bar if {
	r := decide_with(base, triage_levels("approve"), identities, set(), set())
	r.verdict == "approve"
	r.approval_reasons == ["triage says nothing usable (missing or malformed); L3 runs contain_network alone only on malicious at confidence 80/100 or more: a person approves"]
}

test_a_level_without_a_bar_ignores_triage if {
	decide(triaged("noise", 0.99)).verdict == "execute"
}

test_triage_never_gates_what_is_not_containment if {
	ticket := object.union(triaged("noise", 0.99), {"action": {"name": "ticket.create", "class": "ticket", "blast_radius": "none"}, "targets": {"ips": []}})
	decide_with(ticket, triage_levels("approve"), identities, set(), set()).verdict == "execute"
}

test_every_containment_class_is_gated if {
	every class in ["contain_network", "contain_host", "contain_identity"] {
		lv := object.union(triage_levels("approve"), {"L3": {"classes": {class: "execute"}}})
		inp := object.union(triaged("suspicious", 0.9), {"action": {"class": class}})
		decide_with(inp, lv, identities, set(), set()).verdict == "approve"
	}
}

test_a_missing_or_malformed_bar_goes_to_a_person if {
	every bar in [{}, {"verdict": "malicious", "min_confidence": 0.8}, {"verdict": "malicious", "min_confidence": 0.8, "otherwise": "deny"}, {"otherwise": "approve"}] {
		lv := object.union(levels, {"L3": {"triage": bar}})
		r := decide_with(triaged("noise", 0.6), lv, identities, set(), set())
		r.verdict == "approve"
	}
	lv := json.remove(levels, ["L3/triage"])
	r := decide_with(triaged("noise", 0.6), lv, identities, set(), set())
	r.verdict == "approve"
	r.approval_reasons == ["L3's triage bar is missing or malformed: a person approves"]
}

test_no_veto_window_for_containment_short_of_the_triage_bar if {
	lv := object.union(triage_levels("approve"), {"L3": {"classes": {"contain_identity": "approve"}}})
	identity := {"action": {"class": "contain_identity", "blast_radius": "identity", "name": "identity.disable_user"}, "targets": {"ips": [], "users": ["alice"]}, "risk": {"score": 20}}
	short := decide_with(object.union(triaged("noise", 0.6), identity), lv, identities, set(), set())
	short.verdict == "approve"
	short.veto_window == false
	met := decide_with(object.union(triaged("malicious", 0.9), identity), lv, identities, set(), set())
	met.veto_window == true
}

# --- impact: named among the reasons, never a verdict ------------------------------------------

impacted(verdict, assets) := object.union(base, {"impact": {"verdict": verdict, "assets": assets}})

likely_web := "impact likely: an attack reached web-01 (the application answered an attack request no sensor refused; a person confirms)"

test_an_attack_that_got_through_is_named_among_the_reasons if {
	r := decide(impacted("likely", ["web-01"]))
	r.reasons == sort([likely_web, "L3 lets contain_network execute alone; risk 32 within auto limit 45"])
	r.deny_reasons == []
	r.approval_reasons == []
	c := decide(impacted("confirmed", ["web-02", "web-01"]))
	"impact confirmed: post-exploitation alerts from the source; an attack reached web-01, web-02" in c.reasons
}

test_no_impact_reason_when_nothing_got_through if {
	every verdict in ["none", "attempted", "LIKELY", null, 2] {
		r := decide(impacted(verdict, ["web-01"]))
		r.reasons == ["L3 lets contain_network execute alone; risk 32 within auto limit 45"]
	}
	decide(object.union(base, {"impact": "likely"})).reasons == decide(base).reasons
}

test_malformed_assets_name_none if {
	every assets in [[], [7], ["web-01", 7], "web-01", {"web-01": true}, null] {
		r := decide(impacted("likely", assets))
		"impact likely: an attack reached an asset it did not name (the application answered an attack request no sensor refused; a person confirms)" in r.reasons
	}
}

# The verdict, approvers, quorum and veto window are what they would be without an impact, at every level
# and mode: an approval, a recommendation, a deny, a triage short of its bar, a veto window.
test_impact_never_changes_a_verdict if {
	cases := [
		base,
		with_level("L1", 10),
		with_level("L3", 60),
		with_level("L3", 90),
		with_level("L5", 10),
		isolate(20),
		triaged("noise", 0.6),
		object.union(approving, {"level": {"effective": "LT"}, "action": {"class": "notify", "blast_radius": "none"}}),
	]
	every inp in cases {
		every impact in [{"verdict": "likely", "assets": ["web-01"]}, {"verdict": "confirmed", "assets": []}] {
			plain := decide_with(inp, triage_levels("approve"), identities, set(), set())
			hit := decide_with(object.union(inp, {"impact": impact}), triage_levels("approve"), identities, set(), set())
			json.remove(hit, ["reasons"]) == json.remove(plain, ["reasons"])
			some msg in hit.reasons
			startswith(msg, "impact ")
		}
	}
}
