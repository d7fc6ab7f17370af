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

# The IPv4-mapped IPv6 targets (::ffff:198.51.100.254 reaches 198.51.100.254), as IPv4 prefix bits: the
# network guardrails compare them as IPv4 too, or they would slip past an IPv4 allowlist entry.
mapped_targets := [{"value": target.value, "bits": bits} |
	some target in ip_targets
	bits := ipv4_bits_of_mapped_target(target)
]

# A function, so that `==` is a comparison: in a comprehension regopy makes it a built-in call.
ipv4_bits_of_mapped_target(target) := ipv4_bits_of_mapped(target.bits) if target.version == 6

# The compiled address data (data.allowlists, data.inventory) is keyed by family.
families := {4: "ipv4", 6: "ipv6"}

# ::ffff:0:0/96 in bits: 80 zeros, then 16 ones (the controller's IPV4_MAPPED_PREFIX).
ipv4_mapped_prefix := "000000000000000000000000000000000000000000000000000000000000000000000000000000001111111111111111"

# The IPv4 part of an IPv6 prefix inside ::ffff:0:0/96.
ipv4_bits_of_mapped(bits6) := substring(bits6, 96, count(bits6) - 96) if {
	count(bits6) >= 96
	startswith(bits6, ipv4_mapped_prefix)
}

# A shorter IPv6 prefix that contains all of ::ffff:0:0/96 contains every IPv4 address.
ipv4_bits_of_mapped(bits6) := "" if {
	count(bits6) < 96
	startswith(ipv4_mapped_prefix, bits6)
}

# --- lookups -----------------------------------------------------------------------------------
# Look assets and users up through these, not data.inventory.assets[name] or data.identities.users[name]:
# regopy 1.5.2 finds a key in an object by walking the keys in order (0.5 us per key: up to ~3 ms in a
# 5,000-asset inventory). The controller compiles hashed copies (controller/policy_bundle.py, hashed_index):
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
