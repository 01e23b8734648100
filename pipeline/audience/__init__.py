"""Audience stage: subscribers.csv -> a stream of rows, validated and filtered."""
