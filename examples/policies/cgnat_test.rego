package cgnat_test

import data.autonomy.guardrails

# Targets as the controller gives them (input.targets.ips). The rule reads `value` alone; `bits` (the prefix
# in binary, which the base policy checks for its length) is filled with zeros here.
address(value, version) := target(value, version, {4: 32, 6: 128}[version])

network(value, version) := target(value, version, to_number(split(value, "/")[1]))

target(value, version, prefix_len) := {
	"value": value,
	"version": version,
	"prefix_len": prefix_len,
	"bits": concat("", ["0" | some _ in numbers.range(1, prefix_len)]),
}

denied(target) if {
	some msg in guardrails.deny with input as {
		"action": {"class": "contain_network", "name": "network.block_ip"},
		"targets": {"ips": [target]},
	}
	contains(msg, "carrier-grade NAT")
}

test_every_address_in_the_range_is_denied if {
	every value in ["100.64.0.0", "100.64.12.7", "100.127.255.255"] {
		denied(address(value, 4))
	}
}

test_the_neighbours_are_not if {
	every value in ["100.63.255.255", "100.128.0.0", "198.51.100.66"] {
		not denied(address(value, 4))
	}
}

test_ipv4_mapped_and_nat64_spellings_are_denied if {
	denied(address("::ffff:100.64.12.7", 6))
	denied(address("64:ff9b::100.64.12.7", 6))
	not denied(address("::ffff:100.128.0.1", 6))
	not denied(address("64:ff9b::100.128.0.1", 6))
	not denied(address("2001:db8::66", 6))
}

test_ranges_that_overlap_are_denied if {
	denied(network("100.0.0.0/8", 4)) # holds it
	denied(network("100.96.0.0/11", 4)) # inside it
	denied(network("::ffff:100.64.0.0/104", 6))
	not denied(network("100.128.0.0/9", 4))
}

test_only_blocks if {
	msgs := guardrails.deny with input as {
		"action": {"class": "investigate", "name": "investigate.ip_reputation"},
		"targets": {"ips": [address("100.64.12.7", 4)]},
	}
	every msg in msgs {
		not contains(msg, "carrier-grade NAT")
	}
}
