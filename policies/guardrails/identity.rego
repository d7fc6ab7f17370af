# Identity guardrails: accounts the directory does not know are refused, privileged ones need IAM.
package autonomy.guardrails

# Disabling (contain_identity) and re-enabling (restore) accounts. Defined either way, so that regopy
# evaluates it once per decision rather than at each of its references (docs/engines.md, "Cost model").
default identity_action := false

identity_action if action_class == "contain_identity"

identity_action if action_class == "restore"

# Acting on an account the directory does not know is at best a no-op, at worst a look-alike name
# planted in an alert.

# METADATA
# title: Unknown accounts are never acted on
# description: Identity actions on a user not in identities.users are denied.
deny contains msg if {
	identity_action
	some user in user_targets
	not known_user(user)
	msg := sprintf("%s on %s refused: unknown identity (not in data.identities.users)", [input.action.name, user])
}

# Privileged accounts (admins, service accounts): IAM approves, with more than one pair of eyes.

# METADATA
# title: Privileged accounts need iam-admins
# description: Identity actions on a privileged user need iam-admins, quorum guardrails.privileged_identity_quorum.
require_approval contains {
	"reason": sprintf("%s on privileged identity %s: iam-admins must approve", [input.action.name, user]),
	"group": "iam-admins",
	"quorum": privileged_identity_quorum,
} if {
	identity_action
	some user in user_targets
	user_named(user).privileged == true
}

default privileged_identity_quorum := 2

privileged_identity_quorum := data.guardrails.privileged_identity_quorum
