# Isolating a domain controller needs ad-admins.
# Example (b) of policies/README.md, "Writing your own policy". A host the inventory tags
# `domain-controller` (policies/inventory/data.yaml, tags) is isolated only when a member of the approver
# group ad-admins (policies/identities/data.yaml) agrees, at every level.
package autonomy.guardrails

# METADATA
# title: Approval by ad-admins to isolate a host tagged domain-controller
# custom:
#   example: b
require_approval contains {
	"reason": sprintf("%s on %s: a domain controller, ad-admins approve", [input.action.name, host]),
	"group": "ad-admins",
	"quorum": 1,
} if {
	input.action.name == "host.isolate"
	some host in host_targets
	"domain-controller" in data.inventory.assets[host].tags
}
