# Host guardrails: crown jewels are never isolated by the machine, unknown hosts need a person.
package autonomy.guardrails

# Isolating a domain controller or the main database can stop the business; a person does it by hand.

# METADATA
# title: Crown jewels are never contained
# description: Containing (contain_host) an asset the inventory marks crown_jewel is denied.
deny contains msg if {
	action_class == "contain_host"
	some host in host_targets
	asset_named(host).crown_jewel == true
	msg := sprintf("%s on %s refused: %s is a crown-jewel asset, never contained automatically", [input.action.name, host, host])
}

# A host the inventory does not know may be anyone's (a partner's, a typo, an injected name): a person
# confirms before the machine changes anything about it. Read-only lookups are fine.

# METADATA
# title: Unknown hosts need soc-oncall
# description: Any non-read-only action on a host the inventory does not know needs a person.
require_approval contains {
	"reason": sprintf("%s on %s: host unknown to the inventory", [input.action.name, host]),
	"group": "soc-oncall",
	"quorum": 1,
} if {
	some host in host_targets
	not read_only
	not known_asset(host)
}

# A rule, not `action_class != "investigate"` in the body above: regopy evaluated that built-in call
# before the loop, on every decision, host or no host.
read_only if action_class == "investigate"
