package autonomy.config_test

import data.autonomy.config
import data.autonomy.decision

# --- fixtures ----------------------------------------------------------------------------------

level(classes) := {
	"level": "LX", "enabled": true, "classes": classes,
	"risk": {"auto_max": 45, "approve_max": 85},
	"approval": {"quorum": 1, "timeout_seconds": 3600, "on_timeout": "reject"},
}

levels := {
	"L1": level({"investigate": "execute", "contain_network": "recommend"}),
	"L3": level({"investigate": "execute", "contain_network": "execute"}),
}

identities := {
	"users": {"alice": {"privileged": false}},
	"user_index": {"4": {"0": {"alice": {"privileged": false}}}},
	"approver_groups": {"soc-oncall": {"members": ["bob", "carol"]}, "iam-admins": {"members": ["dave"]}},
	"class_approvers": {"investigate": ["soc-oncall"], "contain_network": ["soc-oncall"]},
	"service_identities": ["planner:offline", "svc:controller"],
}

allowlists := {
	"networks": {"lab-gateway": {"cidr": "198.51.100.254/32", "bits": "11000110001100110110010011111110"}},
	"prefixes": {"ipv4": ["11000110001100110110010011111110"], "ipv6": []},
	"by_family": {"ipv4": [{"name": "lab-gateway", "bits": "11000110001100110110010011111110"}], "ipv6": []},
}

inventory := {
	"assets": {"web-01": {"addresses": ["198.51.100.1"]}},
	"asset_index": {"9": {"e": {"web-01": {"addresses": ["198.51.100.1"]}}}},
	"address_index": {"0": {"0": {"11000110001100110110010000000001": "web-01"}}},
	"range_index": {},
	"range_keys": {"ipv4": ["110001100011001101100100"], "ipv6": []},
	"range_bucket_bits": {"ipv4": 24, "ipv6": 64},
}

tunables := {"max_addresses_per_block": 256, "privileged_identity_quorum": 2}

errors_with(lv, ids, al, inv, tn) := out if {
	out := config.errors with data.levels as lv
		with data.identities as ids
		with data.allowlists as al
		with data.inventory as inv
		with data.guardrails as tn
		with data.special_purpose as {}
}

errors_of(lv, ids) := errors_with(lv, ids, allowlists, inventory, tunables)

# --- the fixtures, and the shipped shape, are clean --------------------------------------------

test_clean_data_has_no_errors if {
	errors_of(levels, identities) == set()
}

test_no_data_at_all_has_no_errors if {
	config.errors == set() with data.levels as {}
		with data.identities as {}
		with data.allowlists as {}
		with data.inventory as {}
		with data.guardrails as {}
		with data.special_purpose as {}
}

# --- levels ------------------------------------------------------------------------------------

test_level_that_is_not_an_object if {
	errors_of(object.union(levels, {"L9": "on"}), identities) == {"level L9 must be an object"}
}

test_enabled_must_be_a_boolean if {
	lv := object.union(levels, {"L3": {"enabled": "yes"}})
	errors_of(lv, identities) == {"L3's enabled must be true or false"}
}

test_classes_must_be_an_object if {
	lv := object.union(levels, {"L3": {"classes": ["execute"]}})
	errors_of(lv, identities) == {
		"L3's classes must map each action class to a mode",
		"L3 defines no mode for class contain_network",
		"L3 defines no mode for class investigate",
	}
}

test_unknown_mode if {
	lv := object.union(levels, {"L3": {"classes": {"contain_network": "maybe"}}})
	errors_of(lv, identities) == {"L3 gives class contain_network an unknown mode (not execute, approve, recommend or deny)"}
}

test_every_level_names_every_class if {
	lv := object.union(levels, {"L1": {"classes": {"restore": "recommend"}}})
	errors_of(lv, identities) == {"L3 defines no mode for class restore"}
}

test_inverted_risk_limits if {
	lv := object.union(levels, {"L3": {"risk": {"auto_max": 90}}})
	errors_of(lv, identities) == {"L3's risk limits must satisfy 0 <= auto_max <= approve_max <= 100"}
}

test_risk_limits_out_of_range_or_not_numbers if {
	msg := "L3's risk limits must satisfy 0 <= auto_max <= approve_max <= 100"
	errors_of(object.union(levels, {"L3": {"risk": {"auto_max": -1}}}), identities) == {msg}
	errors_of(object.union(levels, {"L3": {"risk": {"approve_max": 101}}}), identities) == {msg}
	errors_of(object.union(levels, {"L3": {"risk": {"auto_max": "45"}}}), identities) == {msg}
	errors_of(json.remove(levels, ["L3/risk"]), identities) == {msg}
}

test_quorum_must_be_a_whole_number_of_at_least_1 if {
	msg := "L3's approval.quorum must be a whole number of at least 1"
	errors_of(object.union(levels, {"L3": {"approval": {"quorum": 0.5}}}), identities) == {msg}
	errors_of(object.union(levels, {"L3": {"approval": {"quorum": 0}}}), identities) == {msg}
	errors_of(object.union(levels, {"L3": {"approval": {"quorum": "2"}}}), identities) == {msg}
}

# --- approvers ---------------------------------------------------------------------------------

test_a_class_the_machine_may_act_on_needs_approvers if {
	ids := json.remove(identities, ["class_approvers/contain_network"])
	errors_of(levels, ids) == {"nobody can approve contain_network: data.identities.class_approvers names no group for it"}
}

test_a_class_only_recommended_needs_no_approvers if {
	lv := object.union(levels, {"L3": {"classes": {"contain_network": "deny"}}})
	ids := json.remove(identities, ["class_approvers/contain_network"])
	errors_of(lv, ids) == set()
}

test_class_approvers_must_name_defined_groups if {
	ids := object.union(identities, {"class_approvers": {"contain_network": ["soc-oncall", "ghosts"]}})
	errors_of(levels, ids) == {"approver group ghosts (class_approvers.contain_network) is not defined in data.identities.approver_groups"}
}

test_class_approvers_must_be_lists_of_names if {
	ids := object.union(identities, {"class_approvers": {"contain_network": "soc-oncall"}})
	errors_of(levels, ids) == {
		"class_approvers.contain_network must be a list of approver group names",
		"nobody can approve contain_network: data.identities.class_approvers names no group for it",
	}
}

test_groups_must_list_members if {
	ids := object.union(identities, {"approver_groups": {"iam-admins": {"members": "dave"}}})
	errors_of(levels, ids) == {"approver group iam-admins must list its members (people's names)"}
}

test_no_service_identity_in_any_approver_group if {
	ids := object.union(identities, {"approver_groups": {"iam-admins": {"members": ["dave", "svc:controller"]}}})
	errors_of(levels, ids) == {"approver group iam-admins lists service identity svc:controller: a machine never approves"}
}

# --- guardrail tunables ------------------------------------------------------------------------

test_tunables_must_be_whole_numbers if {
	errors_with(levels, identities, allowlists, inventory, {"max_addresses_per_block": "256", "privileged_identity_quorum": 0}) == {
		"data.guardrails.max_addresses_per_block must be a whole number of at least 1",
		"data.guardrails.privileged_identity_quorum must be a whole number of at least 1",
	}
}

test_missing_tunables_fall_back_to_defaults if {
	errors_with(levels, identities, allowlists, inventory, {}) == set()
}

# --- compiled indexes --------------------------------------------------------------------------

test_uncompiled_allowlists_are_refused if {
	al := {"networks": allowlists.networks}
	errors_with(levels, identities, al, inventory, tunables) == {"data.allowlists is not compiled: prefixes and by_family (ipv4, ipv6) are missing"}
}

test_a_network_missing_from_the_compiled_view_is_refused if {
	al := object.union(allowlists, {"networks": {"rfc1918-10": {"cidr": "10.0.0.0/8", "bits": "00001010"}}})
	errors_with(levels, identities, al, inventory, tunables) == {"data.allowlists.by_family does not list network rfc1918-10 (compile the data again)"}
}

test_uncompiled_inventory_is_refused if {
	msg := "data.inventory is not compiled: asset_index, address_index and range_index are missing or incomplete"
	errors_with(levels, identities, allowlists, {"assets": inventory.assets}, tunables) == {msg}
	stale := object.union(inventory, {"assets": {"web-02": {"addresses": []}}})
	errors_with(levels, identities, allowlists, stale, tunables) == {msg}
}

test_uncompiled_identities_are_refused if {
	ids := json.remove(identities, ["user_index"])
	errors_of(levels, ids) == {"data.identities is not compiled: user_index is missing or incomplete"}
}

test_uncompiled_special_purpose_registry_is_refused if {
	msg := "data.special_purpose is not compiled: prefixes and by_family (ipv4, ipv6) are missing or incomplete"
	entries := {"100.64.0.0/10": {"name": "Shared Address Space", "rfc": "RFC 6598", "decision": "deny", "reason": "r"}}
	msg in config.errors with data.special_purpose as {"entries": entries}
	stale := {"entries": entries, "prefixes": {"ipv4": ["0110010001"], "ipv6": []}, "by_family": {"ipv4": [], "ipv6": []}}
	msg in config.errors with data.special_purpose as stale
	compiled := object.union(stale, {"by_family": {"ipv4": [{"name": "100.64.0.0/10", "bits": "0110010001", "decision": "deny"}], "ipv6": []}})
	not msg in config.errors with data.special_purpose as compiled
	not msg in config.errors with data.special_purpose as {}
}

# --- the number table --------------------------------------------------------------------------

number_text := [text | some tenths in numbers.range(0, 1000); text := decision.number_text_of(tenths / 10)]

test_the_compiled_number_table_checks_out if {
	number_text[223] == "22.3"
	number_text[450] == "45"
	config.errors == set() with data.number_text as number_text
		with data.levels as levels
		with data.identities as identities
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.guardrails as tunables
		with data.special_purpose as {}
}

test_a_wrong_or_short_number_table_is_refused if {
	msg := "data.number_text must hold the text of each tenth from 0 to 100 (compile the data again)"
	msg in config.errors with data.number_text as array.concat(array.slice(number_text, 0, 1000), ["10"])
	msg in config.errors with data.number_text as array.slice(number_text, 0, 1000)
	msg in config.errors with data.number_text as [concat("", [text, ".0"]) | some text in number_text]
}
