"""The case: one attacker, one case (grouping), decided again in rounds as its evidence grows."""
