# Fixtures shared by the guardrail tests. Bit strings were computed with Python's ipaddress
# (format(int(network.network_address), "0{width}b")[:prefix_len]), as the controller does.
package autonomy.guardrails_test

import data.autonomy.guardrails

# IP targets as the controller puts them in input.targets.ips (controller/addresses.py, address_facts), keyed by
# canonical value.
ip := {
	"198.51.100.66": {"value": "198.51.100.66", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010001000010", "embedded": [], "num_addresses": 1},
	"198.51.100.254": {"value": "198.51.100.254", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010011111110", "embedded": [], "num_addresses": 1},
	"198.51.100.0/24": {"value": "198.51.100.0/24", "version": 4, "prefix_len": 24, "bits": "110001100011001101100100", "embedded": [], "num_addresses": 256},
	"198.51.100.0/25": {"value": "198.51.100.0/25", "version": 4, "prefix_len": 25, "bits": "1100011000110011011001000", "embedded": [], "num_addresses": 128},
	"198.51.100.1": {"value": "198.51.100.1", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010000000001", "embedded": [], "num_addresses": 1},
	"10.1.2.3": {"value": "10.1.2.3", "version": 4, "prefix_len": 32, "bits": "00001010000000010000001000000011", "embedded": [], "num_addresses": 1},
	"10.0.0.0/8": {"value": "10.0.0.0/8", "version": 4, "prefix_len": 8, "bits": "00001010", "embedded": [], "num_addresses": 16777216},
	"0.0.0.0/0": {"value": "0.0.0.0/0", "version": 4, "prefix_len": 0, "bits": "", "embedded": [], "num_addresses": 4294967296},
	"203.0.113.7": {"value": "203.0.113.7", "version": 4, "prefix_len": 32, "bits": "11001011000000000111000100000111", "embedded": [], "num_addresses": 1},
	"203.0.113.0/24": {"value": "203.0.113.0/24", "version": 4, "prefix_len": 24, "bits": "110010110000000001110001", "embedded": [], "num_addresses": 256},
	"192.0.2.0/24": {"value": "192.0.2.0/24", "version": 4, "prefix_len": 24, "bits": "110000000000000000000010", "embedded": [], "num_addresses": 256},
	"::1": {"value": "::1", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001", "embedded": ["00000000000000000000000000000001"], "num_addresses": 1},
	"::ffff:c633:64fe": {"value": "::ffff:c633:64fe", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111000110001100110110010011111110", "embedded": ["11000110001100110110010011111110"], "num_addresses": 1},
	"::/0": {"value": "::/0", "version": 6, "prefix_len": 0, "bits": "", "embedded": [""], "num_addresses": 340282366920938463463374607431768211456},
	"::/80": {"value": "::/80", "version": 6, "prefix_len": 80, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000", "embedded": [""], "num_addresses": 281474976710656},
	"::ffff:c633:6401": {"value": "::ffff:c633:6401", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111000110001100110110010000000001", "embedded": ["11000110001100110110010000000001"], "num_addresses": 1},
	"192.0.2.25": {"value": "192.0.2.25", "version": 4, "prefix_len": 32, "bits": "11000000000000000000001000011001", "embedded": [], "num_addresses": 1},
	"192.0.0.0/16": {"value": "192.0.0.0/16", "version": 4, "prefix_len": 16, "bits": "1100000000000000", "embedded": [], "num_addresses": 65536},
	"2001:db8::/64": {"value": "2001:db8::/64", "version": 6, "prefix_len": 64, "bits": "0010000000000001000011011011100000000000000000000000000000000000", "embedded": [], "num_addresses": 18446744073709551616},
	"2001:db8::25": {"value": "2001:db8::25", "version": 6, "prefix_len": 128, "bits": "00100000000000010000110110111000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000100101", "embedded": [], "num_addresses": 1},
	"::ffff:0:0/96": {"value": "::ffff:0:0/96", "version": 6, "prefix_len": 96, "bits": "000000000000000000000000000000000000000000000000000000000000000000000000000000001111111111111111", "embedded": [""], "num_addresses": 4294967296},
	"192.0.2.128/25": {"value": "192.0.2.128/25", "version": 4, "prefix_len": 25, "bits": "1100000000000000000000101", "embedded": [], "num_addresses": 128},
	"::ffff:c000:200/120": {"value": "::ffff:c000:200/120", "version": 6, "prefix_len": 120, "bits": "000000000000000000000000000000000000000000000000000000000000000000000000000000001111111111111111110000000000000000000010", "embedded": ["110000000000000000000010"], "num_addresses": 256},
	"2001:db8::1": {"value": "2001:db8::1", "version": 6, "prefix_len": 128, "bits": "00100000000000010000110110111000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001", "embedded": [], "num_addresses": 1},
	"100.64.1.2": {"value": "100.64.1.2", "version": 4, "prefix_len": 32, "bits": "01100100010000000000000100000010", "embedded": [], "num_addresses": 1},
	"100.0.0.0/9": {"value": "100.0.0.0/9", "version": 4, "prefix_len": 9, "bits": "011001000", "embedded": [], "num_addresses": 8388608},
	"100.64.1.0/24": {"value": "100.64.1.0/24", "version": 4, "prefix_len": 24, "bits": "011001000100000000000001", "embedded": [], "num_addresses": 256},
	"224.0.0.5": {"value": "224.0.0.5", "version": 4, "prefix_len": 32, "bits": "11100000000000000000000000000101", "embedded": [], "num_addresses": 1},
	"ff02::1": {"value": "ff02::1", "version": 6, "prefix_len": 128, "bits": "11111111000000100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001", "embedded": [], "num_addresses": 1},
	"::": {"value": "::", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", "embedded": ["00000000000000000000000000000000"], "num_addresses": 1},
	"2002:6440:102::": {"value": "2002:6440:102::", "version": 6, "prefix_len": 128, "bits": "00100000000000100110010001000000000000010000001000000000000000000000000000000000000000000000000000000000000000000000000000000000", "embedded": ["01100100010000000000000100000010"], "num_addresses": 1},
	"2002:c633:6442::": {"value": "2002:c633:6442::", "version": 6, "prefix_len": 128, "bits": "00100000000000101100011000110011011001000100001000000000000000000000000000000000000000000000000000000000000000000000000000000000", "embedded": ["11000110001100110110010001000010"], "num_addresses": 1},
	"64:ff9b::6440:102": {"value": "64:ff9b::6440:102", "version": 6, "prefix_len": 128, "bits": "00000000011001001111111110011011000000000000000000000000000000000000000000000000000000000000000001100100010000000000000100000010", "embedded": ["01100100010000000000000100000010"], "num_addresses": 1},
	"2001:0:c633:6442::9bbf:fefd": {"value": "2001:0:c633:6442::9bbf:fefd", "version": 6, "prefix_len": 128, "bits": "00100000000000010000000000000000110001100011001101100100010000100000000000000000000000000000000010011011101111111111111011111101", "embedded": ["11000110001100110110010001000010", "01100100010000000000000100000010"], "num_addresses": 1},
	"::ffff:6440:102": {"value": "::ffff:6440:102", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111101100100010000000000000100000010", "embedded": ["01100100010000000000000100000010"], "num_addresses": 1},
	"2002:c633:6401::": {"value": "2002:c633:6401::", "version": 6, "prefix_len": 128, "bits": "00100000000000101100011000110011011001000000000100000000000000000000000000000000000000000000000000000000000000000000000000000000", "embedded": ["11000110001100110110010000000001"], "num_addresses": 1},
	"2002::/15": {"value": "2002::/15", "version": 6, "prefix_len": 15, "bits": "001000000000001", "embedded": [""], "num_addresses": 10384593717069655257060992658440192},
	"192.0.2.7": {"value": "192.0.2.7", "version": 4, "prefix_len": 32, "bits": "11000000000000000000001000000111", "embedded": [], "num_addresses": 1},
	"2002:c034:c101::": {"value": "2002:c034:c101::", "version": 6, "prefix_len": 128, "bits": "00100000000000101100000000110100110000010000000100000000000000000000000000000000000000000000000000000000000000000000000000000000", "embedded": ["11000000001101001100000100000001"], "num_addresses": 1},
	"192.52.193.1": {"value": "192.52.193.1", "version": 4, "prefix_len": 32, "bits": "11000000001101001100000100000001", "embedded": [], "num_addresses": 1},
}

# As controller/decision/policy_bundle.py compiles allowlists/data.yaml (generated with its _compile_allowlists):
# every network with its address facts, plus by_family and prefixes, where the IPv4-mapped
# partner-monitor entry is listed under ipv4 as well.
allowlists := {
	"networks": {
		"lab-gateway": {"cidr": "198.51.100.254/32", "reason": "our gateway", "value": "198.51.100.254", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010011111110", "num_addresses": 1},
		"rfc1918-10": {"cidr": "10.0.0.0/8", "reason": "private range", "value": "10.0.0.0/8", "version": 4, "prefix_len": 8, "bits": "00001010", "num_addresses": 16777216},
		"loopback-v6": {"cidr": "::1/128", "reason": "loopback", "value": "::1", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001", "num_addresses": 1},
		"partner-monitor": {"cidr": "::ffff:203.0.113.7/128", "reason": "partner monitor, listed IPv4-mapped", "value": "::ffff:cb00:7107", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111001011000000000111000100000111", "num_addresses": 1},
	},
	"by_family": {
		"ipv4": [
			{"name": "lab-gateway", "bits": "11000110001100110110010011111110"},
			{"name": "partner-monitor", "bits": "11001011000000000111000100000111"},
			{"name": "rfc1918-10", "bits": "00001010"},
		],
		"ipv6": [
			{"name": "loopback-v6", "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"},
			{"name": "partner-monitor", "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111001011000000000111000100000111"},
		],
	},
	"prefixes": {
		"ipv4": ["11000110001100110110010011111110", "11001011000000000111000100000111", "00001010"],
		"ipv6": [
			"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001",
			"00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111001011000000000111000100000111",
		],
	},
}

# The inventory as the controller compiles it (controller/decision/policy_bundle.py, _compile_inventory): the assets,
# plus their hashed indexes. mail-01's ::ffff:192.0.2.25 is IPv4-mapped, so it is indexed as 192.0.2.25 too.
assets := {
	"web-01": {"crown_jewel": false, "addresses": ["198.51.100.1", "203.0.113.1"]},
	"db-01": {"crown_jewel": true, "addresses": ["192.0.2.99"]},
	"dc-01": {"crown_jewel": true, "addresses": ["10.10.0.10"]},
	"mail-01": {"crown_jewel": false, "addresses": ["2001:db8::25", "::ffff:192.0.2.25"]},
}

# Every asset address by its bits.
address_bits := {
	"11000110001100110110010000000001": "web-01",
	"11001011000000000111000100000001": "web-01",
	"11000000000000000000001001100011": "db-01",
	"00001010000010100000000000001010": "dc-01",
	"00100000000000010000110110111000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000100101": "mail-01",
	"00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111000000000000000000001000011001": "mail-01",
	"11000000000000000000001000011001": "mail-01",
}

# The same addresses per family, bucketed by their first 24 (IPv4) or 64 (IPv6) bits.
range_buckets := {
	"ipv4": {
		"110001100011001101100100": {"11000110001100110110010000000001": "web-01"},
		"110010110000000001110001": {"11001011000000000111000100000001": "web-01"},
		"110000000000000000000010": {
			"11000000000000000000001001100011": "db-01",
			"11000000000000000000001000011001": "mail-01",
		},
		"000010100000101000000000": {"00001010000010100000000000001010": "dc-01"},
	},
	"ipv6": {
		"0010000000000001000011011011100000000000000000000000000000000000": {"00100000000000010000110110111000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000100101": "mail-01"},
		"0000000000000000000000000000000000000000000000000000000000000000": {"00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111000000000000000000001000011001": "mail-01"},
	},
}

inventory := {
	"assets": assets,
	"asset_index": hashed(assets),
	"address_index": hashed(address_bits),
	"range_index": hashed(object.union(range_buckets.ipv4, range_buckets.ipv6)),
	"range_keys": {family: sort(object.keys(buckets)) | some family, buckets in range_buckets},
	"range_bucket_bits": {"ipv4": 24, "ipv6": 64},
}

# The controller's hashed_index: {h[0]: {h[1]: {key: value}}}, h the hex md5 of the key.
hashed(entries) := {first: {second: leaf(entries, first, second) |
	some key, _ in entries
	startswith(crypto.md5(key), first)
	second := substring(crypto.md5(key), 1, 1)
} |
	some key, _ in entries
	first := substring(crypto.md5(key), 0, 1)
}

leaf(entries, first, second) := {key: value |
	some key, value in entries
	startswith(crypto.md5(key), concat("", [first, second]))
}

# As controller/decision/policy_bundle.py compiles special_purpose/data.yaml (_compile_special_purpose), for a few
# entries (the policy reads name, rfc and reason of an entry; the compiler adds address facts too): deny and
# approve entries indexed per family, the allow (documentation) entry left out of the indexes.
special_purpose := {
	"approval": {"group": "soc-oncall", "quorum": 1},
	"entries": {
		"100.64.0.0/10": {"name": "Shared Address Space", "rfc": "RFC 6598", "decision": "deny", "reason": "shared by many"},
		"192.52.193.0/24": {"name": "AMT", "rfc": "RFC 7450", "decision": "approve", "reason": "relays, a person decides"},
		"224.0.0.0/4": {"name": "Multicast", "rfc": "RFC 5771", "decision": "deny", "reason": "never a source"},
		"192.0.2.0/24": {"name": "Documentation (TEST-NET-1)", "rfc": "RFC 5737", "decision": "allow", "reason": "stays blockable"},
		"::/128": {"name": "Unspecified Address", "rfc": "RFC 4291", "decision": "deny", "reason": "never a source"},
		"ff00::/8": {"name": "Multicast", "rfc": "RFC 4291", "decision": "deny", "reason": "never a source"},
		"2002::/16": {"name": "6to4", "rfc": "RFC 3056", "decision": "approve", "reason": "a person decides"},
	},
	"by_family": {
		"ipv4": [
			{"name": "192.52.193.0/24", "bits": "110000000011010011000001", "decision": "approve"},
			{"name": "100.64.0.0/10", "bits": "0110010001", "decision": "deny"},
			{"name": "224.0.0.0/4", "bits": "1110", "decision": "deny"},
		],
		"ipv6": [
			{"name": "::/128", "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", "decision": "deny"},
			{"name": "2002::/16", "bits": "0010000000000010", "decision": "approve"},
			{"name": "ff00::/8", "bits": "11111111", "decision": "deny"},
		],
	},
	"prefixes": {
		"ipv4": ["110000000011010011000001", "0110010001", "1110"],
		"ipv6": ["00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", "0010000000000010", "11111111"],
	},
}

users := {
	"alice": {"privileged": false},
	"bob": {"privileged": false},
	"admin": {"privileged": true},
}

# As the controller compiles identities/data.yaml (_compile_identities): user_index is users, hashed.
identities := {
	"users": users,
	"user_index": hashed(users),
	"approver_groups": {
		"soc-oncall": {"members": ["bob", "carol"]},
		"iam-admins": {"members": ["dave", "erin", "ivan"]},
	},
	"class_approvers": {
		"contain_network": ["soc-oncall"],
		"contain_host": ["soc-oncall"],
		"contain_identity": ["iam-admins"],
		"restore": ["soc-oncall"],
	},
	"service_identities": ["planner:offline", "planner:claude", "svc:controller"],
}

tunables := {"max_addresses_per_block": 256, "privileged_identity_quorum": 2}

# The guardrails' outputs for one input, against the fixtures above.
denies(inp) := out if {
	out := guardrails.deny with input as inp
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.special_purpose as special_purpose
		with data.identities as identities
		with data.guardrails as tunables
}

# The guardrails' deny with another cap.
denies_capped(inp, cap) := out if {
	out := guardrails.deny with input as inp
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.special_purpose as special_purpose
		with data.identities as identities
		with data.guardrails as object.union(tunables, {"max_addresses_per_block": cap})
}

approvals(inp) := out if {
	out := guardrails.require_approval with input as inp
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.special_purpose as special_purpose
		with data.identities as identities
		with data.guardrails as tunables
}

# Inputs for the registry's actions (only the fields the guardrails read).
action_input(name, class, blast_radius, targets) := {
	"action": {"id": "a1", "name": name, "class": class, "blast_radius": blast_radius, "ttl_seconds": 3600},
	"targets": object.union({"ips": [], "hosts": [], "users": [], "unrelated": []}, targets),
	"level": {"declared": "L3", "effective": "L3", "downgrades": []},
	"risk": {"score": 30},
	"context": {"proposer": "planner:offline"},
	"plan": {"class_actions": 1, "class_addresses": 1},
}

ips_of(values) := [ip[v] | some v in values]

# A block of the case's source, which a sensor saw hold a connection (guardrails/entities.rego): every single
# address among `values` is one. `forged_block` is the same block when only forgeable packets carried them.
block(values) := object.union(forged_block(values), {"context": {"connected_sources": [source |
	some v in values
	ip[v].num_addresses == 1
	source := {"bits": ip[v].bits, "version": ip[v].version, "value": v}
]}})

# A connected source of the case (context.connected_sources), as the controller spells one.
source_of(value) := {"bits": ip[value].bits, "version": ip[value].version, "value": value} if ip[value]

source_of(value) := {"bits": "11000000000000000000001011001000", "version": 4, "value": value} if value == "192.0.2.200"

sourced_in(inp, value) := object.union(inp, {"context": {"connected_sources": [source_of(value)]}})

forged_block(values) := action_input("network.block_ip", "contain_network", "single_address", {"ips": ips_of(values)})

unblock(values) := action_input("network.unblock_ip", "restore", "single_address", {"ips": ips_of(values)})

lookup(values) := action_input("investigate.ip_reputation", "investigate", "none", {"ips": ips_of(values)})

isolate(host) := action_input("host.isolate", "contain_host", "host", {"hosts": [host]})

release(host) := action_input("host.release", "restore", "host", {"hosts": [host]})

host_activity(host) := action_input("investigate.host_activity", "investigate", "none", {"hosts": [host]})

disable(user) := action_input("identity.disable_user", "contain_identity", "identity", {"users": [user]})

enable(user) := action_input("identity.enable_user", "restore", "identity", {"users": [user]})

# The same input on hosts and accounts the sensors put in the attacker's hands (guardrails/entities.rego): the
# source of the case's alerts, an account a login service saw guessed. For the tests of the other guardrails.
held(inp) := object.union(inp, {"context": {"source_assets": inp.targets.hosts, "guessed_users": inp.targets.users}})
