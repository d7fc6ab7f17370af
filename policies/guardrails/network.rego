# Network guardrails: what a block (class contain_network) must never touch, and how much at once.
#
# Addresses are compared only through the precomputed prefix bit strings (README, "Input document"):
# regopy has no net.* built-ins. Two ranges of one family ("ipv4", "ipv6") overlap iff one's bits start
# with the other's. An IPv6 target that embeds an IPv4 address (::ffff:198.51.100.254 reaches 198.51.100.254;
# NAT64, 6to4, Teredo too) is compared as that IPv4 address too (embedded_targets, targets.rego), and the
# controller lists such allowlist entries and asset addresses under IPv4 too, so a comparison within one
# family covers every case.
# Unblocking (restore) and lookups (investigate) may touch these ranges, so only blocks are checked.
#
# Cost (regopy, the embedded engine; docs/engines.md, "Cost model"): a Rego loop costs about 3 us an iteration,
# one built-in over a whole list far less, and finding a key in an object is linear in its position. So
# every check starts with one call that is false for an ordinary target (an external address), walks
# only on a hit, and looks up through the controller's hashed indexes.
package autonomy.guardrails

# Defined either way (like too_many_addresses below): regopy caches only a defined value, and every rule
# here asks.
default blocking := false

blocking if action_class == "contain_network"

# Gateways, private, loopback, link-local and partner ranges (data.allowlists.networks, keyed by name).

# METADATA
# title: Allowlisted networks are never blocked
# description: A block that overlaps an allowlisted network is denied, naming the entry and its reason.
deny contains msg if {
	blocking
	some target in ip_targets
	some name in allowlisted(families[target.version], target.bits)
	msg := allowlist_message(target.value, name)
}

# An IPv6 target that embeds an IPv4 address (::ffff:198.51.100.254) reaches the IPv4 host: compared as IPv4 too.

# METADATA
# title: Allowlisted networks, in their IPv6 spellings
# description: An IPv6 target's embedded IPv4 (mapped, NAT64, 6to4, Teredo) is compared with the IPv4 allowlist.
deny contains msg if {
	blocking
	some target in embedded_targets
	some name in allowlisted("ipv4", target.bits)
	msg := allowlist_message(target.value, name)
}

allowlist_message(value, name) := sprintf(
	"%s on %s would hit allowlisted %s (%s): %s",
	[input.action.name, value, name, network.cidr, network.reason],
) if {
	networks := data.allowlists.networks
	network := networks[name]
}

# The names of the allowlisted networks that overlap the prefix bits of family. The controller lists
# each network under its family in data.allowlists.by_family (one embedding IPv4 under ipv4 too), and
# their bits in data.allowlists.prefixes: one strings.any_prefix_match per direction rules out the
# usual target before any loop.
#
# The loop is a function of its own, called after the check, and the check is the body's one call:
# regopy 1.5.2 evaluates a comprehension in a body, or the head's call of a body with several
# statements, before the conditions next to it (measured: 60-110 us a target here, for nothing).
# In functions a data object is bound to a local before an argument indexes it: regopy walks (and
# unifies) the whole object for data.x[arg] (125 us for the allowlist message), and inside a
# comprehension it even ignores the argument ({x | some x in data.m[arg]} yields all of data.m).
allowlisted(family, bits) := allowlist_hits(family, bits) if near_allowlisted(family, bits)

near_allowlisted(family, bits) if {
	prefixes := data.allowlists.prefixes
	overlaps_some(bits, prefixes[family])
}

allowlist_hits(family, bits) := names if {
	by_family := data.allowlists.by_family
	entries := by_family[family]
	names := {entry.name | some entry in entries; prefix_related(bits, entry.bits)}
}

# Our own assets: blocking them is a self-inflicted outage, whatever the alert says.
# An address: one lookup (a range's bits are shorter than any address, so they find nothing here).

# METADATA
# title: Our own addresses are never blocked
# description: A block of one of our assets' addresses is denied.
deny contains msg if {
	blocking
	some target in ip_targets
	asset := address_owner(target.bits)
	msg := own_asset_message(target.value, asset)
}

# A range: the assets inside it, one reason each while the block is within the cap (so at most
# max_addresses of them). A block over the cap is denied by the cap anyway, and gets one reason that
# says it holds our assets: naming thousands one by one would cost regopy seconds (a set of n strings
# costs it far more than n times one: 33 s for a /16 holding 5,000 of our assets).

# METADATA
# title: Ranges holding our assets are never blocked
# description: A block of a range within the cap that holds our assets is denied, naming each.
deny contains msg if {
	blocking
	not too_many_addresses
	some target in range_targets
	some asset in assets_in_range(families[target.version], target.bits)
	msg := own_asset_message(target.value, asset)
}

# METADATA
# title: Ranges holding our assets, over the cap
# description: A block over the cap that holds our assets is denied with one reason.
deny contains msg if {
	blocking
	too_many_addresses
	some target in range_targets
	holds_assets(families[target.version], target.bits)
	msg := own_assets_message(target.value)
}

# An IPv6 target's embedded IPv4 address (or range), as IPv4: an address, or a range as above.

# METADATA
# title: Our own addresses, in their IPv6 spellings
# description: An IPv6 target whose embedded IPv4 address is ours is denied.
deny contains msg if {
	blocking
	some target in embedded_targets
	asset := address_owner(target.bits)
	msg := own_asset_message(target.value, asset)
}

# METADATA
# title: Ranges holding our assets, in their IPv6 spellings
# description: An IPv6 range whose embedded IPv4 range holds our assets is denied, naming each.
deny contains msg if {
	blocking
	not too_many_addresses
	some target in embedded_targets
	some asset in assets_in_range("ipv4", target.bits)
	msg := own_asset_message(target.value, asset)
}

# METADATA
# title: Ranges holding our assets, in IPv6 spellings over the cap
# description: The same over the cap, with one reason.
deny contains msg if {
	blocking
	too_many_addresses
	some target in embedded_targets
	holds_assets("ipv4", target.bits)
	msg := own_assets_message(target.value)
}

own_asset_message(value, asset) := sprintf("%s on %s would cut off our own asset %s", [input.action.name, value, asset])

own_assets_message(value) := sprintf(
	"%s on %s would cut off our own assets (too many addresses to name them one by one)",
	[input.action.name, value],
)

# A cap per action, so that 0.0.0.0/0, a /8 or a long list of ranges is never blocked in one go.

# METADATA
# title: Blocks over the address cap are denied
# description: More than guardrails.max_addresses_per_block addresses in one block is denied.
deny contains cap_message if {
	blocking
	too_many_addresses
}

# A range blocks more than the address the sensors saw attack: the rest of it are bystanders no alert named (a
# shared NAT's other users, a cloud provider's or an ISP's other customers), and the planner that widened one
# address to a /24 may have been steered by the attacker's text. A person decides on the neighbours; the
# single address, the one the sensors saw, still runs alone. (Within the per-action cap above: wider is denied.)

# METADATA
# title: A block wider than guardrails.max_addresses_alone addresses needs a person
# description: >-
#   A block of a range covering more addresses than guardrails.max_addresses_alone (1 as shipped: any range)
#   needs the class's approvers.
require_approval contains {
	"reason": sprintf(
		"%s on %s covers more than the %d address(es) a block covers without a person: the sensors saw single addresses, the rest of a range are bystanders no alert named",
		[input.action.name, target.value, max_addresses_alone],
	),
	"group": class_group,
	"quorum": 1,
} if {
	blocking
	some target in range_targets
	range_span(target) > max_addresses_alone
}

# A source the sensors had known for days before the case, much of its traffic answered by the application, is
# what an address many people share shows (a company's NAT, a proxy, a carrier's gateway): a block cuts off
# everyone behind it. The facts are the sensors' (controller/attackers/standing.py), and a source builds them
# only by sending ordinary traffic for days beforehand; all they can do is ask a person.

# METADATA
# title: A block of an address with a long, steady history needs a person
# description: >-
#   A block covering a connected source the sensors had known for guardrails.shared_source_days days or more
#   before the case, with guardrails.shared_source_answered or more of its requests answered 2xx by the
#   application, needs the class's approvers (no veto window).
require_approval contains {
	"reason": sprintf(
		"%s on %s: the sensors had known %s for %d day(s) before this case, %d of its requests answered by the application: an address many people may share (a NAT, a proxy), and a block cuts them all off; a person approves",
		[input.action.name, target.value, source.value, source.known_days, source.answered],
	),
	"group": class_group,
	"quorum": 1,
} if {
	blocking
	some target in ip_targets
	some source in input.context.source_standing
	source.version == target.version
	startswith(source.bits, target.bits)
	source.known_days >= shared_source_days
	source.answered >= shared_source_answered
}

default shared_source_days := 7

shared_source_days := data.guardrails.shared_source_days

default shared_source_answered := 50

shared_source_answered := data.guardrails.shared_source_answered

# Addresses in a range, counted to at most 2^30: regopy wraps an integer past 32 bits (2^32 arrives as 0), and
# a range that wide is denied by the per-action cap anyway.
range_span(target) := bits.lsh(1, host_bits) if {
	host_bits := address_width[target.version] - target.prefix_len
	host_bits <= 30
} else := bits.lsh(1, 30)

default max_addresses_alone := 1

max_addresses_alone := data.guardrails.max_addresses_alone

# A rule of its own: regopy would build the list of values in the deny body even when under the cap.
# concat, not sprintf("%s", [concat(...)]): regopy would print the inner concat result in quotes.
cap_message := concat("", [
	sprintf("%s covers more than %d addresses (", [input.action.name, max_addresses]),
	concat(", ", sort({target.value | some target in ip_targets})),
	sprintf("): the cap is %d per action", [max_addresses]),
])

# Addresses alone count one each; only with a range is the sum worth computing.
default too_many_addresses := false

too_many_addresses if count(ip_targets) > max_addresses

too_many_addresses if {
	blocks_a_range
	addresses_blocked > max_addresses
}

# A rule of its own: with the loop in the body above, regopy computed addresses_blocked before it.
default blocks_a_range := false

blocks_a_range if {
	some _ in range_targets
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

# The asset whose address has exactly these bits (undefined when there is none): one hashed lookup in
# data.inventory.address_index, {bits: asset} (compiled by the controller; see asset_named in targets.rego).
address_owner(bits) := asset if {
	digest := crypto.md5(bits)
	first := substring(digest, 0, 1)
	second := substring(digest, 1, 1)
	shelf := data.inventory.address_index[first]
	leaf := shelf[second]
	asset := leaf[bits]
}

# The assets inside a range (an address's own bits find nothing here: no bucket key is that long).
# data.inventory.range_index holds the asset addresses in buckets keyed by their first
# range_bucket_bits[family] bits (hashed), and range_keys[family] the bucket keys as a list.
# A range at least as long as the bucket key lies in one bucket: one lookup, then a walk of that bucket.
# (Each walk is a function of its own, called last: see allowlisted above.)
assets_in_range(family, prefix) := assets_in_bucket(range_bucket(key), prefix) if {
	within_a_bucket(family, prefix)
	key := substring(prefix, 0, bucket_bits(family))
}

# A wider range (over the cap anyway for IPv4) spans whole buckets: one strings.any_prefix_match over the
# bucket keys rules out the usual case (no asset of ours in it) before any loop.
assets_in_range(family, prefix) := assets_in_buckets(keys, prefix) if {
	not within_a_bucket(family, prefix)
	range_keys := data.inventory.range_keys
	keys := range_keys[family]
	strings.any_prefix_match(keys, prefix)
}

within_a_bucket(family, prefix) if count(prefix) >= bucket_bits(family)

# Whether a range holds any of our addresses, without naming them: one built-in call over the keys.
holds_assets(family, prefix) if {
	within_a_bucket(family, prefix)
	key := substring(prefix, 0, bucket_bits(family))
	strings.any_prefix_match(object.keys(range_bucket(key)), prefix)
}

holds_assets(family, prefix) if {
	not within_a_bucket(family, prefix)
	range_keys := data.inventory.range_keys
	strings.any_prefix_match(range_keys[family], prefix)
}

bucket_bits(family) := bits if {
	all_bits := data.inventory.range_bucket_bits
	bits := all_bits[family]
}

assets_in_bucket(bucket, prefix) := {asset |
	some address
	asset := bucket[address]
	startswith(address, prefix)
}

assets_in_buckets(keys, prefix) := {asset |
	some key in keys
	startswith(key, prefix)
	some asset in range_bucket(key)
}

range_bucket(key) := bucket if {
	digest := crypto.md5(key)
	first := substring(digest, 0, 1)
	second := substring(digest, 1, 1)
	shelf := data.inventory.range_index[first]
	leaf := shelf[second]
	bucket := leaf[key]
}

# Either prefix starts with the other: one holds the other.
prefix_related(x, y) if startswith(x, y)

prefix_related(x, y) if startswith(y, x)

# bits is related to some prefix in the list: it starts with one, or one starts with it (a range).
overlaps_some(bits, prefixes) if strings.any_prefix_match(bits, prefixes)

overlaps_some(bits, prefixes) if strings.any_prefix_match(prefixes, bits)
