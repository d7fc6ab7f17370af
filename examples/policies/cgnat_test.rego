package cgnat_test

import data.autonomy.guardrails

# Targets as the controller gives them (input.targets.ips), their prefix bits computed here, in the test.
ipv4(address) := {"value": address, "version": 4, "prefix_len": 32, "bits": ipv4_bits(address), "embedded": [], "num_addresses": 1}

ipv4_range(address, prefix_len) := {
	"value": sprintf("%s/%d", [address, prefix_len]),
	"version": 4,
	"prefix_len": prefix_len,
	"bits": substring(ipv4_bits(address), 0, prefix_len),
	"embedded": [],
	"num_addresses": 1,
}

# ::ffff:a.b.c.d: the IPv6 spelling of an IPv4 address on any dual-stack socket.
ipv4_mapped(address) := {
	"value": concat("", ["::ffff:", address]),
	"version": 6,
	"prefix_len": 128,
	"bits": concat("", [concat("", ["0" | some _ in numbers.range(1, 80)]), "1111111111111111", ipv4_bits(address)]),
	"embedded": [ipv4_bits(address)],
	"num_addresses": 1,
}

ipv4_bits(address) := concat("", [octet_bits(octet) | some octet in split(address, ".")])

octet_bits(octet) := concat("", [substring("00000000", 0, 8 - count(bits)), bits]) if {
	bits := format_int(to_number(octet), 2)
}

denied(target) if {
	some msg in guardrails.deny with input as {
		"action": {"class": "contain_network", "name": "network.block_ip"},
		"targets": {"ips": [target]},
	}
	contains(msg, "carrier-grade NAT")
}

test_every_address_in_the_range_is_denied if {
	every address in ["100.64.0.0", "100.64.12.7", "100.127.255.255"] {
		denied(ipv4(address))
	}
}

test_the_neighbours_are_not if {
	every address in ["100.63.255.255", "100.128.0.0", "198.51.100.66"] {
		not denied(ipv4(address))
	}
}

test_ipv4_mapped_spellings_are_denied if {
	denied(ipv4_mapped("100.64.12.7"))
	not denied(ipv4_mapped("100.128.0.1"))
}

test_ranges_that_overlap_are_denied if {
	denied(ipv4_range("100.0.0.0", 8)) # holds it
	denied(ipv4_range("100.96.0.0", 11)) # inside it
	not denied(ipv4_range("100.128.0.0", 9))
}

test_only_blocks if {
	msgs := guardrails.deny with input as {
		"action": {"class": "investigate", "name": "investigate.ip_reputation"},
		"targets": {"ips": [ipv4("100.64.12.7")]},
	}
	every msg in msgs {
		not contains(msg, "carrier-grade NAT")
	}
}
