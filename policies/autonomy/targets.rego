# The input's IP targets, well-formed ones only: what the base policy checks the input against and what
# every network guardrail iterates over (guardrails/targets.rego names them ip_targets).
#
# One pass over each list, shared: the base policy denies any input whose lists are not wholly
# well-formed (count(ips) != count(input.targets.ips)), and the guardrails never see a malformed target,
# so startswith and arithmetic stay away from non-strings, where the engines would fail differently
# (OPA: undefined, regopy with strict built-in errors: an error). Arrays, not sets, so that a duplicate
# target is counted twice (regopy also builds a partial set in time that grows faster than its size).
package autonomy.targets

# Undefined when the list is missing or not an array (the base policy then denies the input). When every
# target is well-formed (always, from the controller) the list is the input's own: no copy is built.
ips := input.targets.ips if {
	all_well_formed
} else := [target | some target in input.targets.ips; well_formed_ip(target)] if {
	is_array(input.targets.ips)
}

# Whether input.targets.ips is an array of well-formed targets only: the base policy's input check.
default all_well_formed := false

all_well_formed if {
	is_array(input.targets.ips)
	every target in input.targets.ips {
		well_formed_ip(target)
	}
}

address_width := {4: 32, 6: 128}

# Which target list each blast radius (registry metadata) must fill; "none" fills none. The base policy
# denies any other radius, and a guardrail denies an action whose list is empty.
target_kinds := {
	"single_address": "ips",
	"network_range": "ips",
	"host": "hosts",
	"identity": "users",
}

# bits carries the prefix in binary, one character per prefix bit (README, "Input document"). Five checks
# cover it all: count(bits) == prefix_len makes prefix_len a whole number >= 0 (a count is one), the
# width lookup makes version 4 or 6, and trim(bits, "01") == "" means only 0s and 1s (one built-in call;
# regex.match costs regopy about 3x more). is_string(bits) comes first: trim of a non-string is an error
# in regopy (strict built-in errors), undefined in OPA.
well_formed_ip(t) if {
	is_string(t.value)
	is_string(t.bits)
	count(t.bits) == t.prefix_len
	t.prefix_len <= address_width[t.version]
	trim(t.bits, "01") == ""
	not malformed_embedded(t)
}

# embedded: the IPv4 prefixes an IPv6 target embeds (IPv4-mapped, NAT64, 6to4, Teredo...), which the
# controller decodes (controller/addresses.py) and every IPv4 check also runs on. Like bits, the policy
# takes them as given. Missing means none (a client that leaves them out loses only those checks, as one
# that sent wrong bits would); present, they must be a list of IPv4 prefix bit strings.
malformed_embedded(t) if {
	embedded := t.embedded
	not ipv4_prefix_list(embedded)
}

ipv4_prefix_list(list) if {
	is_array(list)
	every bits in list {
		is_string(bits)
		count(bits) <= 32
		trim(bits, "01") == ""
	}
}
