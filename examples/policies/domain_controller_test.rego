package domain_controller_test

import data.autonomy.guardrails

assets := {
	"dc-02": {"tags": ["active-directory", "domain-controller"]},
	"web-01": {"tags": ["internet-facing"]},
	"old-01": {},
}

ad_admins(action, host) := {r |
	some r in guardrails.require_approval with input as {
		"action": {"class": "contain_host", "name": action},
		"targets": {"hosts": [host]},
	}
		with data.inventory.assets as assets
	r.group == "ad-admins"
}

test_isolating_a_domain_controller_needs_ad_admins if {
	ad_admins("host.isolate", "dc-02") == {{
		"reason": "host.isolate on dc-02: a domain controller, ad-admins approve",
		"group": "ad-admins",
		"quorum": 1,
	}}
}

test_other_hosts_do_not if {
	every host in ["web-01", "old-01", "ghost-99"] {
		count(ad_admins("host.isolate", host)) == 0
	}
}

test_only_isolation if {
	count(ad_admins("host.release", "dc-02")) == 0
}
