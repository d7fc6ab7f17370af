# Carrier-grade NAT is never blocked automatically.
# Example (a) of policies/README.md, "Writing your own policy". 100.64.0.0/10 (RFC 6598) is shared by
# every subscriber behind a carrier's NAT: blocking one address there blocks strangers. Every spelling
# counts: an IPv4 target, its IPv4-mapped IPv6 form (::ffff:100.64.12.7, which net.cidr_* compare as the
# IPv4 address), and its NAT64 form (RFC 6052's well-known prefix 64:ff9b::/96).
package autonomy.guardrails

cgnat_blocks := {"100.64.0.0/10", "64:ff9b::100.64.0.0/106"}

# METADATA
# title: Deny blocks that overlap 100.64.0.0/10
# custom:
#   example: a
deny contains msg if {
	action_class == "contain_network"
	some target in ip_targets
	some block in cgnat_blocks
	net.cidr_intersects(block, cgnat_cidr(target))
	msg := sprintf("%s on %s refused: overlaps carrier-grade NAT 100.64.0.0/10 (RFC 6598)", [input.action.name, target.value])
}

# A target as a CIDR: a network is written as one already, a single address is its /32 or /128.
cgnat_cidr(target) := target.value if contains(target.value, "/")

cgnat_cidr(target) := sprintf("%s/%d", [target.value, target.prefix_len]) if not contains(target.value, "/")
