package autonomy.guardrails_test

import data.autonomy.guardrails

test_disabling_an_unknown_identity_is_denied if {
	denies(disable("mallory")) == {"identity.disable_user on mallory refused: unknown identity (not in data.identities.users)"}
}

test_enabling_an_unknown_identity_is_denied if {
	"identity.enable_user on mallory refused: unknown identity (not in data.identities.users)" in denies(enable("mallory"))
}

test_disabling_a_regular_user_passes if {
	count(denies(held(disable("alice")))) == 0
	count(approvals(held(disable("alice")))) == 0
}

test_disabling_a_privileged_user_needs_iam_admins if {
	approvals(held(disable("admin"))) == {{
		"reason": "identity.disable_user on privileged identity admin: iam-admins must approve",
		"group": "iam-admins",
		"quorum": 2,
	}}
}

test_enabling_a_privileged_user_needs_iam_admins_too if {
	{
		"reason": "identity.enable_user on privileged identity admin: iam-admins must approve",
		"group": "iam-admins",
		"quorum": 2,
	} in approvals(enable("admin"))
}

test_privileged_quorum_comes_from_data if {
	some r in guardrails.require_approval with input as disable("admin")
		with data.identities as identities
		with data.guardrails as {"privileged_identity_quorum": 3}
	r.quorum == 3
}

test_privileged_quorum_defaults_to_2_without_data if {
	guardrails.privileged_identity_quorum == 2 with data.guardrails as {}
}

test_users_of_non_identity_actions_are_not_checked if {
	inp := action_input("ticket.create", "ticket", "none", {"users": ["mallory"]})
	count(denies(inp)) == 0
}
