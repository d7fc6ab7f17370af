# Targets: the lists every other guardrail iterates over, and a guardrail that they are not empty.
package autonomy.guardrails

# Well-formed targets only. The base policy already denies any malformed target (its input checks),
# so nothing is let through; filtering here keeps startswith and arithmetic away from non-strings,
# where the engines would fail differently (OPA: undefined, regopy with strict errors: an error).
ip_targets contains target if {
	some target in input.targets.ips
	is_string(target.value)
	is_string(target.bits)
	width := address_width[target.version]
	is_number(target.prefix_len)
	target.prefix_len >= 0
	target.prefix_len <= width
}

host_targets contains host if {
	some host in input.targets.hosts
	is_string(host)
}

user_targets contains user if {
	some user in input.targets.users
	is_string(user)
}

address_width := {4: 32, 6: 128}

# Which target list each blast radius (registry metadata) must fill.
target_kind_for_blast_radius := {
	"single_address": "ips",
	"network_range": "ips",
	"host": "hosts",
	"identity": "users",
}

# An action that changes something must name what it changes: with an empty target list every other
# guardrail would pass vacuously.
deny contains msg if {
	kind := target_kind_for_blast_radius[input.action.blast_radius]
	count(object.get(input, ["targets", kind], [])) == 0
	msg := sprintf(
		"%s has blast radius %s but names no target in targets.%s: nothing to check it against",
		[input.action.name, input.action.blast_radius, kind],
	)
}
