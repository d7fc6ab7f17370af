package autonomy.guardrails_test

# --- accounts: only one a login service saw guessed is disabled alone --------------------------------------

typed_alice := "identity.disable_user on alice: no sensor saw the account taken (a login service's record of a login after guessing, in this case); the name alone is a claim: a person approves"

guessed(inp, users) := object.union(inp, {"context": {"guessed_users": users}})

test_an_account_only_named_needs_its_approvers if {
	approvals(disable("alice")) == {{"reason": typed_alice, "group": "iam-admins", "quorum": 1}}
}

test_an_account_a_login_service_saw_guessed_is_disabled_alone if {
	count(approvals(guessed(disable("alice"), ["alice"]))) == 0
}

test_another_account_guessed_in_the_case_does_not_count if {
	approvals(guessed(disable("alice"), ["bob", "alice-admin"])) == {{"reason": typed_alice, "group": "iam-admins", "quorum": 1}}
}

test_missing_or_malformed_guessed_users_name_nobody if {
	every facts in [null, "alice", {"alice": true}, [["alice"]], 7] {
		some r in approvals(guessed(disable("alice"), facts))
		r.reason == typed_alice
	}
	some r in approvals(json.remove(disable("alice"), ["context"]))
	r.reason == typed_alice
}

test_re_enabling_an_account_is_not_this_rules_business if {
	every r in approvals(enable("alice")) {
		not contains(r.reason, "no sensor saw the account taken")
	}
}

# --- hosts: only the case's source or an asset the attack reached is isolated alone --------------------------

targeted_web := "host.isolate on web-01: not the source of the case's alerts (on a connection a sensor saw); an alert went to it, which the attacker chooses, and an attack that reached it shows no hold on it: a person approves"

sourced(inp, hosts) := object.union(inp, {"context": {"source_assets": hosts}})

impacted(inp, verdict, assets) := object.union(inp, {"impact": {"verdict": verdict, "assets": assets}})

test_a_host_an_alert_merely_went_to_needs_its_approvers if {
	approvals(isolate("web-01")) == {{"reason": targeted_web, "group": "soc-oncall", "quorum": 1}}
}

test_the_cases_source_is_isolated_alone if {
	count(approvals(sourced(isolate("web-01"), ["web-01"]))) == 0
}

# Reached, at any verdict: a 2xx to an attack request no sensor refused (a page that ignores the payload, on a path
# the WAF does not cover) and a request written to match a malware rule are both the attacker's to produce.
test_an_asset_the_attack_reached_needs_its_approvers_at_any_verdict if {
	every verdict in ["confirmed", "likely", "attempted", "none", "CONFIRMED", null, true] {
		approvals(impacted(isolate("web-01"), verdict, ["web-02", "web-01"])) == {{"reason": targeted_web, "group": "soc-oncall", "quorum": 1}}
	}
}

test_another_host_reached_or_sourced_does_not_count if {
	inp := sourced(impacted(isolate("web-01"), "confirmed", ["web-02"]), ["ws-17"])
	approvals(inp) == {{"reason": targeted_web, "group": "soc-oncall", "quorum": 1}}
}

test_malformed_host_facts_name_nothing if {
	every facts in [null, "web-01", {"web-01": true}, [["web-01"]]] {
		some r in approvals(sourced(impacted(isolate("web-01"), "confirmed", facts), facts))
		r.reason == targeted_web
	}
}

test_looking_at_or_releasing_a_host_is_not_this_rules_business if {
	count(approvals(host_activity("web-01"))) == 0
	every r in approvals(release("web-01")) {
		not contains(r.reason, "an alert went to it")
	}
}

# --- addresses: only a source a sensor saw hold a connection is blocked alone ---------------------------------

forged(value) := sprintf("network.block_ip on %s: no sensor saw %s hold a connection (only packets whose source address anyone can forge: UDP, ICMP, a bare SYN); a person approves", [value, value])

test_a_connected_source_is_blocked_alone if {
	count(approvals(block(["198.51.100.66"]))) == 0
}

test_a_source_only_forgeable_packets_carried_needs_a_person if {
	approvals(forged_block(["198.51.100.66"])) == {{"reason": forged("198.51.100.66"), "group": "soc-oncall", "quorum": 1}}
}

test_another_connected_source_does_not_count if {
	inp := object.union(forged_block(["198.51.100.66"]), {"context": {"connected_sources": [source_of("198.51.100.1")]}})
	approvals(inp) == {{"reason": forged("198.51.100.66"), "group": "soc-oncall", "quorum": 1}}
}

# A range is blocked alone (within max_addresses_alone) only when it holds a connected source, of its own family.
test_a_range_holding_a_connected_source_is_not_this_rules_business if {
	every r in approvals(sourced_in(block(["198.51.100.0/25"]), "198.51.100.66")) {
		not contains(r.reason, "hold a connection")
	}
	forged("198.51.100.0/25") in {r.reason | some r in approvals(sourced_in(block(["198.51.100.0/25"]), "198.51.100.254"))}
	mapped := object.union(forged_block(["::ffff:c633:6401"]), {"context": {"connected_sources": [source_of("198.51.100.1")]}})
	forged("::ffff:c633:6401") in {r.reason | some r in approvals(mapped)}
}

test_missing_or_malformed_connected_sources_name_nothing if {
	every facts in [null, "198.51.100.66", ["198.51.100.66"], [{"value": "198.51.100.66"}], {"198.51.100.66": true}] {
		inp := object.union(forged_block(["198.51.100.66"]), {"context": {"connected_sources": facts}})
		forged("198.51.100.66") in {r.reason | some r in approvals(inp)}
	}
	forged("198.51.100.66") in {r.reason | some r in approvals(json.remove(block(["198.51.100.66"]), ["context"]))}
}

test_unblocking_or_looking_up_is_not_this_rules_business if {
	every inp in [unblock(["198.51.100.66"]), lookup(["198.51.100.66"])] {
		every r in approvals(inp) {
			not contains(r.reason, "hold a connection")
		}
	}
}
