package autonomy.guardrails_test

# Fixtures: special_purpose and ip in fixtures_test.rego (100.64.0.0/10, 224.0.0.0/4, ::/128 and ff00::/8 deny;
# 2002::/16 and 192.52.193.0/24 approve; 192.0.2.0/24 allow).

shared := "would hit special-purpose 100.64.0.0/10 (Shared Address Space, RFC 6598): shared by many"

six_to_four := "would hit special-purpose 2002::/16 (6to4, RFC 3056): a person decides"

test_block_of_shared_address_space_is_denied_naming_the_entry if {
	concat(" ", ["network.block_ip on 100.64.1.2", shared]) in denies(block(["100.64.1.2"]))
}

test_ranges_inside_and_around_an_entry_are_denied if {
	concat(" ", ["network.block_ip on 100.64.1.0/24", shared]) in denies(block(["100.64.1.0/24"]))
	concat(" ", ["network.block_ip on 100.0.0.0/9", shared]) in denies(block(["100.0.0.0/9"]))
}

test_multicast_and_unspecified_are_denied if {
	"network.block_ip on 224.0.0.5 would hit special-purpose 224.0.0.0/4 (Multicast, RFC 5771): never a source" in denies(block(["224.0.0.5"]))
	"network.block_ip on ff02::1 would hit special-purpose ff00::/8 (Multicast, RFC 4291): never a source" in denies(block(["ff02::1"]))
	"network.block_ip on :: would hit special-purpose ::/128 (Unspecified Address, RFC 4291): never a source" in denies(block(["::"]))
}

# Every spelling of 100.64.1.2 that embeds it: 6to4, NAT64, Teredo (client, bits inverted), IPv4-mapped.
test_embedded_forms_of_a_special_purpose_address_are_denied if {
	every value in ["2002:6440:102::", "64:ff9b::6440:102", "2001:0:c633:6442::9bbf:fefd", "::ffff:6440:102"] {
		concat(" ", ["network.block_ip on", value, shared]) in denies(block([value]))
	}
}

test_an_approve_entry_needs_a_person if {
	count(denies(block(["2002:c633:6442::"]))) == 0
	approvals(block(["2002:c633:6442::"])) == {{
		"reason": concat(" ", ["network.block_ip on 2002:c633:6442::", six_to_four]),
		"group": "soc-oncall",
		"quorum": 1,
	}}
}

test_an_approve_entry_embedding_a_denied_address_is_denied_too if {
	concat(" ", ["network.block_ip on 2002:6440:102::", shared]) in denies(block(["2002:6440:102::"]))
	{r.reason | some r in approvals(block(["2002:6440:102::"]))} == {concat(" ", ["network.block_ip on 2002:6440:102::", six_to_four])}
}

# 2002::/15 holds all of 2002::/16, and so the 6to4 form of every IPv4 address.
test_an_ipv6_range_holding_a_whole_embedding_prefix_hits_every_ipv4_entry if {
	d := denies_capped(block(["2002::/15"]), 18446744073709551616)
	concat(" ", ["network.block_ip on 2002::/15", shared]) in d
	"network.block_ip on 2002::/15 would hit special-purpose 224.0.0.0/4 (Multicast, RFC 5771): never a source" in d
}

test_documentation_and_public_addresses_stay_blockable if {
	count(denies(block(["192.0.2.7"]))) == 0
	count(approvals(block(["192.0.2.7"]))) == 0
	count(denies(block(["198.51.100.66"]))) == 0
	count(approvals(block(["198.51.100.66"]))) == 0
}

test_unblock_and_lookup_may_touch_special_purpose_addresses if {
	count(denies(unblock(["100.64.1.2"]))) == 0
	count(approvals(unblock(["2002:c633:6442::"]))) == 1 # restore.rego's own approval, not this one
	count(denies(lookup(["224.0.0.5"]))) == 0
}

# The controller's embedded IPv4 forms of our own addresses and allowlisted ones are checked too.
test_embedded_forms_of_our_asset_and_allowlisted_addresses_are_denied if {
	"network.block_ip on 2002:c633:6401:: would cut off our own asset web-01" in denies(block(["2002:c633:6401::"]))
	"network.block_ip on ::ffff:c633:64fe would hit allowlisted lab-gateway (198.51.100.254/32): our gateway" in denies(block(["::ffff:c633:64fe"]))
}

# An IPv4 approve entry holds for the IPv4 address embedded in an IPv6 one as well.
test_an_ipv4_approve_entry_holds_for_embedded_forms if {
	{r.reason | some r in approvals(block(["192.52.193.1"]))} == {"network.block_ip on 192.52.193.1 would hit special-purpose 192.52.193.0/24 (AMT, RFC 7450): relays, a person decides"}
	reasons := {r.reason | some r in approvals(block(["2002:c034:c101::"]))}
	"network.block_ip on 2002:c034:c101:: would hit special-purpose 192.52.193.0/24 (AMT, RFC 7450): relays, a person decides" in reasons
	concat(" ", ["network.block_ip on 2002:c034:c101::", six_to_four]) in reasons
}
