# Special-purpose addresses: a block (class contain_network) of an address or range that overlaps an entry
# of the IANA IPv4/IPv6 Special-Purpose Address Registries (special_purpose/data.yaml: unspecified,
# broadcast, multicast, shared CGNAT space, anycast services, translation prefixes...) is denied, or needs
# a person, as the entry says. The reason names the entry: its block, name and RFC.
#
# An IPv6 target that embeds an IPv4 address (NAT64, 6to4, Teredo, IPv4-mapped or -compatible) is checked
# against the IPv4 entries too (embedded_targets, targets.rego): 2002:6440:102:: is 100.64.1.2.
# Documentation ranges are listed with decision allow and compiled out of the indexes: never matched here.
#
# Cost as in network.rego (docs/engines.md, "Cost model"): one strings.any_prefix_match per direction rules out the
# usual (public) target; only a hit walks the entries. The hits are computed once per target, in rules of
# their own, and both the deny and the approval rules read them.
package autonomy.guardrails

# METADATA
# title: Special-purpose blocks marked deny are never blocked
# description: A block overlapping a deny entry of special_purpose/data.yaml is denied, naming the block and its RFC.
deny contains msg if {
	blocking
	some hit in special_purpose_hits
	hit.decision == "deny"
	msg := special_purpose_message(hit)
}

# METADATA
# title: Special-purpose deny blocks, in their IPv6 spellings
# description: The same for an IPv6 target's embedded IPv4.
deny contains msg if {
	blocking
	some hit in embedded_special_purpose_hits
	hit.decision == "deny"
	msg := special_purpose_message(hit)
}

# METADATA
# title: Special-purpose blocks marked approve need their group
# description: A block overlapping an approve entry (NAT64, 6to4, Teredo...) needs the file's approval group.
require_approval contains {"reason": msg, "group": special_purpose_approval.group, "quorum": special_purpose_approval.quorum} if {
	blocking
	some hit in special_purpose_hits
	hit.decision == "approve"
	msg := special_purpose_message(hit)
}

# METADATA
# title: Special-purpose approve blocks, in their IPv6 spellings
# description: The same for an IPv6 target's embedded IPv4.
require_approval contains {"reason": msg, "group": special_purpose_approval.group, "quorum": special_purpose_approval.quorum} if {
	blocking
	some hit in embedded_special_purpose_hits
	hit.decision == "approve"
	msg := special_purpose_message(hit)
}

# The entries each target overlaps, as {value, name, decision}: the target itself in its family, and each
# IPv4 address an IPv6 target embeds as IPv4.
special_purpose_hits := [hit |
	some target in ip_targets
	some hit in special_purpose(target.value, families[target.version], target.bits)
]

embedded_special_purpose_hits := [hit |
	some target in embedded_targets
	some hit in special_purpose(target.value, "ipv4", target.bits)
]

# The check is the body's one call; the walk a function of its own (see allowlisted in network.rego).
special_purpose(value, family, bits) := special_purpose_entries(value, family, bits) if near_special_purpose(family, bits)

near_special_purpose(family, bits) if {
	prefixes := data.special_purpose.prefixes
	overlaps_some(bits, prefixes[family])
}

special_purpose_entries(value, family, bits) := hits if {
	by_family := data.special_purpose.by_family
	entries := by_family[family]
	hits := [hit |
		some entry in entries
		prefix_related(bits, entry.bits)
		hit := {"value": value, "name": entry.name, "decision": entry.decision}
	]
}

special_purpose_message(hit) := sprintf(
	"%s on %s would hit special-purpose %s (%s, %s): %s",
	[input.action.name, hit.value, hit.name, entry.name, entry.rfc, entry.reason],
) if {
	entries := data.special_purpose.entries
	entry := entries[hit.name]
}

# Who approves a block of an approve entry (special_purpose/data.yaml: approval). The base policy denies
# an approval whose group is not defined.
special_purpose_approval := data.special_purpose.approval
