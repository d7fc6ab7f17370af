# Carrier-grade NAT is never blocked automatically.
# Example (a) of policies/README.md, "Writing your own policy". 100.64.0.0/10 (RFC 6598) is shared by
# every subscriber behind a carrier's NAT: blocking one address there blocks strangers. Every spelling
# counts: an IPv4 target, and an IPv6 one that embeds such an address (IPv4-mapped ::ffff:100.64.12.7,
# NAT64, 6to4...; the controller decodes them into `embedded`).
package autonomy.guardrails

# 100.64.0.0/10 as prefix bits: the embedded engine (regopy 1.5.2) has no net.cidr_* built-ins, so the policy
# compares the bits the controller computes. Two prefixes overlap when one starts with the other.
cgnat_bits := "0110010001"

# METADATA
# title: Deny blocks that overlap 100.64.0.0/10
# custom:
#   example: a
deny contains msg if {
	action_class == "contain_network"
	some target in ip_targets
	some bits in cgnat_ipv4_prefixes(target)
	cgnat_overlaps(bits)
	msg := sprintf("%s on %s refused: overlaps carrier-grade NAT 100.64.0.0/10 (RFC 6598)", [input.action.name, target.value])
}

# The IPv4 prefixes a target stands for: its own bits, or those it embeds.
cgnat_ipv4_prefixes(target) := [target.bits] if target.version == 4

cgnat_ipv4_prefixes(target) := target.embedded if target.version == 6

cgnat_overlaps(bits) if startswith(bits, cgnat_bits)

cgnat_overlaps(bits) if startswith(cgnat_bits, bits)
