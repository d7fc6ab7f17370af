package autonomy.guardrails_test

test_isolating_a_crown_jewel_is_denied if {
	"host.isolate on dc-01 refused: dc-01 is a crown-jewel asset, never contained automatically" in denies(isolate("dc-01"))
}

test_isolating_an_ordinary_asset_passes if {
	count(denies(held(isolate("web-01")))) == 0
	count(approvals(held(isolate("web-01")))) == 0
}

test_releasing_a_crown_jewel_is_not_denied if {
	count(denies(release("dc-01"))) == 0
}

test_isolating_an_unknown_host_needs_soc_approval if {
	approvals(held(isolate("web-99"))) == {{
		"reason": "host.isolate on web-99: host unknown to the inventory",
		"group": "soc-oncall",
		"quorum": 1,
	}}
}

test_looking_up_an_unknown_host_needs_nobody if {
	count(approvals(host_activity("web-99"))) == 0
}
