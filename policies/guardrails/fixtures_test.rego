# Fixtures shared by the guardrail tests. Bit strings were computed with Python's ipaddress
# (format(int(network.network_address), "0{width}b")[:prefix_len]), as the controller does.
package autonomy.guardrails_test

import data.autonomy.guardrails

# IP targets as the controller puts them in input.targets.ips, keyed by canonical value.
ip := {
	"198.51.100.66": {"value": "198.51.100.66", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010001000010", "num_addresses": 1},
	"198.51.100.254": {"value": "198.51.100.254", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010011111110", "num_addresses": 1},
	"198.51.100.0/24": {"value": "198.51.100.0/24", "version": 4, "prefix_len": 24, "bits": "110001100011001101100100", "num_addresses": 256},
	"198.51.100.0/25": {"value": "198.51.100.0/25", "version": 4, "prefix_len": 25, "bits": "1100011000110011011001000", "num_addresses": 128},
	"198.51.100.1": {"value": "198.51.100.1", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010000000001", "num_addresses": 1},
	"10.1.2.3": {"value": "10.1.2.3", "version": 4, "prefix_len": 32, "bits": "00001010000000010000001000000011", "num_addresses": 1},
	"10.0.0.0/8": {"value": "10.0.0.0/8", "version": 4, "prefix_len": 8, "bits": "00001010", "num_addresses": 16777216},
	"0.0.0.0/0": {"value": "0.0.0.0/0", "version": 4, "prefix_len": 0, "bits": "", "num_addresses": 4294967296},
	"203.0.113.7": {"value": "203.0.113.7", "version": 4, "prefix_len": 32, "bits": "11001011000000000111000100000111", "num_addresses": 1},
	"203.0.113.0/24": {"value": "203.0.113.0/24", "version": 4, "prefix_len": 24, "bits": "110010110000000001110001", "num_addresses": 256},
	"192.0.2.0/24": {"value": "192.0.2.0/24", "version": 4, "prefix_len": 24, "bits": "110000000000000000000010", "num_addresses": 256},
	"::1": {"value": "::1", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001", "num_addresses": 1},
	"::ffff:c633:64fe": {"value": "::ffff:c633:64fe", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111000110001100110110010011111110", "num_addresses": 1},
	"::/0": {"value": "::/0", "version": 6, "prefix_len": 0, "bits": "", "num_addresses": 340282366920938463463374607431768211456},
	"::/80": {"value": "::/80", "version": 6, "prefix_len": 80, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000", "num_addresses": 281474976710656},
	"2001:db8::1": {"value": "2001:db8::1", "version": 6, "prefix_len": 128, "bits": "00100000000000010000110110111000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001", "num_addresses": 1},
}

allowlists := {"networks": {
	"lab-gateway": {"cidr": "198.51.100.254/32", "reason": "our gateway", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010011111110"},
	"rfc1918-10": {"cidr": "10.0.0.0/8", "reason": "private range", "version": 4, "prefix_len": 8, "bits": "00001010"},
	"loopback-v6": {"cidr": "::1/128", "reason": "loopback", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"},
	"partner-monitor": {"cidr": "::ffff:203.0.113.7/128", "reason": "partner monitor, listed IPv4-mapped", "version": 6, "prefix_len": 128, "bits": "00000000000000000000000000000000000000000000000000000000000000000000000000000000111111111111111111001011000000000111000100000111"},
}}

# As the controller compiles it: assets keyed by name, plus the bucketed index of every asset address
# (only some of the 256 buckets here; a missing bucket is simply no match).
inventory := {
	"assets": {
		"web-01": {"crown_jewel": false, "addresses": ["198.51.100.1", "203.0.113.1"]},
		"db-01": {"crown_jewel": true, "addresses": ["192.0.2.99"]},
		"dc-01": {"crown_jewel": true, "addresses": ["10.10.0.10"]},
	},
	"address_index": {
		"00000001": {
			"198.51.100.1": {"asset": "web-01", "value": "198.51.100.1", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010000000001", "num_addresses": 1},
			"203.0.113.1": {"asset": "web-01", "value": "203.0.113.1", "version": 4, "prefix_len": 32, "bits": "11001011000000000111000100000001", "num_addresses": 1},
		},
		"01100011": {"192.0.2.99": {"asset": "db-01", "value": "192.0.2.99", "version": 4, "prefix_len": 32, "bits": "11000000000000000000001001100011", "num_addresses": 1}},
		"00001010": {"10.10.0.10": {"asset": "dc-01", "value": "10.10.0.10", "version": 4, "prefix_len": 32, "bits": "00001010000010100000000000001010", "num_addresses": 1}},
		"01000010": {},
	},
}

identities := {
	"users": {
		"alice": {"privileged": false},
		"bob": {"privileged": false},
		"admin": {"privileged": true},
	},
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
		with data.identities as identities
		with data.guardrails as tunables
}

approvals(inp) := out if {
	out := guardrails.require_approval with input as inp
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.identities as identities
		with data.guardrails as tunables
}

# Inputs for the registry's actions (only the fields the guardrails read).
action_input(name, class, blast_radius, targets) := {
	"action": {"id": "a1", "name": name, "class": class, "blast_radius": blast_radius},
	"targets": object.union({"ips": [], "hosts": [], "users": []}, targets),
	"level": {"declared": "L3", "effective": "L3", "downgrades": []},
	"risk": {"score": 30},
	"context": {"proposer": "planner:offline"},
}

ips_of(values) := [ip[v] | some v in values]

block(values) := action_input("network.block_ip", "contain_network", "single_address", {"ips": ips_of(values)})

unblock(values) := action_input("network.unblock_ip", "restore", "single_address", {"ips": ips_of(values)})

lookup(values) := action_input("investigate.ip_reputation", "investigate", "none", {"ips": ips_of(values)})

isolate(host) := action_input("host.isolate", "contain_host", "host", {"hosts": [host]})

release(host) := action_input("host.release", "restore", "host", {"hosts": [host]})

host_activity(host) := action_input("investigate.host_activity", "investigate", "none", {"hosts": [host]})

disable(user) := action_input("identity.disable_user", "contain_identity", "identity", {"users": [user]})

enable(user) := action_input("identity.enable_user", "restore", "identity", {"users": [user]})
