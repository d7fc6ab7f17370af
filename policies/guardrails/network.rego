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
	some target in input.targets.ips
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
	some target in input.targets.ips
	some name, asset in data.inventory.assets
	own_address(target, asset)
	msg := sprintf("%s on %s would cut off our own asset %s", [input.action.name, target.value, name])
}

# A cap per action, so that 0.0.0.0/0, a /8 or a long list of ranges is never blocked in one go.
deny contains msg if {
	blocking
	addresses_blocked > max_addresses
	values := {target.value | some target in input.targets.ips}
	msg := sprintf(
		"%s covers more than %d addresses (%s): the cap is %d per action",
		[input.action.name, max_addresses, concat(", ", sort(values)), max_addresses],
	)
}

default max_addresses := 256

max_addresses := data.guardrails.max_addresses_per_block

# Counted from prefix_len, not from the input's num_addresses: a /0 holds 2^128 addresses, more than
# an int64, and an engine that wraps the number (regopy's dict input does) would see 0 and pass.
# Each target counts at most 2^32, still above any sane cap.
addresses_blocked := sum([n | some target in input.targets.ips; n := span(target)])

span(target) := bits.lsh(1, min([address_width[target.version] - target.prefix_len, 32]))

address_width := {4: 32, 6: 128}

own_address(target, asset) if target.value in asset.addresses

# When the controller compiles the inventory it may add `ips` (same shape as input.targets.ips), which
# also catches a range that contains one of our addresses.
own_address(target, asset) if {
	some address in asset.ips
	overlaps(target, address)
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
