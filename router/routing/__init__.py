"""Routing: task taxonomy, complexity scoring, and the rule-based policy that turns them into a Decision."""
