# Targets: the lists every other guardrail iterates over, and a guardrail that they are not empty.
package autonomy.guardrails

import data.autonomy.targets

# The action's class, read once: every guardrail starts from it (a rule reference costs regopy less
# than the input path).
action_class := input.action.class

# The well-formed targets (IPs: package autonomy.targets); the base policy denies any malformed one.
ip_targets := targets.ips

host_targets contains host if {
	some host in input.targets.hosts
	is_string(host)
}

user_targets contains user if {
	some user in input.targets.users
	is_string(user)
}

# The ranges among them (not a whole address).
range_targets := [target | some target in ip_targets; target.prefix_len < address_width[target.version]]

# The IPv4 addresses the IPv6 targets embed (IPv4-mapped ::ffff:198.51.100.254 reaches 198.51.100.254; NAT64,
# 6to4 and Teredo addresses carry one too), as IPv4 prefix bits that the controller decodes (`embedded`,
# controller/addresses.py): the network guardrails run every IPv4 check on them too, or they would slip past
# an IPv4 allowlist entry, asset or special-purpose block.
embedded_targets := [{"value": target.value, "bits": bits} |
	some target in ip_targets
	some bits in target.embedded
]

# The compiled address data (data.allowlists, data.inventory, data.special_purpose) is keyed by family.
families := {4: "ipv4", 6: "ipv6"}

# --- lookups -----------------------------------------------------------------------------------
# Look assets and users up through these, not data.inventory.assets[name] or data.identities.users[name]:
# regopy 1.5.2 finds a key in an object by walking the keys in order (0.5 us per key: up to ~3 ms in a
# 5,000-asset inventory). The controller compiles hashed copies (controller/decision/policy_bundle.py, hashed_index):
# {h[0]: {h[1]: {key: value}}} with h the hex md5 of the key, so a lookup walks at most 16 + 16 keys and a
# leaf of about 1/256 of the entries.
# Written in steps, one variable key per ref, each computed by a statement of its own: in a function,
# regopy walks the whole index for data.x[first][second][name] (0.3 ms at 5,000 assets; 70 ms with the
# variable first), and likewise for a built-in call in the brackets or keys from `[a, b] := f(x)`.

# The inventory asset named name (undefined when there is none).
asset_named(name) := asset if {
	digest := crypto.md5(name)
	first := substring(digest, 0, 1)
	second := substring(digest, 1, 1)
	shelf := data.inventory.asset_index[first]
	leaf := shelf[second]
	asset := leaf[name]
}

known_asset(name) if is_object(asset_named(name))

# The directory entry of user name (undefined when there is none).
user_named(name) := user if {
	digest := crypto.md5(name)
	first := substring(digest, 0, 1)
	second := substring(digest, 1, 1)
	shelf := data.identities.user_index[first]
	leaf := shelf[second]
	user := leaf[name]
}

known_user(name) if is_object(user_named(name))

address_width := {4: 32, 6: 128}

# An action that changes something must name what it changes: with an empty target list every other
# guardrail would pass vacuously. targets.target_kinds says which list each blast radius must fill.

# METADATA
# title: An action that changes something names a target
# description: An action whose blast radius implies a target but names none is denied.
deny contains msg if {
	kind := targets.target_kinds[input.action.blast_radius]
	not names_a_target(kind)
	count(object.get(input, ["targets", kind], [])) == 0
	msg := sprintf(
		"%s has blast radius %s but names no target in targets.%s: nothing to check it against",
		[input.action.name, input.action.blast_radius, kind],
	)
}

# Whether targets.<kind> holds anything: false for a missing, empty or scalar list. The deny above
# counts only when it is false (a list that holds something does not count 0), so the usual action,
# which names its target, costs no built-in call here.
names_a_target(kind) if {
	listed := input.targets
	some _ in listed[kind]
}
