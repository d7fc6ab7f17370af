package autonomy.guardrails_test

test_block_without_an_ip_target_is_denied if {
	denies(block([])) == {"network.block_ip has blast radius single_address but names no target in targets.ips: nothing to check it against"}
}

test_isolate_without_a_host_target_is_denied if {
	inp := action_input("host.isolate", "contain_host", "host", {})
	"host.isolate has blast radius host but names no target in targets.hosts: nothing to check it against" in denies(inp)
}

test_disable_without_a_user_target_is_denied if {
	inp := action_input("identity.disable_user", "contain_identity", "identity", {})
	"identity.disable_user has blast radius identity but names no target in targets.users: nothing to check it against" in denies(inp)
}

test_missing_targets_object_is_denied if {
	inp := json.remove(block(["198.51.100.66"]), ["targets"])
	"network.block_ip has blast radius single_address but names no target in targets.ips: nothing to check it against" in denies(inp)
}

test_actions_without_blast_radius_need_no_target if {
	inp := action_input("ticket.create", "ticket", "none", {})
	count(denies(inp)) == 0
}

test_malformed_targets_are_left_to_the_base_policy if {
	# The base policy denies these (decision_test.rego); the guardrails must not trip over them.
	inp := action_input("network.block_ip", "contain_network", "single_address", {"ips": [
		{"value": 5, "version": 4, "prefix_len": 32, "bits": "1"},
		{"value": "1.2.3.4", "version": "4", "prefix_len": 32, "bits": "1"},
		{"value": "1.2.3.4", "version": 4, "prefix_len": "32", "bits": "1"},
		{"value": "1.2.3.4", "version": 4, "prefix_len": 33, "bits": "1"},
		{"value": "1.2.3.4", "version": 4, "prefix_len": 32, "bits": 1},
	]})
	count(denies(inp)) == 0
	count(denies(action_input("host.isolate", "contain_host", "host", {"hosts": [1]}))) == 0
	count(denies(action_input("identity.disable_user", "contain_identity", "identity", {"users": [{}]}))) == 0
}
