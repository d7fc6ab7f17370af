# Static checks of the data a bundle carries: the level files, the approver set-up, the tunables and
# the indexes the controller compiles. All of it is the same for every decision, so it is checked
# once, when an engine loads the bundle (controller/decision/engines: the embedded engine at construction,
# the OPA engine before its first decision), never per decision. An engine refuses a bundle whose
# `errors` is not empty: every decision is then a deny that names the errors (fail closed).
#
# The per-decision policy (autonomy.decision) relies on these: it no longer re-checks, on every
# decision, that risk limits are ordered, quorums whole, class_approvers groups defined, approver
# groups free of service identities. It still checks what the input selects (the level exists and
# is enabled, the class has a runnable mode, the groups a guardrail adds, the proposer).
#
# Messages name the level, class or group; `errors` is a set of strings, empty when all is well.
package autonomy.config

import data.autonomy.decision

modes := {"execute", "approve", "recommend", "deny"}

# The modes that let the machine act, so that an approval may be needed.
acting_modes := {"execute", "approve"}

# --- levels --------------------------------------------------------------------------------------

errors contains sprintf("level %s must be an object", [name]) if {
	some name, level in data.levels
	not is_object(level)
}

errors contains sprintf("%s's enabled must be true or false", [name]) if {
	some name, level in levels
	not is_boolean(object.get(level, "enabled", null))
}

errors contains sprintf("%s's classes must map each action class to a mode", [name]) if {
	some name, level in levels
	not is_object(object.get(level, "classes", null))
}

errors contains sprintf("%s gives class %s an unknown mode (not execute, approve, recommend or deny)", [name, class]) if {
	some name, level in levels
	some class, mode in level_classes(level)
	not mode in modes
}

# Every level names every class some level names: a class missing from the effective level is a
# deny at decision time, which no level file should cause by omission.
errors contains sprintf("%s defines no mode for class %s", [name, class]) if {
	some name, level in levels
	some class in classes
	not class in object.keys(level_classes(level))
}

errors contains sprintf("%s's risk limits must satisfy 0 <= auto_max <= approve_max <= 100", [name]) if {
	some name, level in levels
	not risk_limits_ok(object.get(level, "risk", null))
}

errors contains sprintf("%s's approval.quorum must be a whole number of at least 1", [name]) if {
	some name, level in levels
	not positive_whole(object.get(level, ["approval", "quorum"], null))
}

levels := {name: level |
	some name
	level := data.levels[name]
	is_object(level)
}

level_classes(level) := level.classes if {
	is_object(level.classes)
} else := {}

classes := {class | some level in levels; some class in object.keys(level_classes(level))}

risk_limits_ok(risk) if {
	is_number(risk.auto_max)
	is_number(risk.approve_max)
	0 <= risk.auto_max
	risk.auto_max <= risk.approve_max
	risk.approve_max <= 100
}

# --- approvers -----------------------------------------------------------------------------------

# A class that some level lets the machine act on may need an approval; someone must be able to give it.
errors contains sprintf("nobody can approve %s: data.identities.class_approvers names no group for it", [class]) if {
	some class in classes
	some level in levels
	mode := level_classes(level)[class]
	mode in acting_modes
	count(class_approver_groups(class)) == 0
}

errors contains sprintf("approver group %s (class_approvers.%s) is not defined in data.identities.approver_groups", [group, class]) if {
	some class, groups in class_approvers
	some group in groups
	not group_defined(group)
}

errors contains sprintf("class_approvers.%s must be a list of approver group names", [class]) if {
	some class, groups in class_approvers
	not string_list(groups)
}

errors contains sprintf("approver group %s must list its members (people's names)", [group]) if {
	some group, definition in approver_groups
	not string_list(object.get(definition, "members", null))
}

# Separation of duties: a machine never approves what a machine proposed. Any group, not just those in
# class_approvers: a guardrail may name one.
errors contains sprintf("approver group %s lists service identity %s: a machine never approves", [group, member]) if {
	some group, definition in approver_groups
	some member in object.get(definition, "members", [])
	member in service_identities
}

default approver_groups := {}

approver_groups := data.identities.approver_groups

default class_approvers := {}

class_approvers := data.identities.class_approvers

service_identities := {s | some s in data.identities.service_identities}

group_defined(group) if is_object(approver_groups[group])

class_approver_groups(class) := groups if {
	groups := class_approvers[class]
	is_array(groups)
} else := []

string_list(value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}

# --- guardrail tunables --------------------------------------------------------------------------

# A cap that is not a number would never be exceeded: every block would pass it.
errors contains sprintf("data.guardrails.%s must be a whole number of at least 1", [name]) if {
	some name in ["max_addresses_per_block", "max_addresses_alone", "privileged_identity_quorum"]
	value := data.guardrails[name]
	not positive_whole(value)
}

# --- compiled indexes ----------------------------------------------------------------------------
# The guardrails read indexes the controller compiles (controller/decision/policy_bundle.py). Data loaded
# without them would make the allowlist and own-asset checks find nothing, and pass: refuse it.

errors contains "data.allowlists is not compiled: prefixes and by_family (ipv4, ipv6) are missing" if {
	count(networks) > 0
	not allowlists_compiled
}

errors contains sprintf("data.allowlists.by_family does not list network %s (compile the data again)", [name]) if {
	allowlists_compiled
	some name, _ in networks
	not name in {entry.name | some family in ["ipv4", "ipv6"]; some entry in data.allowlists.by_family[family]}
}

default networks := {}

networks := data.allowlists.networks

allowlists_compiled if {
	every family in ["ipv4", "ipv6"] {
		is_array(data.allowlists.prefixes[family])
		is_array(data.allowlists.by_family[family])
		count(data.allowlists.prefixes[family]) == count(data.allowlists.by_family[family])
	}
}

# The special-purpose registry (special_purpose/data.yaml) ships with its guardrail, which reads its
# compiled indexes: without them it would find nothing, and every block of a broadcast, multicast or shared
# address would pass. (The controller refuses a policies/ without the file.)
errors contains "data.special_purpose is not compiled: prefixes and by_family (ipv4, ipv6) are missing or incomplete" if {
	count(special_purpose_entries) > 0
	not special_purpose_compiled
}

default special_purpose_entries := {}

special_purpose_entries := data.special_purpose.entries

special_purpose_compiled if {
	every family in ["ipv4", "ipv6"] {
		is_array(data.special_purpose.prefixes[family])
		is_array(data.special_purpose.by_family[family])
		count(data.special_purpose.prefixes[family]) == count(data.special_purpose.by_family[family])
	}
}

errors contains "data.inventory is not compiled: asset_index, address_index and range_index are missing or incomplete" if {
	count(assets) > 0
	not inventory_compiled
}

inventory_compiled if {
	count(hashed_entries(data.inventory.asset_index)) == count(assets)
	is_object(data.inventory.address_index)
	is_object(data.inventory.range_index)
	every family in ["ipv4", "ipv6"] {
		is_array(data.inventory.range_keys[family])
		is_number(data.inventory.range_bucket_bits[family])
	}
}

default assets := {}

assets := data.inventory.assets

errors contains "data.identities is not compiled: user_index is missing or incomplete" if {
	count(users) > 0
	not users_compiled
}

users_compiled if count(hashed_entries(data.identities.user_index)) == count(users)

default users := {}

users := data.identities.users

# The keys of a hashed index ({h[0]: {h[1]: {key: value}}}, see hashed_index in the controller).
hashed_entries(index) := [key | some shelf in index; some leaf in shelf; some key in object.keys(leaf)]

# --- the number table ----------------------------------------------------------------------------

# data.number_text[t] must print t/10 as the policy would without it (autonomy.decision.num). The
# controller generates it from that same rule; checked are its length and a sample of entries (the whole
# table costs OPA about half a second per evaluation, which `autonomy policy test` repeats per test).
errors contains "data.number_text must hold the text of each tenth from 0 to 100 (compile the data again)" if {
	is_array(data.number_text)
	not number_text_ok
}

number_text_ok if {
	count(data.number_text) == 1001
	every tenths in [0, 1, 9, 10, 11, 99, 100, 223, 450, 505, 999, 1000] {
		data.number_text[tenths] == decision.number_text_of(tenths / 10)
	}
}

# --- helpers -------------------------------------------------------------------------------------

positive_whole(n) if {
	is_number(n)
	floor(n) == n
	n >= 1
}
