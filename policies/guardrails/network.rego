# Network guardrails: what a block (class contain_network) must never touch, and how much at once.
#
# Addresses are compared only through the precomputed prefix bit strings (README, "Input document"):
# regopy has no net.* built-ins. Two ranges of one version overlap iff one's bits start with the other's.
# Unblocking (restore) and lookups (investigate) may touch these ranges, so only blocks are checked.
package autonomy.guardrails

blocking if input.action.class == "contain_network"

# Gateways, private, loopback, link-local and partner ranges (data.allowlists.networks, keyed by name).
deny contains msg if {
	blocking
	some target in ip_targets
	some name, network in data.allowlists.networks
	overlaps(target, network)
	msg := sprintf(
		"%s on %s would hit allowlisted %s (%s): %s",
		[input.action.name, target.value, name, network.cidr, network.reason],
	)
}

# Our own assets: blocking them is a self-inflicted outage, whatever the alert says.
deny contains msg if {
	blocking
	some hit in own_asset_hits
	msg := sprintf("%s on %s would cut off our own asset %s", [input.action.name, hit.target, hit.asset])
}

# A cap per action, so that 0.0.0.0/0, a /8 or a long list of ranges is never blocked in one go.
deny contains msg if {
	blocking
	addresses_blocked > max_addresses
	values := {target.value | some target in ip_targets}

	# concat, not sprintf("%s", [concat(...)]): regopy would print the inner concat result in quotes.
	msg := concat("", [
		sprintf("%s covers more than %d addresses (", [input.action.name, max_addresses]),
		concat(", ", sort(values)),
		sprintf("): the cap is %d per action", [max_addresses]),
	])
}

default max_addresses := 256

max_addresses := data.guardrails.max_addresses_per_block

# Counted from prefix_len, not from the input's num_addresses: a /0 holds 2^128 addresses, more than
# an int64, and an engine that wraps the number (regopy's dict input does) would see 0 and pass.
# Each target counts at most 2^32, still above any sane cap. (No min(): regopy's compares as text.)
addresses_blocked := sum([n | some target in ip_targets; n := span(target)])

span(target) := bits.lsh(1, host_bits) if {
	host_bits := address_width[target.version] - target.prefix_len
	host_bits <= 32
} else := bits.lsh(1, 32)

# data.inventory.address_index is compiled by the controller: every asset address with its bits, in 256
# buckets keyed by the address's last 8 bits. A single address is one lookup in its (always present) bucket:
# regopy scans a whole object to find a *missing* key, so a flat index would make an outside attacker's
# address cost O(inventory). Only a range walks the index.
own_asset_hits contains {"target": target.value, "asset": entry.asset} if {
	blocking
	some target in ip_targets
	target.prefix_len == address_width[target.version]
	bucket := substring(target.bits, target.prefix_len - 8, 8)
	entry := data.inventory.address_index[bucket][target.value]
}

own_asset_hits contains {"target": target.value, "asset": asset} if {
	blocking
	some target in ip_targets
	target.prefix_len < address_width[target.version]
	some asset in assets_within(target)
}

# A function, so that the walk happens only when a range is blocked: regopy evaluates an iteration in a
# rule body before the condition that should have skipped it.
assets_within(range) := {entry.asset |
	some bucket in data.inventory.address_index
	some entry in bucket
	overlaps(range, entry)
}

overlaps(a, b) if {
	a.version == b.version
	prefix_related(a.bits, b.bits)
}

# An IPv4-mapped IPv6 address (::ffff:198.51.100.254) reaches the same host as 198.51.100.254:
# compare it as IPv4 too, or it would slip past an IPv4 allowlist entry (and the other way round).
overlaps(a, b) if {
	a.version == 6
	b.version == 4
	prefix_related(ipv4_bits_of_mapped(a.bits), b.bits)
}

overlaps(a, b) if {
	a.version == 4
	b.version == 6
	prefix_related(a.bits, ipv4_bits_of_mapped(b.bits))
}

prefix_related(x, y) if startswith(x, y)

prefix_related(x, y) if startswith(y, x)

# ::ffff:0:0/96 in bits: 80 zeros, then 16 ones.
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
