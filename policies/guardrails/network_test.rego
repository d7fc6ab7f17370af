package autonomy.guardrails_test

import data.autonomy.guardrails

# --- allowlisted networks ----------------------------------------------------------------------

test_block_of_the_gateway_is_denied if {
	"network.block_ip on 198.51.100.254 would hit allowlisted lab-gateway (198.51.100.254/32): our gateway" in denies(block(["198.51.100.254"]))
}

test_block_of_a_range_that_contains_the_gateway_is_denied if {
	"network.block_ip on 198.51.100.0/24 would hit allowlisted lab-gateway (198.51.100.254/32): our gateway" in denies(block(["198.51.100.0/24"]))
}

test_block_inside_a_private_range_is_denied if {
	"network.block_ip on 10.1.2.3 would hit allowlisted rfc1918-10 (10.0.0.0/8): private range" in denies(block(["10.1.2.3"]))
}

test_block_of_ipv6_loopback_is_denied if {
	"network.block_ip on ::1 would hit allowlisted loopback-v6 (::1/128): loopback" in denies(block(["::1"]))
}

test_ipv4_mapped_ipv6_target_is_compared_as_ipv4 if {
	"network.block_ip on ::ffff:c633:64fe would hit allowlisted lab-gateway (198.51.100.254/32): our gateway" in denies(block(["::ffff:c633:64fe"]))
}

test_ipv4_target_matches_an_ipv4_mapped_allowlist_entry if {
	"network.block_ip on 203.0.113.7 would hit allowlisted partner-monitor (::ffff:203.0.113.7/128): partner monitor, listed IPv4-mapped" in denies(block(["203.0.113.7"]))
}

test_ipv6_prefix_holding_all_mapped_ipv4_hits_ipv4_entries if {
	"network.block_ip on ::/80 would hit allowlisted lab-gateway (198.51.100.254/32): our gateway" in denies(block(["::/80"]))
}

test_other_ipv6_does_not_match_ipv4_entries if {
	count(denies(block(["2001:db8::1"]))) == 0
}

test_block_of_the_attacker_passes if {
	count(denies(block(["198.51.100.66"]))) == 0
}

test_unblock_and_lookup_may_touch_allowlisted_ranges if {
	count(denies(unblock(["198.51.100.254"]))) == 0
	count(denies(lookup(["10.1.2.3"]))) == 0
}

# --- our own assets ----------------------------------------------------------------------------

test_block_of_our_own_address_is_denied if {
	"network.block_ip on 198.51.100.1 would cut off our own asset web-01" in denies(block(["198.51.100.1"]))
}

test_block_of_a_range_holding_our_asset_is_denied if {
	"network.block_ip on 198.51.100.0/25 would cut off our own asset web-01" in denies(block(["198.51.100.0/25"]))
	"network.block_ip on 192.0.2.0/24 would cut off our own asset db-01" in denies(block(["192.0.2.0/24"]))
}

test_a_range_clear_of_our_assets_passes if {
	every msg in denies(block(["198.51.100.0/25"])) {
		not contains(msg, "db-01")
	}
}

test_block_of_our_ipv6_address_is_denied if {
	"network.block_ip on 2001:db8::25 would cut off our own asset mail-01" in denies(block(["2001:db8::25"]))
}

# Over the cap a range's assets are not named one by one (the cap denies it anyway): one reason says so.
test_block_over_the_cap_says_it_holds_our_assets if {
	d := denies(block(["2001:db8::/64"]))
	"network.block_ip on 2001:db8::/64 would cut off our own assets (too many addresses to name them one by one)" in d
	"network.block_ip covers more than 256 addresses (2001:db8::/64): the cap is 256 per action" in d
	"network.block_ip on 192.0.0.0/16 would cut off our own assets (too many addresses to name them one by one)" in denies(block(["192.0.0.0/16"]))
}

test_ipv6_range_within_the_cap_names_our_asset if {
	"network.block_ip on 2001:db8::/64 would cut off our own asset mail-01" in denies_capped(block(["2001:db8::/64"]), 18446744073709551616)
}

# mail-01 lists ::ffff:192.0.2.25; the controller indexes it as 192.0.2.25 too.
test_ipv4_form_of_our_ipv4_mapped_address_is_denied if {
	"network.block_ip on 192.0.2.25 would cut off our own asset mail-01" in denies(block(["192.0.2.25"]))
}

test_ipv4_mapped_form_of_our_address_is_denied if {
	"network.block_ip on ::ffff:c633:6401 would cut off our own asset web-01" in denies(block(["::ffff:c633:6401"]))
}

# Wider than an index bucket (/24), within a raised cap: every bucket inside is walked.
test_range_wider_than_a_bucket_finds_every_asset_inside if {
	d := denies_capped(block(["192.0.0.0/16"]), 65536)
	"network.block_ip on 192.0.0.0/16 would cut off our own asset db-01" in d
	"network.block_ip on 192.0.0.0/16 would cut off our own asset mail-01" in d
	every msg in d {
		not contains(msg, "web-01")
	}
}

test_ipv4_mapped_range_finds_our_ipv4_assets if {
	d := denies(block(["::ffff:c000:200/120"]))
	"network.block_ip on ::ffff:c000:200/120 would cut off our own asset db-01" in d
	"network.block_ip on ::ffff:c000:200/120 would cut off our own asset mail-01" in d
}

test_all_of_ipv4_mapped_space_is_denied_for_our_assets_and_allowlisted_entries if {
	d := denies(block(["::ffff:0:0/96"]))
	"network.block_ip on ::ffff:0:0/96 would cut off our own assets (too many addresses to name them one by one)" in d
	"network.block_ip on ::ffff:0:0/96 would hit allowlisted lab-gateway (198.51.100.254/32): our gateway" in d
	"network.block_ip on ::ffff:0:0/96 would hit allowlisted partner-monitor (::ffff:203.0.113.7/128): partner monitor, listed IPv4-mapped" in d
}

test_a_range_without_our_assets_passes if {
	count(denies(block(["192.0.2.128/25"]))) == 0
	count(denies(block(["2001:db8::1"]))) == 0
}

test_unblock_of_our_own_address_passes if {
	count(denies(unblock(["198.51.100.1"]))) == 0
}

# --- address cap -------------------------------------------------------------------------------

test_block_of_everything_is_denied if {
	"network.block_ip covers more than 256 addresses (0.0.0.0/0): the cap is 256 per action" in denies(block(["0.0.0.0/0"]))
}

test_block_of_a_slash_8_is_denied if {
	"network.block_ip covers more than 256 addresses (10.0.0.0/8): the cap is 256 per action" in denies(block(["10.0.0.0/8"]))
}

test_block_of_all_ipv6_is_denied_despite_its_huge_count if {
	"network.block_ip covers more than 256 addresses (::/0): the cap is 256 per action" in denies(block(["::/0"]))
}

test_cap_counts_the_sum_over_targets if {
	"network.block_ip covers more than 256 addresses (192.0.2.0/24, 203.0.113.0/24): the cap is 256 per action" in denies(block(["203.0.113.0/24", "192.0.2.0/24"]))
}

test_one_slash_24_is_within_the_cap if {
	every msg in denies(block(["192.0.2.0/24"])) {
		not contains(msg, "the cap is")
	}
}

test_cap_comes_from_data if {
	d := guardrails.deny with input as block(["203.0.113.0/24"]) with data.guardrails as {"max_addresses_per_block": 16}
	"network.block_ip covers more than 16 addresses (203.0.113.0/24): the cap is 16 per action" in d
}

test_cap_counts_single_addresses_too if {
	d := guardrails.deny with input as block(["198.51.100.66", "203.0.113.7"]) with data.guardrails as {"max_addresses_per_block": 1}
	"network.block_ip covers more than 1 addresses (198.51.100.66, 203.0.113.7): the cap is 1 per action" in d
}

test_cap_defaults_to_256_without_data if {
	guardrails.max_addresses == 256 with data.guardrails as {}
}

test_cap_does_not_apply_to_lookups if {
	count(denies(lookup(["0.0.0.0/0"]))) == 0
}

# --- a range: its other addresses are bystanders, a person decides -------------------------------------------

range_reason(value) := sprintf("network.block_ip on %s covers more than the 1 address(es) a block covers without a person: the sensors saw single addresses, the rest of a range are bystanders no alert named", [value])

test_a_range_needs_a_person if {
	{"reason": range_reason("192.0.2.128/25"), "group": "soc-oncall", "quorum": 1} in approvals(block(["192.0.2.128/25"]))
	{"reason": range_reason("::ffff:c000:200/120"), "group": "soc-oncall", "quorum": 1} in approvals(block(["::ffff:c000:200/120"]))
}

test_a_single_address_blocks_alone if {
	every value in ["198.51.100.66", "2001:db8::25"] {
		every r in approvals(block([value])) {
			not contains(r.reason, "bystanders")
		}
	}
}

test_the_addresses_a_block_covers_alone_come_from_data if {
	wider := object.union(tunables, {"max_addresses_alone": 128})
	alone := guardrails.require_approval with input as sourced_in(block(["192.0.2.128/25"]), "192.0.2.200")
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.special_purpose as special_purpose
		with data.identities as identities
		with data.guardrails as wider
	count(alone) == 0
	guardrails.max_addresses_alone == 1 with data.guardrails as {}
}

test_looking_a_range_up_needs_nobody if {
	count(approvals(lookup(["192.0.2.128/25"]))) == 0
}

# --- addresses many people may share ------------------------------------------------------------

# A block of a connected source with its standing (context.source_standing), as the controller spells one.
standing_block(values, source, days, answered) := object.union(block(values), {"context": {"source_standing": [object.union(
	source_of(source),
	{"known_days": days, "answered": answered},
)]}})

shared_reason := concat("", [
	"network.block_ip on 198.51.100.66: the sensors had known 198.51.100.66 for 9 day(s) before this case, ",
	"120 of its requests answered by the application: an address many people may share (a NAT, a proxy), ",
	"and a block cuts them all off; a person approves",
])

test_a_block_of_a_source_with_a_long_steady_history_needs_a_person if {
	some r in approvals(standing_block(["198.51.100.66"], "198.51.100.66", 9, 120))
	r.reason == shared_reason
	r.quorum == 1
}

test_a_source_known_for_days_but_barely_answered_is_blocked_alone if {
	count(approvals(standing_block(["198.51.100.66"], "198.51.100.66", 30, 49))) == 0
}

test_a_busy_source_first_seen_this_week_is_blocked_alone if {
	count(approvals(standing_block(["198.51.100.66"], "198.51.100.66", 6, 5000))) == 0
}

test_a_range_holding_a_long_known_source_needs_a_person_for_it if {
	inp := sourced_in(standing_block(["192.0.2.128/25"], "192.0.2.200", 7, 50), "192.0.2.200")
	some r in approvals(inp)
	contains(r.reason, "the sensors had known 192.0.2.200 for 7 day(s)")
}

test_another_source_s_history_does_not_hold_a_block if {
	every r in approvals(standing_block(["198.51.100.66"], "203.0.113.7", 90, 10000)) {
		not contains(r.reason, "the sensors had known")
	}
}

test_the_standing_that_asks_a_person_comes_from_data if {
	stricter := object.union(tunables, {"shared_source_days": 30, "shared_source_answered": 1000})
	found := guardrails.require_approval with input as standing_block(["198.51.100.66"], "198.51.100.66", 9, 120)
		with data.allowlists as allowlists
		with data.inventory as inventory
		with data.special_purpose as special_purpose
		with data.identities as identities
		with data.guardrails as stricter
	count(found) == 0
}
